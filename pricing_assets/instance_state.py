"""What the Dagster instance says about the pipeline: may predictions ship, which batches are done.

Queries of the event log and run storage, shared by the ``pricing`` CLI (which prints what they
return and queries the instance through them only), ``status.py``, the sensors and the tests; the
writes are :func:`register_batch` / :func:`unregister_batch` (``catalog_batches`` partitions) and
:func:`recover_runs`.
"""

import re
from dataclasses import dataclass

import dagster as dg

from pricing_assets.checks import CONTRACT_CHECK, MODEL_GATE_CHECK
from pricing_assets.lib.models.registry import PRICE_MODELS
from pricing_assets.partitions import CATALOG_BATCHES

PREDICTIONS = dg.AssetKey("price_predictions")
#: Upstream of ``price_predictions`` whose newer materialisation makes the stored predictions stale.
PREDICTIONS_INPUTS = (dg.AssetKey("serving_model"), dg.AssetKey("batch_predictions"))
BLEND = dg.AssetKey("price_blend")
SERVING_MODEL = dg.AssetKey("serving_model")
MODEL_GATE = dg.AssetCheckKey(BLEND, MODEL_GATE_CHECK)


@dataclass(frozen=True)
class ExportVerdict:
    """Whether the stored ``price_predictions`` may be exported.

    Attributes:
        ok: True when they are the latest, passed their contract and are not older than their input.
        run_id: run that stored the predictions (None when there are none).
        problem: why not (one sentence naming runs), "" when ``ok``.
        kind: ``ok``; ``none`` (never stored); ``contract`` (the stored ones failed their contract
            check, possible only on an instance older than contract enforcement); ``failed`` (a later
            rebuild failed) or ``stale`` (a batch was scored or a model promoted since, or they mix
            model versions) — the stored predictions are valid but not the newest; ``gated`` (``ok``:
            the model gate held the latest retrain back, the promoted model still prices every batch).
    """

    ok: bool
    run_id: str | None
    problem: str = ""
    kind: str = "ok"


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey):
    recs = instance.fetch_materializations(key, limit=1).records
    return recs[0] if recs else None


def predictions_export_verdict(instance: dg.DagsterInstance) -> ExportVerdict:
    """Check the stored ``price_predictions`` before they leave Dagster.

    Refused when: none were stored; their latest ``contract`` check did not pass; a later run's
    ``price_predictions`` step failed (its run and cause are named); ``serving_model`` or a
    ``batch_predictions`` partition was materialised after them, or they mix model versions
    ("stale"). Allowed with a note ("gated") when the latest retrain was held back by the model gate.

    Returns:
        an :class:`ExportVerdict`.
    """
    rec = _latest(instance, PREDICTIONS)
    if rec is None:
        return ExportVerdict(False, None, "no price_predictions yet: run `pricing materialize` first", "none")
    run_id = rec.run_id
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(PREDICTIONS, CONTRACT_CHECK)]
    ).get(dg.AssetCheckKey(PREDICTIONS, CONTRACT_CHECK))
    if check is not None and check.status.value == "FAILED":
        return ExportVerdict(
            False, run_id, f"the latest contract check of price_predictions failed (run {check.run_id})", "contract"
        )
    planned = instance.get_latest_planned_materialization_info(PREDICTIONS)
    if planned is not None and planned.storage_id > rec.storage_id:
        step_failed = any(
            e.dagster_event.step_key == PREDICTIONS.to_python_identifier()
            for e in instance.all_logs(planned.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        )
        if step_failed:
            return ExportVerdict(
                False,
                run_id,
                f"the latest attempt to build price_predictions failed (run {planned.run_id}: "
                f"{run_failure_cause(instance, planned.run_id)}); the stored ones are from run {run_id}",
                "failed",
            )
    for key in PREDICTIONS_INPUTS:
        upstream = _latest(instance, key)
        if upstream is not None and upstream.storage_id > rec.storage_id:
            return ExportVerdict(
                False,
                run_id,
                f"{key.to_user_string()} was materialised in run {upstream.run_id} after the stored predictions "
                f"(run {run_id}): they are stale; run `pricing materialize`",
                "stale",
            )
    meta = rec.asset_materialization.metadata if rec.asset_materialization else {}
    version = meta.get("model_version").value if meta.get("model_version") is not None else None
    serving = _latest(instance, SERVING_MODEL)
    current = (
        serving.asset_materialization.metadata.get("model_version")
        if serving is not None and serving.asset_materialization
        else None
    )
    if current is not None and version not in (current.value, "none"):  # "none": no product to price
        return ExportVerdict(
            False,
            run_id,
            f"the stored predictions (run {run_id}) come from model version(s) {version!r}, not all from the "
            f"promoted model {current.value!r}: some batches were not re-scored; run `pricing materialize`",
            "stale",
        )
    held = gated_retrain(instance)
    if held:
        return ExportVerdict(True, run_id, f"{held}; the promoted model {version!r} still prices every batch", "gated")
    return ExportVerdict(True, run_id)


def latest_metadata_value(instance: dg.DagsterInstance, key: str, name: str, partition: str | None = None):
    """Value of metadata entry ``name`` on the latest materialization of asset ``key`` (of one
    ``partition``), or None when there is none (or it lacks the entry)."""
    flt = (
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition])
        if partition
        else dg.AssetKey(key)
    )
    records = instance.fetch_materializations(flt, limit=1).records
    value = (
        records[0].asset_materialization.metadata.get(name) if records and records[0].asset_materialization else None
    )
    return None if value is None else value.value


