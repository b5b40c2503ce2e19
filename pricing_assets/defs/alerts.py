"""Alert sensors: every failure an operator must see becomes exactly one message.

* ``run_failure_alert`` (a run-failure sensor, every 30 s): one alert per failed run of any job of
  this code location: job, partition, the first failed step, the cause's first line, the run id and
  a link to the run in the UI (``PRICING_UI_URL``); a run re-requested by ``transient_failure_retry``
  says ``retry N of M``. Dagster's run-status cursor hands each failure to the sensor once; the run's
  tag :data:`ALERTED_TAG` (its value is the run's own id, so a retry that copies the tags is still
  alerted) keeps a re-evaluation of the same failure from sending a second message.
* ``asset_alert`` (every 30 s): one alert per failed ERROR-severity asset check evaluation (the
  blocking ``contract`` and ``model_gate`` checks) and per asset whose freshness state turns ``FAIL``
  (the ``FRESHNESS_STATE_CHANGE`` events Dagster's freshness daemon writes for assets with a freshness
  policy), read from the event log after the sensor's cursor (the last storage id of each kind), so
  each evaluation alerts once; its first tick looks back :data:`FIRST_TICK_LOOKBACK_S`. A tick sends
  at most ``lib.runtime.alerts.MAX_ALERTS_PER_TICK`` messages (the rest summed up in the last one).

Sinks: the sensor's log always (``warning``), the webhook ``PRICING_ALERT_WEBHOOK`` when set, Slack
(``dagster-slack``) when ``PRICING_SLACK_TOKEN`` and ``PRICING_SLACK_CHANNEL`` are set. A sink that
fails (unreachable, 4xx/5xx, bounded retries in ``lib.runtime.alerts``) is logged with the reason
and never fails the tick. A blocking check that fails its run gives two messages, one per event: the
run's (what stopped) and the check's (why). Both sensors are *running* by default.
"""

import json
import time
import warnings

import dagster as dg
import httpx

from pricing_assets.defs.recovery import RETRY_ATTEMPT_TAG
from pricing_assets.lib.runtime.alerts import (
    Alert,
    cap_alerts,
    check_failure_alert,
    freshness_alert,
    post_webhook,
    run_failure_alert,
)
from pricing_assets.lib.runtime.run_recovery import MAX_ATTEMPTS
from pricing_assets.settings import Settings, current_settings

RUN_FAILURE_SENSOR = "run_failure_alert"
ASSET_ALERT_SENSOR = "asset_alert"
#: Tag set on a failed run once its alert was sent; its value is the run's own id.
ALERTED_TAG = "pricing/alerted"
#: Seconds of history the first tick of ``asset_alert`` (no cursor yet) reads.
FIRST_TICK_LOOKBACK_S = 3600
#: Event log records read per kind per tick (the cursor picks up the rest on the next tick).
RECORDS_PER_TICK = 200
#: Seconds a Slack API call may take.
SLACK_TIMEOUT_S = 10


def delivery_failure(exc: httpx.HTTPError) -> str:
    """Why a webhook delivery failed, without the URL (it may embed a secret token): ``HTTP 404`` or
    the transport error's class and message."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}"


def deliver(log, alert: Alert, settings: Settings) -> list[str]:
    """Send ``alert`` to every configured sink; returns the sinks that accepted it (``log`` always).

    Args:
        log: the sensor context's logger (``context.log``).
        alert: the alert.
        settings: where to send it (``alert_webhook``, ``slack_token`` + ``slack_channel``).

    Never raises for a failed sink: the failure is logged (``error``) with its reason.
    """
    log.warning(alert.text)
    sent = ["log"]
    if settings.alert_webhook:
        try:
            post_webhook(settings.alert_webhook, alert)
            sent.append("webhook")
        except httpx.HTTPError as exc:
            log.error(f"alert {alert.dedupe_key} not delivered to PRICING_ALERT_WEBHOOK: {delivery_failure(exc)}")
    if settings.slack_token and settings.slack_channel:
        from dagster_slack import SlackResource
        from slack_sdk.errors import SlackClientError

        try:
            client = SlackResource(token=settings.slack_token).get_client()
            client.timeout = SLACK_TIMEOUT_S
            client.chat_postMessage(channel=settings.slack_channel, text=alert.text)
            sent.append("slack")
        except SlackClientError as exc:
            log.error(f"alert {alert.dedupe_key} not delivered to Slack {settings.slack_channel}: {exc}")
    return sent


def _root_cause(error) -> str:
    """The innermost error's message (the user's exception) of a serialised error, or ""."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error.message if error is not None else ""


def failure_alert(context: dg.RunFailureSensorContext, settings: Settings) -> Alert:
    """The alert of the context's failed run: the first failed step and its root cause, else the
    run-failure event's message (a run that failed outside a step)."""
    run = context.dagster_run
    step, cause = None, None
    for event in context.get_step_failure_events():
        step, cause = event.step_key, _root_cause(getattr(event.event_specific_data, "error", None))
        break
    if step is None:
        event = context.failure_event
        error = getattr(event.event_specific_data, "error", None)
        cause = _root_cause(error) if error is not None else event.message
    attempt = run.tags.get(RETRY_ATTEMPT_TAG)
    return run_failure_alert(
        run_id=run.run_id,
        job=run.job_name,
        step=step,
        cause=cause,
        ui_url=settings.ui_url,
        partition=run.tags.get("dagster/partition"),
        retry=(int(attempt), MAX_ATTEMPTS) if attempt and attempt.isdigit() else None,
    )


