"""Automation of the global and scoring assets: retrain when the labels change, score every batch,
gated by blocking checks.

Applied once in ``definitions.py`` through :func:`with_global_automation`, never asset by asset.

Rules:

* ``products`` (``GLOBAL_AUTOMATION``): ``AutomationCondition.eager()`` — materialise when an
  upstream asset or batch partition was updated since it was last handled, not while an upstream run
  is in progress — with eager's "no upstream missing" gate restricted to the global upstream assets
  (a missing *batch partition* does not hold it), **and** no blocking check of an upstream asset or
  partition has a failed result. ``products`` stores nothing when the labeled rows did not change, so
  an unlabeled batch stops there.
* every other unpartitioned asset (``TRAINED_AUTOMATION``): the same, but a new batch partition of a
  per-row asset is not a reason to run (``any_deps_updated`` ignores the per-row groups), and
  ``products`` counts only once it *stored* a new training set (not when it is merely requested: an
  unlabeled batch requests it and it stores nothing): the training side follows a stored
  ``products`` one tick later, in one run; the serving side follows ``batch_predictions``.
  ``price_predictions`` (``PUBLISHED_AUTOMATION``) also waits for a first scored batch.
* ``batch_predictions`` (``SCORING_AUTOMATION``): eager per batch partition — its batch's per-row
  assets landed, or a new ``serving_model`` was promoted (every batch is re-scored) — gated likewise;
  ``served_prices``, ``price_explanations`` and ``price_drivers`` (``FOLLOW_SCORING_AUTOMATION``) follow their batch's
  scoring, not a new training set.

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
* CLI: ``dagster sensor start -w workspace.yaml pricing_automation_sensor`` (daemon running), or
* ``PRICING_AUTOMATION=1`` in the environment of the code location: every sensor and schedule starts
  running by default.
"""

from collections.abc import Iterable

import dagster as dg

#: Asset groups holding the per-row, batch-partitioned assets.
PER_ROW_GROUPS = ("ingest", "images", "embeddings")
#: Batch-partitioned, but downstream of the models: each batch's products without a price, scored.
SCORING_GROUPS = ("scoring",)
#: Unpartitioned asset groups: the training side on every batch's labeled rows, and serving.
GLOBAL_GROUPS = ("training", "models", "serving")
#: The published assets: they gather every scored batch (``price_predictions``, the realized accuracy
#: ``served_accuracy``), so they run after the batches are scored, never with the training side.
PUBLISHED_ASSETS = ("price_predictions", "served_accuracy")

#: Freshness policies (Dagster's, shown on the asset pages and evaluated by the daemon's freshness
#: daemon; instance setting ``freshness.enabled`` in every ``infra/`` instance config). The nightly
#: retrain (``defs/schedules.py``, every 24 h) promotes a new ``serving_model`` and re-scores every
#: batch into ``price_predictions``: a model or a price older than 26 h means a nightly run was missed
#: or failed (WARN), older than 30 h that the next one is failing too (FAIL). ``pricing status`` says
#: which are overdue (``instance_state.freshness_states``).
FRESHNESS_WARN_HOURS, FRESHNESS_FAIL_HOURS = 26, 30
FRESH_ASSETS = ("serving_model", "price_predictions")
#: The one global asset that reads the batches directly and decides whether the labels changed.
TRAINING_SET = "products"

DEPS_BLOCKING_CHECKS_PASSED = dg.AutomationCondition.all_deps_match(
    dg.AutomationCondition.all_checks_match(~dg.AutomationCondition.check_failed(), blocking_only=True)
    | dg.AutomationCondition.will_be_requested()
).with_label("no_dep_blocking_check_failed")

GLOBAL_DEPS_MISSING = (
    dg.AutomationCondition.any_deps_missing()
    .ignore(dg.AssetSelection.groups(*PER_ROW_GROUPS, *SCORING_GROUPS))
    .with_label("any_global_deps_missing")
)