def gated_retrain(instance: dg.DagsterInstance) -> str | None:
    """Why the latest retrain was not promoted, when ``price_blend``'s ``model_gate`` check failed on
    a blend newer than the stored ``serving_model`` (one sentence naming the run); else None."""
    blend, serving = _latest(instance, BLEND), _latest(instance, SERVING_MODEL)
    if blend is None or (serving is not None and blend.storage_id < serving.storage_id):
        return None
    gate = instance.event_log_storage.get_latest_asset_check_execution_by_key([MODEL_GATE]).get(MODEL_GATE)
    if gate is None or gate.status.value != "FAILED" or gate.run_id != blend.run_id:
        return None
    ev = gate.event.dagster_event.event_specific_data if gate.event and gate.event.dagster_event else None
    return f"the retrain in run {blend.run_id} was not promoted by the model gate ({getattr(ev, 'description', None) or 'see the check in the UI'})"


def model_gate_reason(instance: dg.DagsterInstance) -> tuple[str | None, str | None]:
    """(the latest ``model_gate`` check's verdict — one sentence with both OOF SMAPE figures — and its
    run id), or (None, None) before any retrain."""
    gate = instance.event_log_storage.get_latest_asset_check_execution_by_key([MODEL_GATE]).get(MODEL_GATE)
    if gate is None:
        return None, None
    ev = gate.event.dagster_event.event_specific_data if gate.event and gate.event.dagster_event else None
    return getattr(ev, "description", None), gate.run_id


