"""Catalog batches: on storage, one folder per batch under ``<base>/batches/<batch>/`` (fsspec); in
frames, the one rule for a ``sample_id`` seen in several batches (:func:`latest_batch_wins`)."""

import posixpath
import re
from collections.abc import Sequence

import fsspec
import numpy as np
import pandas as pd

CATALOG_SUFFIXES = (".csv", ".parquet", ".pq")
_BATCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_batch_name(batch: str) -> str:
    """Return ``batch`` if it is a safe partition key (letters, digits, ``._-``; max 128 chars).

    Raises:
        ValueError: naming the offending batch name.
    """
    if not _BATCH_RE.match(batch or ""):
        raise ValueError(
            f"invalid batch name {batch!r}: use letters, digits, '.', '_' or '-' (max 128, no leading '.')"
        )
    return batch


def batch_name_for(path: str) -> str:
    """Default batch name for a catalog file: its stem with unsafe characters replaced by ``_``."""
    stem = posixpath.basename(path.rstrip("/"))
    for suf in CATALOG_SUFFIXES:
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    return validate_batch_name(re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".") or "batch")


def store_batch(
    src: str, batches_dir: str, batch: str, src_options: dict | None = None, dst_options: dict | None = None
) -> str:
    """Copy a catalog file (local path or fsspec URL) into ``<batches_dir>/<batch>/<basename>``.

    Returns:
        the stored file's URL/path.

    Raises:
        FileNotFoundError: if ``src`` doesn't exist; ValueError: bad batch name or file suffix.
    """
    validate_batch_name(batch)
    name = posixpath.basename(src.rstrip("/"))
    if not name.lower().endswith(CATALOG_SUFFIXES):
        raise ValueError(f"{src}: catalog files must end with one of {CATALOG_SUFFIXES}")
    src_fs, src_path = fsspec.core.url_to_fs(src, **(src_options or {}))
    if not src_fs.exists(src_path):
        raise FileNotFoundError(f"catalog file not found: {src}")
    dst_dir = f"{batches_dir.rstrip('/')}/{batch}"
    dst_fs, dst_dir_path = fsspec.core.url_to_fs(dst_dir, **(dst_options or {}))
    if dst_fs.exists(dst_dir_path):
        for old in dst_fs.ls(dst_dir_path, detail=False):
            dst_fs.rm(old)
    dst_fs.makedirs(dst_dir_path, exist_ok=True)
    dst = f"{dst_dir}/{name}"
    with src_fs.open(src_path, "rb") as r, fsspec.open(dst, "wb", **(dst_options or {})) as w:
        while chunk := r.read(1 << 20):
            w.write(chunk)
    return dst


def find_batch_file(batches_dir: str, batch: str, storage_options: dict | None = None) -> str:
    """The single catalog file stored for ``batch``.

    Raises:
        FileNotFoundError: if the batch has no stored file (ingest it first).
    """
    d = f"{batches_dir.rstrip('/')}/{batch}"
    fs, p = fsspec.core.url_to_fs(d, **(storage_options or {}))
    files = sorted(f for f in (fs.ls(p, detail=False) if fs.exists(p) else []) if f.lower().endswith(CATALOG_SUFFIXES))
    if not files:
        raise FileNotFoundError(
            f"no catalog file stored for batch {batch!r} under {d}; run `pricing ingest FILE --batch {batch}`"
        )
    proto = d.split("://", 1)[0] + "://" if "://" in d else ""
    return proto + files[0] if proto and not files[0].startswith(proto) else files[0]


def latest_batch_wins(frame: pd.DataFrame, batch_order: Sequence[str] = ()) -> tuple[pd.DataFrame, int]:
    """Keep one row per ``sample_id``: the one of the latest batch, the last one within a batch.

    The one rule for a product delivered more than once (the training set, the scoring of a batch,
    the published predictions).

    Args:
        frame: rows with a ``sample_id`` column and, when they come from several batches, a ``batch``
            column (other columns are kept as they are).
        batch_order: batch names, oldest first (ingestion order); batches not in it count as the
            newest, in row order. Without a ``batch`` column the row order alone decides.

    Returns:
        ``(rows, replaced)``: the kept rows in batch-then-row order with a fresh ``RangeIndex``, and
        how many rows were dropped because a later row has the same ``sample_id``.

    Raises:
        KeyError: ``frame`` has no ``sample_id`` column.
    """
    rank = {b: i for i, b in enumerate(batch_order)}
    ranks = (
        frame["batch"].map(lambda b: rank.get(b, len(rank))).to_numpy()
        if "batch" in frame.columns
        else np.zeros(len(frame), dtype=np.int64)
    )
    f = frame.assign(_rank=ranks, _pos=np.arange(len(frame))).sort_values(["_rank", "_pos"], kind="stable")
    keep = ~f["sample_id"].duplicated(keep="last")
    return f[keep].drop(columns=["_rank", "_pos"]).reset_index(drop=True), int((~keep).sum())
