"""The recovery sensors on a real instance configured like ``infra/dagster.yaml``:
``run_worker_watchdog`` fails a run whose worker is gone and frees its ``gpu`` slot;
``transient_failure_retry`` requests again (after its backoff) a batch run failed by a database
outage that Dagster's own retries could not retry, and never a run failed by its data."""

import subprocess
import sys

import dagster as dg
import pytest

from pricing_tests.helpers import REPO

INFRA_YAML = (REPO / "infra" / "dagster.yaml").read_text()
PG_DOWN = "DagsterCodeLocationLoadError: Failure loading pricing-assets: DagsterPostgresException: too many retries for DB connection"
BATCH = "drop_1"


@pytest.fixture(scope="module")
def defs():
    from pricing_assets.definitions import defs

    return defs


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster.yaml").write_text(INFRA_YAML)
    inst = dg.DagsterInstance.from_config(str(tmp_path))
    yield inst
    inst.dispose()


def _run(instance, defs, keys, tags, partition=None):
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {**tags, **({"dagster/partition": partition} if partition else {})}
    run = instance.create_run_for_job(job, asset_selection=frozenset(keys), tags=tags)
    instance.handle_run_event(
        run.run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name, message="started")
    )
    return instance.get_run_by_id(run.run_id)


def _per_row_keys(defs):
    from pricing_assets.automation import PER_ROW_GROUPS

    return dg.AssetSelection.groups(*PER_ROW_GROUPS).resolve(defs.get_repository_def().asset_graph)


def _evaluate(sensor, instance, defs):
    ctx = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
    return sensor(ctx)


def test_watchdog_fails_the_run_of_a_dead_worker_and_frees_its_gpu_slot(instance, defs):
    import psutil

    from pricing_assets.defs.recovery import run_worker_watchdog
    from pricing_assets.lib.runtime.run_workers import WorkerIdentity, this_host, worker_tags

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(p.pid).create_time()
    p.wait()
    run = _run(instance, defs, _per_row_keys(defs), worker_tags(WorkerIdentity(this_host(), p.pid, started)), BATCH)
    alive = _run(instance, defs, _per_row_keys(defs), worker_tags(), "drop_2")
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", run.run_id, "embeddings__text__minilm_l6").is_claimed

    result = _evaluate(run_worker_watchdog, instance, defs)
    assert "marked 1 run(s)" in result.skip_message
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
    assert storage.get_concurrency_info("gpu").claimed_slots == []
    # crash-only run retries (infra/dagster.yaml) take it from here: a run-level failure will be retried
    assert instance.get_run_by_id(run.run_id).tags.get("dagster/will_retry") == "true"
    assert "every started run has a live worker" in _evaluate(run_worker_watchdog, instance, defs).skip_message


def _fail(instance, run, message, will_retry="false"):
    instance.report_run_failed(run, message)
    instance.add_run_tags(run.run_id, {"dagster/will_retry": will_retry})  # as after Dagster's "Failed to retry run"


def test_transient_failure_is_requested_again_after_its_backoff(instance, defs, monkeypatch):
    import pricing_assets.defs.recovery as recovery

    keys = _per_row_keys(defs)
    outage = _run(instance, defs, keys, {"team": "pricing"}, BATCH)
    _fail(instance, outage, PG_DOWN)
    data = _run(instance, defs, keys, {}, "drop_bad")
    _fail(instance, data, "ValueError: drop_bad.csv: no column 'catalog_content'")
    cli = _run(instance, defs, keys, {"pricing/source": "cli"}, "drop_cli")
    _fail(instance, cli, PG_DOWN)

    now = recovery.time.time()
    early = _evaluate(recovery.transient_failure_retry, instance, defs)
    assert early.skip_message and "attempt 1 due in" in early.skip_message

    monkeypatch.setattr(recovery.time, "time", lambda: now + 31)
    result = _evaluate(recovery.transient_failure_retry, instance, defs)
    assert len(result.run_requests) == 1
    req = result.run_requests[0]
    assert req.partition_key == BATCH and set(req.asset_selection) == set(keys)
    assert req.run_key == f"retry:{outage.run_id}"
    assert (
        req.tags["pricing/retry_of"] == outage.run_id
        and req.tags["pricing/retry_attempt"] == "1"
        and req.tags["team"] == "pricing"
    )

    # the retry is running: the failed run is superseded, nothing more is requested
    _run(instance, defs, keys, req.tags, BATCH)
    later = _evaluate(recovery.transient_failure_retry, instance, defs)
    assert not getattr(later, "run_requests", None) and "later run" in later.skip_message


def test_dagster_own_retry_is_not_doubled(instance, defs, monkeypatch):
    import pricing_assets.defs.recovery as recovery

    run = _run(instance, defs, _per_row_keys(defs), {}, BATCH)
    _fail(instance, run, PG_DOWN, will_retry="true")
    now = recovery.time.time()
    monkeypatch.setattr(recovery.time, "time", lambda: now + 3600)
    result = _evaluate(recovery.transient_failure_retry, instance, defs)
    assert not getattr(result, "run_requests", None) and result.skip_message.startswith(
        "no transient failure left to re-request"
    )