def last_batch_failure(instance: dg.DagsterInstance, batch: str) -> dg.DagsterRun | None:
    """The latest run of batch partition ``batch`` if it failed, else None (latest succeeded or none)."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": batch}), limit=1)
    return runs[0] if runs and runs[0].status == dg.DagsterRunStatus.FAILURE else None


def registered_batches(instance: dg.DagsterInstance) -> list[str]:
    """Registered catalog batches, in ingestion order."""
    return list(instance.get_dynamic_partitions(CATALOG_BATCHES))


def root_cause(error) -> str:
    """The innermost error of a Dagster step failure (the user's exception), one line (<= 400 chars)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error.message.strip().splitlines()[-1][:400]


def run_failure_cause(instance: dg.DagsterInstance, run_id: str) -> str:
    """``step: root cause`` of the first failed step of run ``run_id``; for a run that failed without
    a step failure (its worker died, it could not start), the run-failure message's first line (or a
    pointer to the UI)."""
    for rec in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        ev = rec.dagster_event
        return f"{ev.step_key}: {root_cause(ev.event_specific_data.error)}"
    for rec in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        ev = rec.dagster_event
        error = getattr(ev.event_specific_data, "error", None) if ev is not None else None
        message = root_cause(error) if error is not None else (ev.message if ev is not None else rec.user_message) or ""
        if message.strip():
            return f"run: {message.strip().splitlines()[0][:400]}"
    return "see the run in the UI"


# --- runs whose worker died, and the pool slots they hold --------------------------------------------

#: Message of the engine event with which Dagster's run worker reports its pid (``dagster api
#: execute_run`` and the default run launcher's code server both emit "Started process for run (pid: N).").
WORKER_STARTED_EVENT = r"Started process for run \(pid: (\d+)\)"
#: The one command that clears stale runs and held slots (named by ``pricing status``).
RECOVER_COMMAND = "pricing recover"
IN_PROGRESS = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)


@dataclass(frozen=True)
class StaleRun:
    """A run left ``STARTING``/``STARTED`` whose worker process is gone.

    Attributes:
        run_id, job: the run and its job name.
        partition: its batch partition, or None.
        worker: who executed it (``pricing_assets.lib.runtime.run_workers.WorkerIdentity``).
        started_at: when the run started (epoch s), or None.
    """

    run_id: str
    job: str
    partition: str | None
    worker: object
    started_at: float | None

    def reason(self) -> str:
        """Why it is marked failed (the run's failure message)."""
        return (
            f"run worker gone: {self.worker.describe()} no longer runs (killed, OOM, lost node); "
            f"marked failed by {RECOVER_COMMAND} / run_worker_watchdog so its pool slots are freed and the work can be retried"
        )


def run_worker(instance: dg.DagsterInstance, run: dg.DagsterRun, launched_here: bool = False):
    """The process executing ``run`` (``lib.runtime.run_workers.WorkerIdentity``), or None when unknown.

    From the run's worker tags (the ``pricing`` CLI sets them on its in-process runs: host included).
    With ``launched_here`` — the caller runs inside the code server that launches this location's runs
    (the recovery sensor) — and when the instance's run launcher cannot health-check its workers itself
    (the default launcher: run workers are subprocesses of that code server, so on this host), also from
    the engine event in which the worker reported its pid (its time bounds the process's start, so a
    recycled pid is told apart). Launchers with their own health check (Docker, Kubernetes) are left
    to Dagster's run monitoring.
    """
    from pricing_assets.lib.runtime.run_workers import WorkerIdentity, this_host, worker_from_tags

    tagged = worker_from_tags(run.tags)
    if tagged is not None or not launched_here or instance.run_launcher.supports_check_run_worker_health:
        return tagged
    for rec in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        found = re.match(
            WORKER_STARTED_EVENT, (rec.dagster_event.message if rec.dagster_event else None) or rec.user_message or ""
        )
        if found:
            return WorkerIdentity(this_host(), int(found.group(1)), started_before=rec.timestamp)
    return None


def stale_runs(instance: dg.DagsterInstance, launched_here: bool = False) -> list[StaleRun]:
    """Runs ``STARTING``/``STARTED`` whose worker is known to be dead (``lib.runtime.run_workers.worker_state``),
    oldest first. A run whose worker is alive, on another host or unknown is never listed;
    ``launched_here``: see :func:`run_worker`."""
    from pricing_assets.lib.runtime.run_workers import DEAD, worker_state

    out = []
    for rec in instance.get_run_records(filters=dg.RunsFilter(statuses=list(IN_PROGRESS))):
        run = rec.dagster_run
        worker = run_worker(instance, run, launched_here)
        if worker is not None and worker_state(worker) == DEAD:
            out.append(StaleRun(run.run_id, run.job_name, run.tags.get("dagster/partition"), worker, rec.start_time))
    return sorted(out, key=lambda s: s.started_at or 0.0)


