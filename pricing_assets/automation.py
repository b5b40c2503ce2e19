"""Automation of the global (unpartitioned) assets: refresh on new batch data, gated by blocking checks.

Applied once in ``definitions.py`` through :func:`with_global_automation`, never asset by asset.

Rule (``GLOBAL_AUTOMATION``): ``AutomationCondition.eager()`` — materialise when any upstream asset or
batch partition was updated since this asset was last handled, but not while an upstream partition is
missing or in progress — **and** ``all_deps_blocking_checks_passed()``, so a batch whose blocking
``contract`` check failed never flows into features, models or predictions.

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

#: Condition of every unpartitioned asset (source: Dagster docs, "Declarative Automation";
#: ``all_deps_blocking_checks_passed`` is the documented gate for blocking checks across runs).
GLOBAL_AUTOMATION = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()

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
