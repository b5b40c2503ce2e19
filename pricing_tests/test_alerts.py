"""Alerts (``pricing_assets/defs/alerts.py``, ``lib/runtime/alerts.py``): a real failed run, a real
failed blocking check and a freshness FAIL each reach a local webhook server exactly once; a dead
webhook costs seconds and never fails the sensor."""

import json
import socket
import time

import dagster as dg
import httpx
import pandas as pd
import pytest

from pricing_assets.checks import CONTRACT_CHECK, contract_spec
from pricing_assets.defs.alerts import (
    ALERTED_TAG,
    RUN_FAILURE_SENSOR,
    build_asset_alert_sensor,
    build_run_failure_alert_sensor,
    deliver,
    parse_cursor,
)
from pricing_assets.defs.recovery import RETRY_ATTEMPT_TAG
from pricing_assets.lib.runtime.alerts import (
    CHECK_FAILURE,
    RUN_FAILURE,
    Alert,
    WebhookSender,
    cap_alerts,
    check_failure_alert,
    first_line,
    format_alert,
    freshness_alert,
    run_failure_alert,
)
from pricing_assets.settings import load_settings
from pricing_tests.http_server import Reply, ScriptedServer

ERROR = "price column is all NaN in batch b7\nsecond line of the message"


class RecordingLog:
    """Stands in for ``context.log``: keeps ``(level, message)``."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level):
        return lambda msg: self.lines.append((level, msg))


def _settings(tmp_path, **env):
    return load_settings({"DAGSTER_HOME": str(tmp_path), **env})


def _dead_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dg.asset
def tiny_broken_asset() -> int:
    """Fails like a stage whose input is broken."""
    raise ValueError(ERROR)


@dg.asset(check_specs=[contract_spec("tiny_checked_asset")])
def tiny_checked_asset():
    """Stores a frame whose blocking contract check fails with ERROR severity."""
    yield dg.Output(pd.DataFrame({"price": [-1.0]}))
    yield dg.AssetCheckResult(
        check_name=CONTRACT_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        description="price: 1 row(s) fail greater_than(0)\nfailure cases: -1.0",
    )


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


def _failed_run(instance, tags=None) -> dg.DagsterRun:
    result = dg.materialize([tiny_broken_asset], instance=instance, raise_on_error=False, tags=tags)
    assert not result.success
    return instance.get_run_by_id(result.run_id)


def _failure_context(instance, run) -> dg.RunFailureSensorContext:
    (rec,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name=RUN_FAILURE_SENSOR, dagster_event=rec.dagster_event, dagster_instance=instance, dagster_run=run
    ).for_run_failure()


def _posted(server) -> list[dict]:
    return [json.loads(body) for _, body in server.posts]


def test_a_failed_run_reaches_the_webhook_once_naming_run_job_and_error(tmp_path, instance):
    run = _failed_run(instance)
    with ScriptedServer() as server:
        url = server.route("/hook", Reply(status=200, body=b"ok", content_type="text/plain"))
        sensor = build_run_failure_alert_sensor(_settings(tmp_path, PRICING_ALERT_WEBHOOK=url))
        sensor(_failure_context(instance, run))
        (body,) = _posted(server)
        assert body["kind"] == RUN_FAILURE and body["run_id"] == run.run_id and body["job"] == run.job_name
        assert body["details"]["failed step"] == "tiny_broken_asset"
        assert body["details"]["cause"].endswith("price column is all NaN in batch b7")
        assert run.run_id in body["text"] and "second line" not in body["text"]
        assert body["link"] == f"http://127.0.0.1:3000/runs/{run.run_id}"
        # (2) the same failure evaluated again (a re-run tick, a second context): no second message
        sensor(_failure_context(instance, run))
        assert len(server.posts) == 1
    assert instance.get_run_by_id(run.run_id).tags[ALERTED_TAG] == run.run_id


def test_a_retried_run_says_which_retry_and_a_copied_tag_does_not_silence_it(tmp_path, instance):
    run = _failed_run(instance, tags={RETRY_ATTEMPT_TAG: "2", ALERTED_TAG: "id-of-the-run-it-retries"})
    with ScriptedServer() as server:
        url = server.route("/hook", Reply(status=204, content_type=None))
        build_run_failure_alert_sensor(_settings(tmp_path, PRICING_ALERT_WEBHOOK=url))(_failure_context(instance, run))
        (body,) = _posted(server)
    assert "(retry 2 of 4)" in body["title"]


def test_a_dead_webhook_costs_seconds_and_is_logged_not_raised(tmp_path, instance):
    run = _failed_run(instance)
    port = _dead_port()
    settings = _settings(tmp_path, PRICING_ALERT_WEBHOOK=f"http://127.0.0.1:{port}/hook")
    start = time.monotonic()
    build_run_failure_alert_sensor(settings)(_failure_context(instance, run))
    assert time.monotonic() - start < 5
    assert instance.get_run_by_id(run.run_id).tags[ALERTED_TAG] == run.run_id  # no retry storm on later ticks
    log = RecordingLog()
    sent = deliver(log, run_failure_alert(run.run_id, "j", "s", "boom"), settings)
    assert sent == ["log"]
    assert [lvl for lvl, _ in log.lines] == ["warning", "error"]
    assert "ConnectError" in log.lines[1][1] and str(port) not in log.lines[1][1]  # no URL in logs


def test_webhook_retries_transient_errors_but_not_a_4xx(tmp_path):
    alert = run_failure_alert("r1", "j", None, "boom")
    with ScriptedServer() as server:
        flaky = server.route("/flaky", Reply(status=503), Reply(status=200))
        bad = server.route("/bad", Reply(status=404))
        sender = WebhookSender(flaky, backoff_s=0.01)
        assert sender.send(alert) == 200 and sender.attempts_made == 2
        sender = WebhookSender(bad, backoff_s=0.01)
        with pytest.raises(httpx.HTTPStatusError):
            sender.send(alert)
        assert sender.attempts_made == 1 and server.hits["/bad"] == 1
        log = RecordingLog()
        assert deliver(log, alert, _settings(tmp_path, PRICING_ALERT_WEBHOOK=bad)) == ["log"]
        assert log.lines[-1] == ("error", "alert run_failure:r1::: not delivered to PRICING_ALERT_WEBHOOK: HTTP 404")


def test_a_failed_blocking_check_alerts_once_and_the_next_tick_none(tmp_path, instance):
    dg.materialize([tiny_checked_asset], instance=instance, raise_on_error=False)
    with ScriptedServer() as server:
        url = server.route("/hook", Reply(status=200))
        sensor = build_asset_alert_sensor(_settings(tmp_path, PRICING_ALERT_WEBHOOK=url))
        ctx = dg.build_sensor_context(instance=instance)
        sensor(ctx)
        (body,) = _posted(server)
        assert body["kind"] == CHECK_FAILURE and body["asset"] == "tiny_checked_asset" and body["check"] == "contract"
        assert body["details"]["cause"] == "price: 1 row(s) fail greater_than(0)" and body["run_id"]
        assert parse_cursor(ctx.cursor)["check"] > 0
        sensor(dg.build_sensor_context(instance=instance, cursor=ctx.cursor))
        assert len(server.posts) == 1


def test_an_asset_turning_stale_alerts_once(tmp_path, instance):
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange  # what the daemon writes

    for previous, new in (("PASS", "WARN"), ("WARN", "FAIL"), ("FAIL", "FAIL")):
        instance.report_runless_asset_event(
            FreshnessStateChange(
                key=dg.AssetKey("price_predictions"),
                previous_state=FreshnessState(previous),
                new_state=FreshnessState(new),
                state_change_timestamp=time.time(),
            )
        )
    with ScriptedServer() as server:
        url = server.route("/hook", Reply(status=200))
        sensor = build_asset_alert_sensor(_settings(tmp_path, PRICING_ALERT_WEBHOOK=url))
        ctx = dg.build_sensor_context(instance=instance)
        sensor(ctx)
        sensor(dg.build_sensor_context(instance=instance, cursor=ctx.cursor))
        (body,) = _posted(server)
    assert body["kind"] == "freshness" and body["asset"] == "price_predictions" and "WARN -> FAIL" in body["title"]


def test_alerts_go_to_the_log_only_without_a_sink(tmp_path):
    log = RecordingLog()
    assert deliver(log, freshness_alert("a", "PASS", "7"), _settings(tmp_path)) == ["log"]
    assert log.lines == [("warning", format_alert(freshness_alert("a", "PASS", "7")))]


# --- lib/runtime/alerts.py: formatting ----------------------------------------------------------


def test_run_failure_alert_text():
    alert = run_failure_alert("abc", "scoring_job", "batch_predictions", "\n  KeyError: 'x'\nmore", "http://ui:3000/")
    assert alert.text == (
        "[pricing] run of scoring_job failed at batch_predictions\n"
        "job: scoring_job\nfailed step: batch_predictions\ncause: KeyError: 'x'\nrun: abc\n"
        "link: http://ui:3000/runs/abc"
    )
    assert run_failure_alert("abc", "j", None, None).payload()["details"]["cause"] == "unknown (see the run)"


def test_check_alert_links_the_run_or_the_asset_and_dedupes_by_event():
    a = check_failure_alert("price_blend", "model_gate", "r9", "worse by 2.1 points", "55", job="nightly")
    assert a.link == "http://127.0.0.1:3000/runs/r9" and a.dedupe_key == "check_failure:r9:price_blend:model_gate:55"
    runless = check_failure_alert("a/b", "contract", None, None, "56")
    assert runless.link == "http://127.0.0.1:3000/assets/a/b" and "cause" not in runless.text


def test_first_line_and_cap_and_kinds():
    assert first_line("\n\n x \n y") == "x" and first_line(None) == "" and len(first_line("a" * 999)) == 300
    many = [freshness_alert(f"a{i}", "PASS", str(i)) for i in range(25)]
    capped = cap_alerts(many, limit=10)
    assert len(capped) == 10 and capped[-1].title == "16 more failures this tick"
    assert cap_alerts(many[:3]) == many[:3]
    with pytest.raises(ValueError):
        Alert(kind="oops", title="t")


def test_the_location_runs_both_alert_sensors_by_default(tmp_path):
    from pricing_assets.definitions import build_defs
    from pricing_assets.defs.alerts import ASSET_ALERT_SENSOR

    defs = build_defs(_settings(tmp_path))
    for name in (RUN_FAILURE_SENSOR, ASSET_ALERT_SENSOR):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


def test_slack_gets_the_alert_through_dagster_slack_and_a_refusal_is_logged(tmp_path, monkeypatch):
    from dagster_slack import SlackResource
    from slack_sdk import WebClient

    alert = run_failure_alert("r1", "scoring_job", "batch_predictions", "boom")
    settings = _settings(tmp_path, PRICING_SLACK_TOKEN="xoxb-test", PRICING_SLACK_CHANNEL="#alerts")
    with ScriptedServer() as server:
        ok = Reply(body=b'{"ok": true}', content_type="application/json")
        refused = Reply(body=b'{"ok": false, "error": "channel_not_found"}', content_type="application/json")
        server.route("/api/chat.postMessage", ok, refused)
        monkeypatch.setattr(
            SlackResource, "get_client", lambda self: WebClient(self.token, base_url=server.url("/api/"))
        )
        assert deliver(RecordingLog(), alert, settings) == ["log", "slack"]
        log = RecordingLog()
        assert deliver(log, alert, settings) == ["log"]
        (_, body), _ = server.posts
    assert b"scoring_job" in body and b"alerts" in body
    assert log.lines[-1][0] == "error" and "channel_not_found" in log.lines[-1][1]