def _pool_infos(instance: dg.DagsterInstance) -> dict:
    """``{pool: ConcurrencyKeyInfo}`` of every pool ({} when the storage has no pools)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    return {pool: storage.get_concurrency_info(pool) for pool in sorted(storage.get_concurrency_keys())}


def held_pool_slots(instance: dg.DagsterInstance, infos: dict | None = None) -> list[dict]:
    """Every claimed pool slot: ``{pool, run_id, step, run_status, since (epoch s or None), limit}``
    (``infos``: :func:`_pool_infos`, read here when not given).

    ``run_status`` is the holder's run status (``STARTED`` is normal while its step runs; a finished or
    missing run holding a slot is a leak that :func:`recover_runs` frees)."""
    out = []
    for pool, info in (_pool_infos(instance) if infos is None else infos).items():
        assigned = {(p.run_id, p.step_key): p.assigned_timestamp for p in info.pending_steps}
        for slot in info.claimed_slots:
            run = instance.get_run_by_id(slot.run_id)
            since = assigned.get((slot.run_id, slot.step_key))
            out.append(
                {
                    "pool": pool,
                    "run_id": slot.run_id,
                    "step": slot.step_key,
                    "run_status": run.status.value if run else "DELETED",
                    "since": since.timestamp() if since else None,
                    "limit": info.limit,
                }
            )
    return out


def pool_waits(instance: dg.DagsterInstance, run_ids: set[str]) -> list[dict]:
    """Steps of ``run_ids`` waiting for a pool slot: ``{pool, run_id, step, waiting_since, held_by:
    [{run_id, step, run_status, since}]}`` (empty when none waits)."""
    if not run_ids:
        return []
    infos = _pool_infos(instance)
    held = held_pool_slots(instance, infos)
    out = []
    for pool, info in infos.items():
        for p in info.pending_steps:
            if p.run_id in run_ids and p.assigned_timestamp is None:
                out.append(
                    {
                        "pool": pool,
                        "run_id": p.run_id,
                        "step": p.step_key,
                        "waiting_since": p.enqueued_timestamp.timestamp(),
                        "held_by": [h for h in held if h["pool"] == pool and h["run_id"] != p.run_id],
                    }
                )
    return out


def recover_runs(instance: dg.DagsterInstance, launched_here: bool = False) -> dict:
    """Mark every stale run failed (:func:`stale_runs` with ``launched_here``, its reason as the failure message) and free the
    pool slots of every run that is not in progress (the stale ones and finished runs that leaked a
    slot). The status of each run is read again right before it is marked, so a run that finished in
    between is left alone.

    Returns:
        ``{"failed": [StaleRun], "freed": {run_id: slots freed}}``.
    """
    failed = []
    for stale in stale_runs(instance, launched_here):
        run = instance.get_run_by_id(stale.run_id)
        if run is None or run.status not in IN_PROGRESS:
            continue
        instance.report_run_failed(run, stale.reason())
        failed.append(stale)
    if not instance.event_log_storage.supports_global_concurrency_limits:
        return {"failed": failed, "freed": {}}
    in_progress = {s.value for s in IN_PROGRESS}
    leaked: dict[str, int] = {s.run_id: 0 for s in failed}  # also drops their queued (pending) steps
    for slot in held_pool_slots(instance):
        if slot["run_status"] not in in_progress:
            leaked[slot["run_id"]] = leaked.get(slot["run_id"], 0) + 1
    for run_id in leaked:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return {"failed": failed, "freed": {k: v for k, v in leaked.items() if v}}


def failure_texts(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The texts that say why run ``run_id`` failed: its run-failure message and error chain, every
    failed step's error chain, and engine events carrying an error (a launch that could not load the
    code location), each as ``ClassName: message`` lines joined per event."""

    def chain(error) -> str:
        parts = []
        while error is not None:
            parts.append(f"{error.cls_name}: {error.message.strip()}")
            error = error.cause
        return "\n".join(parts)

    texts = []
    kinds = (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ENGINE_EVENT)
    for rec in instance.all_logs(run_id, of_type=set(kinds)):
        ev = rec.dagster_event
        error = getattr(ev.event_specific_data, "error", None) if ev is not None else None
        if ev is not None and ev.event_type == dg.DagsterEventType.ENGINE_EVENT and error is None:
            continue
        texts.append("\n".join(t for t in (ev.message if ev else rec.user_message, chain(error)) if t))
    return texts


