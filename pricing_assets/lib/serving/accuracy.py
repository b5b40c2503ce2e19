"""Realized accuracy: the prices that were served, compared with the true prices that arrived later.

Every price ``batch_predictions`` serves is kept in the served-price log (``served_prices``: one row
per product, batch and model version). When a labeled file later brings the true price of a product
that was priced, :func:`served_accuracy` scores what was served against it: the one figure that
measures production (the OOF SMAPE of training only estimates it).
"""

import numpy as np
import pandas as pd

from pricing_assets.lib.models.metrics import smape

#: Columns of the served-price log (``served_prices``); ``price_low`` / ``price_high`` (USD) join
#: them when the served prices carry an interval.
SERVED_COLUMNS = ("sample_id", "batch", "price", "model_version", "served_at")
#: Columns of :func:`served_accuracy`'s frame.
ACCURACY_COLUMNS = ("model_version", "batch", "rows", "smape", "median_ape", "interval_coverage")


def served_rows(batch_predictions: pd.DataFrame, batch: str, served_at: str) -> pd.DataFrame:
    """The served-price log rows of one scored batch.

    Args:
        batch_predictions: the batch's ``batch_predictions`` frame (``sample_id``, ``price`` USD,
            ``model_version``; ``price_low`` / ``price_high`` USD when present).
        batch: the batch (partition) name.
        served_at: ISO-8601 UTC time the prices were served.

    Returns:
        DataFrame with :data:`SERVED_COLUMNS` (and the interval columns when given), one row per
        product; ``sample_id`` str.
    """
    cols = ["sample_id", "price", "model_version", *[c for c in ("price_low", "price_high") if c in batch_predictions]]
    out = batch_predictions[cols].copy()
    out["sample_id"] = out["sample_id"].astype(str)
    out.insert(1, "batch", str(batch))
    out.insert(4, "served_at", str(served_at))
    return out.reset_index(drop=True)


def served_accuracy(served: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """SMAPE of the served prices against the true prices that arrived, per model version and batch.

    A product priced in several batches or by several model versions is scored once per (model
    version, batch) that served it; products without a true price yet are left out.

    Args:
        served: served-price log rows (:data:`SERVED_COLUMNS`; optional ``price_low``, ``price_high``).
        labels: rows with a unique ``sample_id`` and the true ``price`` (USD; NaN: not known yet), e.g.
            ``products``.

    Returns:
        DataFrame with :data:`ACCURACY_COLUMNS`, one row per (model version, batch) with at least one
        labeled product, sorted by model version then batch: ``rows`` (int), ``smape`` (percent, the
        competition's metric), ``median_ape`` (median absolute percentage error, percent) and
        ``interval_coverage`` (share of true prices inside ``[price_low, price_high]``; NaN when the
        served prices carry no interval).

    Raises:
        KeyError: ``served`` or ``labels`` lacks a needed column.
    """
    truth = labels.loc[labels["price"].notna(), ["sample_id", "price"]].astype({"sample_id": str})
    truth = truth.rename(columns={"price": "true_price"})
    joined = served.astype({"sample_id": str}).merge(truth, on="sample_id", how="inner")
    rows = []
    for (version, batch), g in joined.groupby(["model_version", "batch"], sort=True):
        y, yhat = g["true_price"].to_numpy(dtype=float), g["price"].to_numpy(dtype=float)
        coverage = np.nan
        if {"price_low", "price_high"} <= set(g.columns) and g["price_low"].notna().all():
            coverage = float(np.mean((y >= g["price_low"].to_numpy()) & (y <= g["price_high"].to_numpy())))
        rows.append(
            {
                "model_version": str(version),
                "batch": str(batch),
                "rows": len(g),
                "smape": round(smape(y, yhat), 3),
                "median_ape": round(float(np.median(np.abs(yhat - y) / np.abs(y)) * 100), 3),
                "interval_coverage": coverage,
            }
        )
    return pd.DataFrame(rows, columns=list(ACCURACY_COLUMNS)).astype({"rows": "int64"})


def accuracy_by_model_version(served: pd.DataFrame, labels: pd.DataFrame) -> list[dict]:
    """:func:`served_accuracy` over all batches, one dict per model version (sorted):
    ``{model_version, rows, smape, median_ape, interval_coverage}`` (None where there is no interval)."""
    acc = served_accuracy(served.assign(batch="all"), labels)
    return [
        {
            "model_version": str(r["model_version"]),
            "rows": int(r["rows"]),
            "smape": float(r["smape"]),
            "median_ape": float(r["median_ape"]),
            "interval_coverage": None if pd.isna(r["interval_coverage"]) else float(r["interval_coverage"]),
        }
        for r in acc.to_dict("records")
    ]
