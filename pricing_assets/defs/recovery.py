"""Recovery sensors: a crash or an outage never leaves the pipeline frozen under the daemon.

* ``run_worker_watchdog`` (every 60 s): marks failed every run left ``STARTING``/``STARTED`` whose
  run worker process is gone (``instance_state.stale_runs``: killed, OOM-killed, lost with its
  machine) and frees the pool slots held by runs that are not running, so the ``gpu`` pool never stays
  taken by a dead run. Dagster's run monitoring cannot see this with the default run launcher (it has
  no worker health check; Docker and Kubernetes launchers have one and are left to Dagster). A run
  marked failed here has no step failure, so the instance's crash-only run retries
  (``run_retries`` in ``infra/dagster*.yaml``) retry it from the failed step.
* ``transient_failure_retry`` (every 30 s): a run that failed because the instance database, the
  code location or its worker was unreachable (``lib.runtime.run_recovery.is_transient``), and that Dagster's
  own run retries did not or could not retry, is requested again with the same assets, partition and
  run config, after a backoff (30 s doubling, at most ``lib.runtime.run_recovery.MAX_ATTEMPTS`` times). A run
  failed by its data or code is never retried. ``pricing materialize`` runs (tag
  ``pricing/source=cli``) are left to the CLI.

Both are *running* by default (whatever ``PRICING_AUTOMATION`` says): they only act on dead or
failed runs and need the daemon (``dagster dev`` or ``dagster-daemon run``).
"""

import time
from datetime import UTC, datetime

import dagster as dg

from pricing_assets.automation import PER_ROW_GROUPS

WATCHDOG = "run_worker_watchdog"
RETRY_SENSOR = "transient_failure_retry"
#: Tags of a re-requested run: the run it retries, and its attempt number (1 = first re-request).
RETRY_OF_TAG = "pricing/retry_of"
RETRY_ATTEMPT_TAG = "pricing/retry_attempt"
PARTITION_TAG = "dagster/partition"
#: Named jobs whose runs may carry no asset selection of their own: their selection, to re-request.
JOB_SELECTIONS = {"catalog_batch_job": dg.AssetSelection.groups(*PER_ROW_GROUPS)}
ACTIVE_OR_DONE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.SUCCESS,
]


@dg.sensor(
    name=WATCHDOG,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed the runs whose worker process is gone (killed, OOM, lost node) and frees the pool slots they hold.",
)
def run_worker_watchdog(context: dg.SensorEvaluationContext):
    """Fail stale runs and free leaked pool slots (``instance_state.recover_runs``); the skip reason
    says what was done."""
    from pricing_assets.instance_state import recover_runs

    result = recover_runs(context.instance, launched_here=True)  # sensors run in the code server that launches the runs
    for stale in result["failed"]:
        context.log.warning(f"run {stale.run_id} ({stale.job}): {stale.reason()}")
    for run_id, n in result["freed"].items():
        context.log.warning(f"freed {n} pool slot(s) held by run {run_id}, which is not running")
    if not result["failed"] and not result["freed"]:
        return dg.SkipReason("every started run has a live worker; no pool slot held by a finished run")
    return dg.SkipReason(
        f"marked {len(result['failed'])} run(s) with a dead worker failed; freed the slots of {len(result['freed'])} run(s)"
    )


def _asset_keys(context: dg.SensorEvaluationContext, run: dg.DagsterRun) -> list[dg.AssetKey]:
    """The assets a run was to materialise: its own selection, else its named job's selection."""
    if run.asset_selection:
        return sorted(run.asset_selection, key=lambda k: k.to_user_string())
    selection = JOB_SELECTIONS.get(run.job_name)
    if selection is None:
        return []
    return sorted(selection.resolve(context.repository_def.asset_graph), key=lambda k: k.to_user_string())


def _superseded(
    context: dg.SensorEvaluationContext, run: dg.DagsterRun, created: datetime, keys: list[dg.AssetKey]
) -> bool:
    """A later run of the same partition covering ``keys`` is queued, running or succeeded."""
    partition = run.tags.get(PARTITION_TAG)
    later = context.instance.get_runs(
        filters=dg.RunsFilter(
            statuses=ACTIVE_OR_DONE, created_after=created, tags={PARTITION_TAG: partition} if partition else None
        ),
        limit=200,
    )
    wanted = set(keys)
    return any(
        r.tags.get(PARTITION_TAG) == partition and wanted <= set(_asset_keys(context, r))
        for r in later
        if r.run_id != run.run_id
    )


@dg.sensor(
    name=RETRY_SENSOR,
    minimum_interval_seconds=30,
    asset_selection=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests again, with backoff, the runs that failed because the database, the code location or the run worker was unreachable.",
)
def transient_failure_retry(context: dg.SensorEvaluationContext):
    """One ``RunRequest`` per failed run due for a retry (``lib.runtime.run_recovery.decide``), keyed by the
    failed run's id (Dagster never launches two runs for one key); the skip reason lists the others."""
    from pricing_assets.instance_state import failure_texts
    from pricing_assets.lib.runtime.run_recovery import LOOKBACK_S, decide, is_transient

    now = time.time()
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE], updated_after=datetime.fromtimestamp(now - LOOKBACK_S, tz=UTC)
        ),
        limit=200,
    )
    requests, notes = [], []
    for rec in records:
        run = rec.dagster_run
        if (
            run.tags.get("pricing/source") == "cli"
            or run.tags.get("dagster/auto_retry_run_id")
            or run.tags.get("dagster/will_retry") == "true"
        ):
            continue  # the CLI re-runs its own; Dagster's run retries launched (or will launch) a child
        keys = _asset_keys(context, run)
        if not keys or not is_transient(
            run.tags.get("dagster/failure_reason"), failure_texts(context.instance, run.run_id)
        ):
            continue  # failed by its data or code: never retried
        decision = decide(
            attempts_so_far=int(run.tags.get(RETRY_ATTEMPT_TAG, "0")),
            failed_at=(rec.end_time or rec.update_timestamp.timestamp()),
            now=now,
            superseded=_superseded(context, run, rec.create_timestamp, keys),
        )
        if not decision.retry:
            notes.append(f"{run.run_id[:8]}: {decision.reason}")
            continue
        context.log.warning(
            f"run {run.run_id} ({run.job_name} {run.tags.get(PARTITION_TAG, '')}) failed transiently: {decision.reason}"
        )
        user_tags = {k: v for k, v in run.tags.items() if not k.startswith("dagster/")}
        requests.append(
            dg.RunRequest(
                run_key=f"retry:{run.run_id}",
                asset_selection=keys,
                partition_key=run.tags.get(PARTITION_TAG),
                run_config=run.run_config,
                tags={**user_tags, RETRY_OF_TAG: run.run_id, RETRY_ATTEMPT_TAG: str(decision.attempt)},
            )
        )
    if requests:
        return dg.SensorResult(run_requests=requests)
    return dg.SkipReason(
        "; ".join(notes)
        if notes
        else "no transient failure left to re-request (Dagster's run retries handle the others)"
    )


@dg.definitions
def recovery_defs() -> dg.Definitions:
    """The two recovery sensors."""
    return dg.Definitions(sensors=[run_worker_watchdog, transient_failure_retry])