def oof_smape_assets() -> tuple[str, ...]:
    """The assets whose materialisation metadata carries an ``oof_smape``: every registry model's OOF
    predictions (``lib.models.registry.PRICE_MODELS``, by name), then ``price_blend``; the order
    ``pricing materialize`` and ``pricing status`` print them in."""
    return (*(PRICE_MODELS[n].predictions_asset for n in sorted(PRICE_MODELS)), "price_blend")


def oof_smapes(instance: dg.DagsterInstance) -> dict[str, float]:
    """Latest OOF SMAPE (percent) of each of :func:`oof_smape_assets` that has one, by asset name."""
    out = {}
    for key in oof_smape_assets():
        value = latest_metadata_value(instance, key, "oof_smape")
        if value is not None:
            out[key] = value
    return out


# --- the batches, the model and the predictions the `pricing` CLI works on ---------------------------


def per_row_keys(defs: dg.Definitions) -> list[dg.AssetKey]:
    """The partitioned assets of the per-row groups (``automation.PER_ROW_GROUPS``) of ``defs``: what
    a batch must have stored to count as complete."""
    from pricing_assets.automation import PER_ROW_GROUPS

    graph = defs.resolve_asset_graph()
    return [
        k
        for k in graph.get_all_asset_keys()
        if graph.get(k).partitions_def is not None and graph.get(k).group_name in PER_ROW_GROUPS
    ]


def missing_batches(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[str]:
    """Registered batches for which some per-row asset (:func:`per_row_keys`) has no materialisation
    yet, in ingestion order."""
    done = [set(instance.get_materialized_partitions(k)) for k in per_row_keys(defs)]
    return [b for b in registered_batches(instance) if any(b not in d for d in done)]


def missing_assets(instance: dg.DagsterInstance, defs: dg.Definitions, batch: str) -> list[dg.AssetKey]:
    """The per-row assets (:func:`per_row_keys`) with no materialisation of ``batch`` yet, e.g. every
    one for a new batch, the steps after a failure, or the asset of an embedding model a deployment
    switched to (``PRICING_EMBEDDING_MODELS``)."""
    return [k for k in per_row_keys(defs) if batch not in set(instance.get_materialized_partitions(k))]


def batch_selection(instance: dg.DagsterInstance, defs: dg.Definitions, batch: str) -> dg.AssetSelection:
    """What a run of ``batch``'s per-row assets must build: the assets it lacks (:func:`missing_assets`)
    when it has some stored, else every per-row group (``automation.PER_ROW_GROUPS``)."""
    from pricing_assets.automation import PER_ROW_GROUPS

    lacking = missing_assets(instance, defs, batch)
    if lacking and len(lacking) < len(per_row_keys(defs)):
        return dg.AssetSelection.assets(*lacking)
    return dg.AssetSelection.groups(*PER_ROW_GROUPS)


def stored_batches(instance: dg.DagsterInstance, defs: dg.Definitions) -> set[str]:
    """Batches for which every per-row asset (:func:`per_row_keys`) is stored (complete batches)."""
    return set.intersection(*(set(instance.get_materialized_partitions(k)) for k in per_row_keys(defs)))


def is_registered_batch(instance: dg.DagsterInstance, batch: str) -> bool:
    """True when ``batch`` is a registered ``catalog_batches`` partition."""
    return instance.has_dynamic_partition(CATALOG_BATCHES, batch)


def register_batch(instance: dg.DagsterInstance, batch: str) -> bool:
    """Register ``batch`` as a ``catalog_batches`` partition (a write); True when it was new, False when
    it was registered already (a re-ingested batch keeps its place in the ingestion order)."""
    if is_registered_batch(instance, batch):
        return False
    instance.add_dynamic_partitions(CATALOG_BATCHES, [batch])
    return True


def unregister_batch(instance: dg.DagsterInstance, batch: str) -> None:
    """Delete the ``catalog_batches`` partition ``batch`` (a write; its stored materialisations stay in
    the event log). The global assets stop reading it on their next run.

    Raises:
        KeyError: ``batch`` is not registered.
    """
    if not is_registered_batch(instance, batch):
        raise KeyError(f"no registered batch {batch!r}; `pricing batches` lists them")
    instance.delete_dynamic_partition(CATALOG_BATCHES, batch)


def latest_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey) -> int:
    """Storage id (event-log position) of the latest materialisation of ``key`` (any partition), -1
    when there is none: a larger id is a later materialisation."""
    rec = _latest(instance, key)
    return rec.storage_id if rec is not None else -1


