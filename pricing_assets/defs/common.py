"""Small helpers shared by asset modules: partition merging, previews, timing."""

import time
from contextlib import contextmanager

import dagster as dg
import pandas as pd

from pricing_assets.partitions import CATALOG_BATCHES


def all_batches_in(key) -> dg.AssetIn:
    """Input of a global asset reading every batch partition of ``key``. A batch whose run failed has
    no stored partition and is skipped (UPathIOManager ``allow_missing_partitions``), so one bad file
    doesn't block retraining; ``lib.features.training_data.complete_batches`` reports what was skipped."""
    return dg.AssetIn(key, metadata={"allow_missing_partitions": True})


def batch_order(context) -> list[str]:
    """Registered batches in ingestion order (the order of ``instance.add_dynamic_partitions``)."""
    return list(context.instance.get_dynamic_partitions(CATALOG_BATCHES))


def merge_batches(context, value, name: str) -> pd.DataFrame:
    """Concatenate the per-batch DataFrames of an upstream partitioned asset, oldest batch first.

    Dagster passes a ``{partition_key: DataFrame}`` dict when several partitions are loaded, the bare
    DataFrame when exactly one is, and None when none is; all are accepted. A ``batch`` column is added.

    Raises:
        ValueError: if no batch has been materialised yet.
    """
    if isinstance(value, pd.DataFrame):
        keys = context.asset_partition_keys_for_input(name)
        parts = {keys[0]: value}
    else:
        parts = dict(value or {})
    if not parts:
        raise ValueError(f"input {name!r}: no materialised batch yet; ingest a catalog file first")
    order = {b: i for i, b in enumerate(batch_order(context))}
    frames = [df.assign(batch=b) for b, df in sorted(parts.items(), key=lambda kv: order.get(kv[0], len(order)))]
    return pd.concat(frames, ignore_index=True)


def preview(df: pd.DataFrame, n: int = 5, max_chars: int = 60) -> dg.MetadataValue:
    """First ``n`` rows as a markdown table (long strings and vectors shortened)."""
    head = df.head(n).copy()
    for c in head.columns:
        head[c] = head[c].map(lambda v: (str(v)[:max_chars] + "…") if len(str(v)) > max_chars else v)
    return dg.MetadataValue.md(head.to_markdown(index=False))


@contextmanager
def stopwatch():
    """``with stopwatch() as t: ...`` then ``t()`` gives elapsed seconds (float)."""
    t0 = time.perf_counter()
    end = [None]
    yield lambda: (end[0] or time.perf_counter()) - t0
    end[0] = time.perf_counter()
