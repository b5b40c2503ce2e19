"""What the Dagster instance says about the pipeline: may predictions ship, which batches are done.

Read-only queries of the event log and run storage, shared by the ``pricing`` CLI and the tests.
"""

from dataclasses import dataclass

import dagster as dg

from pricing_assets.checks import CONTRACT_CHECK
from pricing_assets.partitions import CATALOG_BATCHES

PREDICTIONS = dg.AssetKey("price_predictions")
#: Upstream of ``price_predictions`` whose newer materialisation makes the stored predictions stale.
PREDICTIONS_INPUTS = (dg.AssetKey("serving_model"), dg.AssetKey("batch_predictions"))
BLEND = dg.AssetKey("price_blend")
SERVING_MODEL = dg.AssetKey("serving_model")
MODEL_GATE = dg.AssetCheckKey(BLEND, "model_gate")


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
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key([dg.AssetCheckKey(PREDICTIONS, CONTRACT_CHECK)]).get(
        dg.AssetCheckKey(PREDICTIONS, CONTRACT_CHECK)
    )
    if check is not None and check.status.value == "FAILED":
        return ExportVerdict(False, run_id, f"the latest contract check of price_predictions failed (run {check.run_id})", "contract")
    planned = instance.get_latest_planned_materialization_info(PREDICTIONS)
    if planned is not None and planned.storage_id > rec.storage_id:
        step_failed = any(
            e.dagster_event.step_key == PREDICTIONS.to_python_identifier()
            for e in instance.all_logs(planned.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        )
        if step_failed:
            return ExportVerdict(False, run_id, f"the latest attempt to build price_predictions failed (run {planned.run_id}: "
                                 f"{run_failure_cause(instance, planned.run_id)}); the stored ones are from run {run_id}", "failed")
    for key in PREDICTIONS_INPUTS:
        upstream = _latest(instance, key)
        if upstream is not None and upstream.storage_id > rec.storage_id:
            return ExportVerdict(False, run_id, f"{key.to_user_string()} was materialised in run {upstream.run_id} after the stored predictions "
                                 f"(run {run_id}): they are stale; run `pricing materialize`", "stale")
    meta = rec.asset_materialization.metadata if rec.asset_materialization else {}
    version = meta.get("model_version").value if meta.get("model_version") is not None else None
    serving = _latest(instance, SERVING_MODEL)
    current = serving.asset_materialization.metadata.get("model_version") if serving is not None and serving.asset_materialization else None
    if current is not None and version != current.value:
        return ExportVerdict(False, run_id, f"the stored predictions (run {run_id}) come from model version(s) {version!r}, not all from the "
                             f"promoted model {current.value!r}: some batches were not re-scored; run `pricing materialize`", "stale")
    held = gated_retrain(instance)
    if held:
        return ExportVerdict(True, run_id, f"{held}; the promoted model {version!r} still prices every batch", "gated")
    return ExportVerdict(True, run_id)


def latest_metadata_value(instance: dg.DagsterInstance, key: str, name: str, partition: str | None = None):
    """Value of metadata entry ``name`` on the latest materialization of asset ``key`` (of one
    ``partition``), or None when there is none (or it lacks the entry)."""
    flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]) if partition else dg.AssetKey(key)
    records = instance.fetch_materializations(flt, limit=1).records
    value = records[0].asset_materialization.metadata.get(name) if records and records[0].asset_materialization else None
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
    """``step: root cause`` of the first failed step of run ``run_id`` (or a pointer to the UI)."""
    for rec in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        ev = rec.dagster_event
        return f"{ev.step_key}: {root_cause(ev.event_specific_data.error)}"
    return "see the run in the UI"