#: eager()'s "handled" reset: the asset was requested or updated (or this is the first evaluation).
HANDLED = (
    dg.AutomationCondition.newly_requested()
    | dg.AutomationCondition.newly_updated()
    | dg.AutomationCondition.initial_evaluation()
).with_label("handled")

#: :data:`HANDLED`, except that a request does not reset on a tick where a dependency updated too.
#: Eager reports a request as ``newly_requested`` one tick later; a batch that lands in between (a
#: crashed batch run retried within the tick after ``products`` was requested on its incomplete data)
#: would meet that reset on the same tick and be lost: nothing would retrain on it until the next
#: delivery (found by ``make soak-faults``). Here it triggers one more run of ``products`` (which
#: stores nothing when the labels did not change).
HANDLED_UNLESS_DEPS_UPDATED = (
    (dg.AutomationCondition.newly_requested() & ~dg.AutomationCondition.any_deps_updated())
    | dg.AutomationCondition.newly_updated()
    | dg.AutomationCondition.initial_evaluation()
).with_label("handled_unless_deps_updated")


def eager_from_parts(
    deps_updated: dg.AutomationCondition, deps_missing: dg.AutomationCondition, handled: dg.AutomationCondition
) -> dg.AutomationCondition:
    """``AutomationCondition.eager()`` built from its public parts, with its three variable parts
    given: the trigger (``deps_updated``, eager's ``any_deps_updated()``), the gate on missing
    dependencies (eager's ``any_deps_missing()``) and the reset (eager's :data:`HANDLED`). Built, not
    edited: eager()'s internal labels are no API."""
    return (
        dg.AutomationCondition.in_latest_time_window()
        & (dg.AutomationCondition.newly_missing() | deps_updated).since(handled)
        & ~deps_missing
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    )


GLOBAL_AUTOMATION = (
    eager_from_parts(
        dg.AutomationCondition.any_deps_updated(), GLOBAL_DEPS_MISSING, HANDLED_UNLESS_DEPS_UPDATED
    ).with_label("eager_allow_missing_batches")
    & DEPS_BLOCKING_CHECKS_PASSED
)


#: ``products`` is *requested* on every new batch but stores nothing when the labels did not change,
#: so a request of it is no sign of new data: its consumers start on its stored update only (the
#: tick after), never on eager's "will be requested this tick". Otherwise every unlabeled batch left
#: a pending trigger (``since_last_handled``) on the training assets that fired a full retrain on a
#: later tick (found by ``make soak``: three promotions for one labeled batch).
NEWLY_UPDATED = (
    dg.AutomationCondition.newly_updated() & ~dg.AutomationCondition.executed_with_root_target()
).with_label("newly_updated_without_root")
TRAINED_DEPS_UPDATED = (
    dg.AutomationCondition.any_deps_updated().ignore(
        dg.AssetSelection.groups(*PER_ROW_GROUPS) | dg.AssetSelection.assets(TRAINING_SET)
    )
    | dg.AutomationCondition.any_deps_match(NEWLY_UPDATED).allow(dg.AssetSelection.assets(TRAINING_SET))
).with_label("any_global_deps_updated")

#: ``GLOBAL_AUTOMATION`` for the assets downstream of ``products``: a new batch partition is no
#: reason to retrain (``products`` decides whether the labels changed); they react to a stored
#: ``products`` and to global inputs.
TRAINED_AUTOMATION = (
    eager_from_parts(TRAINED_DEPS_UPDATED, GLOBAL_DEPS_MISSING, HANDLED).with_label("eager_on_global_inputs")
    & DEPS_BLOCKING_CHECKS_PASSED
)

#: An asset that gathers every batch's scores (``price_predictions``) waits for the first scored batch:
#: a missing batch partition is ignored by ``GLOBAL_DEPS_MISSING``, but with none at all there is
#: nothing to publish.
ANY_BATCH_SCORED = (
    dg.AutomationCondition.any_deps_match(~dg.AutomationCondition.missing())
    .allow(dg.AssetSelection.groups(*SCORING_GROUPS))
    .with_label("any_batch_scored")
)
PUBLISHED_AUTOMATION = (TRAINED_AUTOMATION & ANY_BATCH_SCORED).with_label("eager_published")

