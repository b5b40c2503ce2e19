"""Automation of the global (unpartitioned) assets: refresh on new batch data, gated by blocking checks.

Applied once in ``definitions.py`` through :func:`with_global_automation`, never asset by asset.

Rule (``GLOBAL_AUTOMATION``): ``AutomationCondition.eager()`` — materialise when an upstream asset or
batch partition was updated since this asset was last handled, not while an upstream run is in
progress — with eager's "no upstream missing" gate restricted to the global upstream assets (a missing
*batch partition* does not hold it), **and** no blocking check of an upstream asset or partition has a
failed result.

Why not plain ``eager() & all_deps_blocking_checks_passed()``: a batch whose run failed (a file with
a missing column, a dead backend) never gets its per-row partitions (or, when a re-run of a stored
batch fails, its planned checks end "execution failed"); eager's ``~any_deps_missing()`` and
``all_deps_blocking_checks_passed()`` both look at *every* registered partition, so one failed batch
held them false and retraining froze for good. Here a missing (failed, dropped or not yet run) batch
partition is simply not part of the data: the global assets read the batches that exist
(``all_batches_in``: ``allow_missing_partitions``) and list the incomplete ones in their metadata.
What still stops automation:

* an upstream run in progress (eager's ``~any_deps_in_progress()``): a queued batch is waited for;
* a failed *blocking* check on any materialised upstream partition or asset — e.g. ``price_blend``'s
  ``model_gate`` (a worse retrain is not promoted to ``price_predictions``). Contract checks can not
  fail on stored data: every asset validates before storing (``pricing_assets/checks.py``).

Evaluated by ``pricing_automation_sensor`` (an ``AutomationConditionSensorDefinition``), which is
*stopped* by default, like every sensor and schedule here. Turn it on:

* UI: Automation → ``pricing_automation_sensor`` → toggle on (needs ``dagster dev`` / the daemon), or
* CLI: ``dagster sensor start -m pricing_assets.definitions pricing_automation_sensor`` (daemon running), or
* ``PRICING_AUTOMATION=1`` in the environment of the code location: every sensor and schedule starts
  running by default.
"""

from collections.abc import Iterable

import dagster as dg

#: Asset groups holding the per-row, batch-partitioned assets.
PER_ROW_GROUPS = ("ingest", "images", "embeddings")
#: Asset groups holding the global assets, recomputed over every batch.
GLOBAL_GROUPS = ("training", "models", "serving")

#: No blocking check of any upstream partition has a *failed* result (or the upstream is requested
#: this tick). Dagster's ``all_deps_blocking_checks_passed()`` asks for a *passed* result on every
#: partition, which a failed, pending or re-run-and-failed batch never has (its planned checks resolve
#: to "execution failed", not "failed"), so one bad batch froze everything; only an explicit failed
#: result — ``price_blend``'s ``model_gate`` — holds the consumers back here.
DEPS_BLOCKING_CHECKS_PASSED = dg.AutomationCondition.all_deps_match(
    dg.AutomationCondition.all_checks_match(~dg.AutomationCondition.check_failed(), blocking_only=True)
    | dg.AutomationCondition.will_be_requested()
).with_label("no_dep_blocking_check_failed")

#: Eager's "no dependency missing" gate, restricted to the global (unpartitioned) upstream assets: a
#: missing *batch partition* (failed, dropped, not yet run) is no reason to wait, but a global input
#: that was never built (its run failed, or it is built by another run) is — without it the asset
#: cannot even load its inputs (found by ``make soak``).
GLOBAL_DEPS_MISSING = (
    dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.groups(*PER_ROW_GROUPS)).with_label("any_global_deps_missing")
)

#: Condition of every unpartitioned asset (source: Dagster docs, "Customizing eager": replacing
#: ``~any_deps_missing()`` to allow missing upstream data; "Declarative Automation" for the check gate).
GLOBAL_AUTOMATION = (
    dg.AutomationCondition.eager().replace("any_deps_missing", GLOBAL_DEPS_MISSING).with_label("eager_allow_missing_batches")
    & DEPS_BLOCKING_CHECKS_PASSED
)

AUTOMATION_SENSOR = "pricing_automation_sensor"


def default_status(on: bool) -> dg.DefaultSensorStatus:
    """``RUNNING`` when ``on`` (``PRICING_AUTOMATION=1``), else ``STOPPED``."""
    return dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED


def _is_global(spec: dg.AssetSpec) -> bool:
    return spec.partitions_def is None


def with_global_automation(assets: Iterable, condition: dg.AutomationCondition = GLOBAL_AUTOMATION) -> list:
    """Return ``assets`` with ``condition`` set on every *unpartitioned* asset spec (multi-assets
    included); partitioned (per-batch) specs are left without a condition — the inbox sensor and
    ``pricing materialize`` request those runs.

    Raises:
        ValueError: if an unpartitioned spec already carries another automation condition (a second
            policy set asset by asset would silently override this one).
    """

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if not _is_global(spec):
            return spec
        if spec.automation_condition is not None and spec.automation_condition != condition:
            raise ValueError(f"{spec.key.to_user_string()}: already has an automation condition; set it in pricing_assets/automation.py only")
        return spec.replace_attributes(automation_condition=condition)

    return list(dg.map_asset_specs(apply, list(assets)))


def build_automation_sensor(on: bool = False) -> dg.AutomationConditionSensorDefinition:
    """The sensor evaluating ``GLOBAL_AUTOMATION`` over the global groups (every 30 s when running)."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.groups(*GLOBAL_GROUPS),
        default_status=default_status(on),
        minimum_interval_seconds=30,
        description="Refreshes features, models, index and predictions when new batches land (eager, gated by blocking checks).",
    )
