"""Drift checks on ``batch_predictions``: is a scored batch like the data the models were trained on?

One ``@dg.multi_asset_check`` (the inputs are loaded once for all measures) with one check per
measure of ``pricing_assets/lib/serving/drift.py`` (``drift_photo_share``, ``drift_ocr_share``,
``drift_quantity_share``, ``drift_text_length``, ``drift_category_mix``,
``drift_price_distribution``), partitioned like the asset: each evaluation is one batch's. A measure
beyond its threshold (``DriftResource``, resource key ``drift``) is a check result ``passed=False``
with severity WARN; the checks are non-blocking, so a drifted batch is still stored and published
and no automation stops: the warning is for a person (the asset's Checks tab, ``metadata``).

The checks run wherever ``batch_predictions`` is materialised with its checks: the scoring job and
the automation sensor's runs (a check without its own automation condition rides along with its
asset); alone, from the asset's Checks tab for one partition.

Inputs: the batch's partition of ``batch_predictions`` (predicted prices) and of ``catalog_items``,
``product_images``, ``ocr_text`` (the rows scored, joined as scoring joins them); the unpartitioned
``products`` + ``listing_features`` (the training side) and ``price_blend`` (the training set's
out-of-fold blend predictions: the reference of the predicted prices).
"""

import warnings

import dagster as dg
import pandas as pd

from pricing_assets.lib.serving.drift import MEASURES
from pricing_assets.partitions import catalog_batches
from pricing_assets.resources import DriftResource

ASSET = "batch_predictions"
#: Check name of each measure of ``lib.serving.drift.MEASURES``.
CHECK_NAMES: dict[str, str] = {m: f"drift_{m}" for m in MEASURES}
#: What each check reads besides ``batch_predictions`` (the per-batch rows and the training side).
DRIFT_INPUTS: tuple[str, ...] = (
    "catalog_items",
    "product_images",
    "ocr_text",
    "products",
    "listing_features",
    "price_blend",
)

_DESCRIPTIONS = {
    "photo_share": 'share of scored rows with a photo (status "ok") vs the training set',
    "ocr_share": "share of scored rows with OCR text vs the training set",
    "quantity_share": "share of scored rows with a parsed quantity (qty_canonical) vs the training set",
    "text_length": "text length (text_chars) distribution vs the training set: KS statistic",
    "category_mix": "category mix vs the training set (unseen categories counted): PSI",
    "price_distribution": "predicted price distribution vs the training set's out-of-fold blend: PSI of log price",
}


def drift_check_specs() -> list[dg.AssetCheckSpec]:
    """One non-blocking check spec per measure, partitioned by ``catalog_batches`` like the asset (each
    evaluation is one batch's, shown per partition)."""
    with warnings.catch_warnings():  # a check spec's partitions_def is a preview API in Dagster 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return _specs()


def _specs() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            CHECK_NAMES[m],
            asset=ASSET,
            description=f"Drift (WARN, non-blocking): {_DESCRIPTIONS[m]}.",
            additional_deps=list(DRIFT_INPUTS),
            blocking=False,
            partitions_def=catalog_batches,
        )
        for m in MEASURES
    ]


def _figure(x: float) -> float | None:
    """A float for metadata; None for NaN (a measure not compared)."""
    return None if x != x else float(x)


def drift_check_result(result) -> dg.AssetCheckResult:
    """A ``lib.serving.drift.DriftResult`` as its check's result: ``passed`` as measured, severity
    WARN (never ERROR: drift is a warning), the figures as metadata."""
    metadata = {
        "statistic_name": result.statistic_name,
        "statistic": _figure(result.statistic),
        "threshold": float(result.threshold),
        "batch_value": _figure(result.batch_value),
        "training_value": _figure(result.training_value),
        "batch_rows": result.batch_rows,
        "training_rows": result.training_rows,
    }
    if result.details:
        metadata["details"] = dg.MetadataValue.json(result.details)
    return dg.AssetCheckResult(
        asset_key=ASSET,
        check_name=CHECK_NAMES[result.name],
        passed=bool(result.passed),
        severity=dg.AssetCheckSeverity.WARN,
        description=result.description,
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


@dg.multi_asset_check(
    name="batch_drift",
    specs=drift_check_specs(),
    ins={ASSET: dg.AssetIn(ASSET), **{name: dg.AssetIn(name) for name in DRIFT_INPUTS}},
)
def batch_drift(
    context: dg.AssetCheckExecutionContext,
    drift: DriftResource,
    batch_predictions: pd.DataFrame,
    catalog_items: pd.DataFrame,
    product_images: pd.DataFrame,
    ocr_text: pd.DataFrame,
    products: pd.DataFrame,
    listing_features: pd.DataFrame,
    price_blend: pd.DataFrame,
):
    """Compare this batch's scored rows and predicted prices with the training set, one result per
    measure (``lib.serving.drift.compare_with_training``, thresholds from ``drift``). Inputs it cannot
    compare (a missing column, no finite value) give every check ``passed=False``, WARN, with the
    error as description, instead of failing the run."""
    from pricing_assets.lib.serving.drift import batch_rows, compare_with_training, training_rows

    try:
        results = compare_with_training(
            batch_rows(catalog_items, product_images, ocr_text),
            training_rows(products, listing_features),
            batch_prices=batch_predictions["price"],
            reference_prices=price_blend["pred_price"],
            thresholds=drift.thresholds(),
        )
    except (KeyError, ValueError, TypeError) as exc:  # a drift check never fails the scoring run
        context.log.exception(f"batch {context.partition_key}: drift not evaluated")
        for name in CHECK_NAMES.values():
            yield dg.AssetCheckResult(
                asset_key=ASSET,
                check_name=name,
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"drift not evaluated: {type(exc).__name__}: {exc}",
            )
        return
    flagged = [r.name for r in results if not r.passed]
    if flagged:
        context.log.warning(f"batch {context.partition_key}: drift in {', '.join(flagged)}")
    for r in results:
        yield drift_check_result(r)


@dg.definitions
def drift_defs() -> dg.Definitions:
    """The drift checks of ``batch_predictions`` (their resource ``drift`` is built in
    ``pricing_assets/defs/resources.py``)."""
    return dg.Definitions(asset_checks=[batch_drift])