#: ``batch_predictions``: score a batch once its per-row assets exist, and every batch again when a
#: new ``serving_model`` is promoted (eager per partition, gated by blocking checks).
SCORING_AUTOMATION = (dg.AutomationCondition.eager() & DEPS_BLOCKING_CHECKS_PASSED).with_label("eager_scoring")

#: The assets that follow a batch's scoring (its served-price log ``served_prices``, its comparables
#: ``price_explanations``, its price drivers ``price_drivers``): they read global assets (``products``, the kNN reference and index) too,
#: but a new training set or reference is no reason to run them; the batch's re-scoring by the model
#: trained on it is (it follows every promotion).
FOLLOW_SCORING = ("served_prices", "price_explanations", "price_drivers")
FOLLOW_SCORING_AUTOMATION = (
    eager_from_parts(
        dg.AutomationCondition.any_deps_updated().ignore(dg.AssetSelection.groups(*GLOBAL_GROUPS)),
        dg.AutomationCondition.any_deps_missing(),
        HANDLED,
    ).with_label("eager_on_scoring")
    & DEPS_BLOCKING_CHECKS_PASSED
)

AUTOMATION_SENSOR = "pricing_automation_sensor"


def default_status(on: bool) -> dg.DefaultSensorStatus:
    """``RUNNING`` when ``on`` (``PRICING_AUTOMATION=1``), else ``STOPPED``."""
    return dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED


def _condition_for(spec: dg.AssetSpec, scoring_keys: set) -> dg.AutomationCondition | None:
    if spec.key.to_user_string() in FOLLOW_SCORING:
        return FOLLOW_SCORING_AUTOMATION
    if spec.group_name in SCORING_GROUPS:
        return SCORING_AUTOMATION
    if spec.partitions_def is not None:
        return None  # per-row assets: the inbox sensor and `pricing materialize` request their runs
    if spec.key.to_user_string() == TRAINING_SET:
        return GLOBAL_AUTOMATION
    if any(d.asset_key in scoring_keys for d in spec.deps):
        return PUBLISHED_AUTOMATION
    return TRAINED_AUTOMATION


def with_global_automation(assets: Iterable) -> list:
    """Return ``assets`` with this module's automation conditions set: ``GLOBAL_AUTOMATION`` on
    ``products``, ``SCORING_AUTOMATION`` on the scoring group, ``PUBLISHED_AUTOMATION`` on an
    unpartitioned asset that reads the scoring group, ``TRAINED_AUTOMATION`` on every other
    unpartitioned asset; per-row (batch) specs are left without a condition — the inbox sensor and
    ``pricing materialize`` request those runs.

    Raises:
        ValueError: if a spec already carries another automation condition (a second policy set
            asset by asset would silently override this one).
    """
    assets = list(assets)
    scoring_keys = {spec.key for a in assets for spec in getattr(a, "specs", []) if spec.group_name in SCORING_GROUPS}

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = _condition_for(spec, scoring_keys)
        if condition is None:
            return spec
        if spec.automation_condition is not None and spec.automation_condition != condition:
            raise ValueError(
                f"{spec.key.to_user_string()}: already has an automation condition; set it in pricing_assets/automation.py only"
            )
        return spec.replace_attributes(automation_condition=condition)

    return list(dg.map_asset_specs(apply, assets))


def build_automation_sensor(on: bool = False) -> dg.AutomationConditionSensorDefinition:
    """The sensor evaluating ``GLOBAL_AUTOMATION`` over the global groups (every 30 s when running)."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.groups(*GLOBAL_GROUPS, *SCORING_GROUPS),
        default_status=default_status(on),
        minimum_interval_seconds=30,
        description="Refreshes features, models, index and predictions when new batches land (eager, gated by blocking checks).",
    )
