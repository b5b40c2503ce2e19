"""Jobs and the nightly retrain schedule.

Dagster pitfall (checked with dagster 1.13.27): ``dagster asset materialize --select '*'`` fails
without ``--partition`` ("Asset has partitions, but no '--partition' option was provided"), and once a
second partition scheme exists (e.g. a daily-partitioned asset beside the ``catalog_batches`` ones) no
single run can hold them all. ``--select '*' --partition B`` works today (batch B's per-row assets
and every global asset in one run) but breaks as soon as that second scheme lands. Every job here
therefore selects one side by *group*: :data:`catalog_batch_job` the per-row groups (one run per
batch partition; its ``catalog_batches`` partitioning is inferred from the selection),
:data:`nightly_retrain_job` the global groups.

No ``BackfillPolicy.single_run()``: the per-row assets read ``context.partition_key`` (one batch per
run, so a bad file fails only its own run). A range of batches is backfilled as one run per batch:
``dagster job backfill -w workspace.yaml -j catalog_batch_job --partitions A,B --noprompt``
(or ``--all``; the runs queue and start once the daemon runs, e.g. under ``dagster dev``), or from
the UI's Materialize → partitions dialog. ``--partition-range`` on ``dagster asset materialize`` needs
single-run policies and is not supported here.
"""

import dagster as dg

from pricing_assets.automation import GLOBAL_GROUPS, PER_ROW_GROUPS, PUBLISHED_ASSETS, SCORING_GROUPS, default_status
from pricing_assets.settings import current_settings

#: Cron of the nightly retrain, in UTC (02:00, after the day's catalog drops).
NIGHTLY_CRON = "0 2 * * *"

catalog_batch_job = dg.define_asset_job(
    "catalog_batch_job",
    selection=dg.AssetSelection.groups(*PER_ROW_GROUPS),
    description="Per-row assets of one catalog batch: catalog, quarantine, items, images, OCR, embeddings.",
)

#: Run config of a forced retrain (the nightly one, ``pricing materialize --retrain``): ``products``
#: stores (and everything downstream retrains) even when the labels did not change.
NIGHTLY_RUN_CONFIG = {"ops": {"products": {"config": {"retrain_unchanged": True}}}}
#: The training side of the global assets: everything up to the promoted ``serving_model`` and the
#: OOF report. The published assets are left out: they follow the re-scoring of the batches.
TRAINING_SELECTION = dg.AssetSelection.groups(*GLOBAL_GROUPS) - dg.AssetSelection.assets(*PUBLISHED_ASSETS)

nightly_retrain_job = dg.define_asset_job(
    "nightly_retrain_job",
    selection=TRAINING_SELECTION,
    config=NIGHTLY_RUN_CONFIG,
    description="Retrain over every labeled row (even unchanged): products, features, kNN reference, models, blend, serving_model, report. "
    "The automation then re-scores every batch with the promoted model.",
)

scoring_job = dg.define_asset_job(
    "scoring_job",
    selection=dg.AssetSelection.groups(*SCORING_GROUPS),
    description="batch_predictions of one batch: its products without a price, priced by the current serving_model (no refit).",
)


def build_nightly_retrain_schedule(on: bool = False) -> dg.ScheduleDefinition:
    """``nightly_retrain`` at :data:`NIGHTLY_CRON` UTC; stopped unless ``on`` (``PRICING_AUTOMATION=1``).

    Retrains even without new data (same seeds: same models), so a day whose automation was blocked
    or switched off still ends with fresh models.
    """
    return dg.ScheduleDefinition(
        name="nightly_retrain",
        job=nightly_retrain_job,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING
        if default_status(on) == dg.DefaultSensorStatus.RUNNING
        else dg.DefaultScheduleStatus.STOPPED,
        description="Retrain features, models and predictions over every batch at 02:00 UTC.",
    )


@dg.definitions
def schedules_defs() -> dg.Definitions:
    """The jobs and the nightly retrain schedule."""
    return dg.Definitions(
        jobs=[catalog_batch_job, nightly_retrain_job, scoring_job],
        schedules=[build_nightly_retrain_schedule(on=current_settings().automation_on)],
    )