def serving_version(instance: dg.DagsterInstance) -> str | None:
    """``model_version`` of the latest stored ``serving_model`` (None: no model yet)."""
    return latest_metadata_value(instance, "serving_model", "model_version")


def training_pending(instance: dg.DagsterInstance) -> bool:
    """True when the latest ``products`` (labeled rows) has no promoted model yet: no ``serving_model``,
    or one fitted on other labels — unless the model gate refused that retrain (re-running it would
    only be refused again; ``pricing materialize --retrain`` forces it)."""
    products_fp = latest_metadata_value(instance, "products", "labeled_fingerprint")
    if products_fp is None:
        return False  # nothing to train on (or never run: a new batch starts it)
    if products_fp == latest_metadata_value(instance, "serving_model", "labeled_fingerprint"):
        return False
    return gated_retrain(instance) is None


def batches_to_score(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[str]:
    """Complete batches (:func:`stored_batches`) whose ``batch_predictions`` are missing or come from
    another model than the current ``serving_model``, or that lack a partition of another scoring
    asset (one added by an upgrade, e.g. ``price_drivers``), in ingestion order ([] without a model)."""
    from pricing_assets.automation import SCORING_GROUPS

    version = serving_version(instance)
    if version is None:
        return []
    complete = stored_batches(instance, defs)
    graph = defs.resolve_asset_graph()
    scoring = [
        set(instance.get_materialized_partitions(k))
        for k in graph.get_all_asset_keys()
        if graph.get(k).partitions_def is not None and graph.get(k).group_name in SCORING_GROUPS
    ]
    return [
        b
        for b in registered_batches(instance)
        if b in complete
        and (
            latest_metadata_value(instance, "batch_predictions", "model_version", b) != version
            or any(b not in done for done in scoring)
        )
    ]


def predictions_stale(instance: dg.DagsterInstance) -> bool:
    """True when ``price_predictions`` is missing or older than a ``batch_predictions`` partition or
    ``products`` (and some batch has been scored)."""
    scored = latest_storage_id(instance, dg.AssetKey("batch_predictions"))
    if scored < 0:
        return False
    own = latest_storage_id(instance, PREDICTIONS)
    return own < scored or own < latest_storage_id(instance, dg.AssetKey("products"))


def batch_states(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[tuple[str, str, str]]:
    """``(batch, state, detail)`` per registered batch, in ingestion order: ``complete``; ``failed``
    with ``"run <id>: <cause>"`` (:func:`run_failure_cause` of its latest run); or ``incomplete`` (not
    run yet), detail ``""`` for these two."""
    missing = set(missing_batches(instance, defs))
    rows = []
    for b in registered_batches(instance):
        if b not in missing:
            rows.append((b, "complete", ""))
        elif (run := last_batch_failure(instance, b)) is not None:
            rows.append((b, "failed", f"run {run.run_id}: {run_failure_cause(instance, run.run_id)}"))
        else:
            rows.append((b, "incomplete", ""))
    return rows


def started_run_ids(instance: dg.DagsterInstance, tags: dict[str, str]) -> set[str]:
    """Ids of the ``STARTED`` runs that carry every one of ``tags`` (e.g. one process's worker tags)."""
    return {
        r.run_id for r in instance.get_runs(filters=dg.RunsFilter(tags=tags, statuses=[dg.DagsterRunStatus.STARTED]))
    }


def freshness_states(instance: dg.DagsterInstance, now: float | None = None) -> list[dict]:
    """Each asset with a freshness policy (``automation.FRESH_ASSETS``) and where it stands:
    ``{asset, materialized_at (epoch s or None), age_h, state}`` with state ``fresh``, ``warn``
    (older than ``FRESHNESS_WARN_HOURS``: overdue), ``fail`` (older than ``FRESHNESS_FAIL_HOURS``)
    or ``never`` (no materialization yet). The same windows as the policies the UI shows.

    Args:
        now: epoch seconds to judge at (default: the current time).
    """
    import time

    from pricing_assets.automation import FRESH_ASSETS, FRESHNESS_FAIL_HOURS, FRESHNESS_WARN_HOURS

    now = time.time() if now is None else now
    out = []
    for name in FRESH_ASSETS:
        event = instance.get_latest_materialization_event(dg.AssetKey(name))
        if event is None:
            out.append({"asset": name, "materialized_at": None, "age_h": None, "state": "never"})
            continue
        age_h = (now - event.timestamp) / 3600
        state = "fail" if age_h > FRESHNESS_FAIL_HOURS else ("warn" if age_h > FRESHNESS_WARN_HOURS else "fresh")
        out.append({"asset": name, "materialized_at": event.timestamp, "age_h": round(age_h, 2), "state": state})
    return out


def latest_materialization(instance: dg.DagsterInstance, key: str, partition: str | None = None) -> tuple[dict, object]:
    """(metadata values by name, the record) of the latest materialization of asset ``key``
    (``a/b`` for a multi-part key; of one ``partition``), or ``({}, None)`` when there is none."""
    flt = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(key.split("/")), asset_partitions=[partition] if partition else None
    )
    recs = instance.fetch_materializations(flt, limit=1).records
    if not recs:
        return {}, None
    return {k: v.value for k, v in recs[0].asset_materialization.metadata.items()}, recs[0]


def active_batch_run(instance: dg.DagsterInstance, batch: str) -> dg.DagsterRun | None:
    """The newest queued / started run of batch partition ``batch``, or None."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={"dagster/partition": batch}, statuses=list(IN_PROGRESS)), limit=1
    )
    return runs[0] if runs else None


def instigator_states(instance: dg.DagsterInstance, location_name: str) -> dict[str, str]:
    """Sensor / schedule name -> stored state (``RUNNING``, ``STOPPED`` or ``DECLARED_IN_CODE``) of the
    code location ``location_name`` (state is stored per location name)."""
    return {
        s.name: s.status.value
        for s in instance.all_instigator_state()
        if s.repository_selector.location_name == location_name
    }


def newest_daemon_heartbeat(instance: dg.DagsterInstance) -> float | None:
    """Epoch seconds of the newest daemon heartbeat, or None (no daemon ever ran on this instance)."""
    return max((b.timestamp for b in instance.get_daemon_heartbeats().values()), default=None)


def recent_failed_runs(instance: dg.DagsterInstance, limit: int = 5) -> list[dg.DagsterRun]:
    """The ``limit`` newest failed runs."""
    return list(instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=limit))