def build_run_failure_alert_sensor(settings: Settings) -> dg.SensorDefinition:
    """``run_failure_alert``: one message per failed run of this code location's jobs (see the module
    docstring), to the sinks of ``settings``."""

    @dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="One alert per failed run (log, PRICING_ALERT_WEBHOOK, Slack when configured).",
    )
    def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
        """Alert once for the failed run, then tag it :data:`ALERTED_TAG` (a re-evaluation is silent)."""
        run_id = context.dagster_run.run_id
        current = context.instance.get_run_by_id(run_id) or context.dagster_run
        if current.tags.get(ALERTED_TAG) == run_id:
            context.log.info(f"run {run_id} failed: already alerted")
            return
        sent = deliver(context.log, failure_alert(context, settings), settings)
        # tagged even when a sink failed: the sink's failure is logged, and a retry loop on a dead sink is a storm
        context.instance.add_run_tags(run_id, {ALERTED_TAG: run_id})
        context.log.info(f"run {run_id} failed: alert sent to {', '.join(sent)}")

    return run_failure_alert_sensor


def parse_cursor(cursor: str | None) -> dict[str, int]:
    """``asset_alert``'s cursor: ``{"check": storage id, "freshness": storage id}`` (missing: none yet)."""
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
    except ValueError:
        return {}
    return {k: int(v) for k, v in data.items() if k in ("check", "freshness") and str(v).isdigit()}


def _records_after(instance: dg.DagsterInstance, event_type: dg.DagsterEventType, after: int | None) -> list:
    """Event log records of ``event_type`` after storage id ``after`` (None: of the last
    :data:`FIRST_TICK_LOOKBACK_S`), oldest first, at most :data:`RECORDS_PER_TICK`.

    ``DagsterInstance.get_event_records`` is the only public query of these events by storage id in
    Dagster 1.13 (deprecated for 2.0, with no replacement for check evaluations yet): its warning is
    silenced here."""
    if after is None:
        flt = dg.EventRecordsFilter(event_type, after_timestamp=time.time() - FIRST_TICK_LOOKBACK_S)
    else:
        flt = dg.EventRecordsFilter(event_type, after_cursor=after)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return list(instance.get_event_records(flt, limit=RECORDS_PER_TICK, ascending=True))


def asset_alerts(instance: dg.DagsterInstance, cursor: dict[str, int], settings: Settings):
    """The alerts of the failed check evaluations and freshness ``FAIL`` transitions after ``cursor``,
    and the cursor past them. Returns ``(alerts, cursor)``."""
    alerts, cursor = [], dict(cursor)
    for rec in _records_after(instance, dg.DagsterEventType.ASSET_CHECK_EVALUATION, cursor.get("check")):
        cursor["check"] = rec.storage_id
        evaluation = rec.event_log_entry.dagster_event.asset_check_evaluation_data
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        run = instance.get_run_by_id(rec.run_id) if rec.run_id else None
        alerts.append(
            check_failure_alert(
                asset=evaluation.asset_key.to_user_string(),
                check=evaluation.check_name,
                run_id=rec.run_id or None,
                description=evaluation.description,
                event_id=str(rec.storage_id),
                ui_url=settings.ui_url,
                job=run.job_name if run else None,
                partition=evaluation.partition,
                blocking=bool(evaluation.blocking),
            )
        )
    for rec in _records_after(instance, dg.DagsterEventType.FRESHNESS_STATE_CHANGE, cursor.get("freshness")):
        cursor["freshness"] = rec.storage_id
        change = rec.event_log_entry.dagster_event.asset_freshness_state_change_data
        new, previous = (getattr(s, "value", str(s)) for s in (change.new_state, change.previous_state))
        if new == "FAIL" and previous != "FAIL":
            alerts.append(freshness_alert(change.key.to_user_string(), previous, str(rec.storage_id), settings.ui_url))
    return alerts, cursor


def build_asset_alert_sensor(settings: Settings) -> dg.SensorDefinition:
    """``asset_alert``: one message per failed ERROR check evaluation or freshness ``FAIL`` transition
    (see the module docstring), to the sinks of ``settings``."""

    @dg.sensor(
        name=ASSET_ALERT_SENSOR,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="One alert per failed ERROR asset check and per asset turning stale (freshness FAIL).",
    )
    def asset_alert_sensor(context: dg.SensorEvaluationContext):
        """Alerts for the events after the cursor; the cursor moves past them whatever the sinks did."""
        alerts, cursor = asset_alerts(context.instance, parse_cursor(context.cursor), settings)
        for alert in cap_alerts(alerts):
            deliver(context.log, alert, settings)
        context.update_cursor(json.dumps(cursor, sort_keys=True))
        return dg.SkipReason(
            f"{len(alerts)} alert(s) sent" if alerts else "no failed ERROR check and no asset turned stale"
        )

    return asset_alert_sensor


def build_alert_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """Both alert sensors, sending to the sinks of ``settings``."""
    return [build_run_failure_alert_sensor(settings), build_asset_alert_sensor(settings)]


@dg.definitions
def alerts_defs() -> dg.Definitions:
    """The two alert sensors, with the sinks of the code location's settings."""
    return dg.Definitions(sensors=build_alert_sensors(current_settings()))
