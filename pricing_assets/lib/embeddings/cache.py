"""The content-hash embedding cache: :func:`embed_with_cache` embeds only keys (content hashes)
missing from ``<cache_dir>/<model name>/shard-*.parquet`` and writes every finished chunk as its own
shard (tmp file + rename locally; single PUT on object stores), so a killed run loses at most one chunk.

Pure, Dagster-free. pyarrow, fsspec and pandas are imported inside functions.
"""

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pricing_assets.lib.embeddings.encoders import Encoder
from pricing_assets.lib.embeddings.registry import EmbeddingModelSpec
from pricing_assets.lib.runtime.atomic_write import is_local_fs, write_bytes_atomic

__all__ = ["CacheError", "embed_with_cache"]


class CacheError(RuntimeError):
    """The embedding cache holds data that does not fit the model (e.g. another dimension)."""


def _list_shards(fs, model_dir: str) -> list[str]:
    return sorted(fs.glob(f"{model_dir}/shard-*.parquet"))


def _read_cache(fs, model_dir: str, wanted: list[str], dim: int) -> tuple[list[str], np.ndarray]:
    """Cached vectors for the wanted keys: ``(keys, (m, dim) float32)``, keys unique.

    One scan reads only the ``key`` column of every shard (parallel, no vectors); one more reads
    vectors, filtered to the wanted keys, from just the shards that hold any of them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    empty = ([], np.zeros((0, dim), dtype=np.float32))
    shards = _list_shards(fs, model_dir)
    if not shards or not wanted:
        return empty
    wanted_arr = pa.array(wanted, type=pa.string())
    key_chunks, shard_ids, paths = [], [], {}
    for tagged in ds.dataset(shards, format="parquet", filesystem=fs).scanner(columns=["key"]).scan_batches():
        col = tagged.record_batch.column(0)
        key_chunks.append(col)
        shard_ids.append(np.full(len(col), paths.setdefault(tagged.fragment.path, len(paths)), dtype=np.int32))
    if not key_chunks:
        return empty
    hit = pc.is_in(pa.chunked_array(key_chunks, type=pa.string()), value_set=wanted_arr)
    hit_np = hit.to_numpy(zero_copy_only=False).astype(bool)
    needed_ids = set(np.unique(np.concatenate(shard_ids)[hit_np]).tolist())
    if not needed_ids:
        return empty
    needed = [p for p, i in paths.items() if i in needed_ids]
    try:
        tbl = ds.dataset(needed, format="parquet", filesystem=fs).to_table(
            columns=["key", "vector"], filter=ds.field("key").isin(wanted_arr)
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise CacheError(
            f"cache {model_dir} has shards of different vector types ({exc}); delete it or rename the registry entry"
        ) from exc
    vtype = tbl.schema.field("vector").type
    if getattr(vtype, "list_size", None) != dim:
        raise CacheError(
            f"cache {model_dir} holds vectors of type {vtype}, expected {dim} float32 per row; "
            f"the model changed: delete that folder or rename the registry entry"
        )
    keys = tbl.column("key").to_pylist()
    vec = tbl.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vec = vec.astype(np.float32, copy=False).reshape(-1, dim)
    first: dict[str, int] = {}
    for i, k in enumerate(keys):  # the same key may sit in two shards (concurrent writers)
        first.setdefault(k, i)
    if len(first) != len(keys):
        vec = vec[list(first.values())]
    return list(first), vec


def _write_shard(fs, model_dir: str, keys: list[str], vectors: np.ndarray, spec: EmbeddingModelSpec) -> str:
    """Write one chunk as ``shard-<sha256(keys)[:20]>.parquet`` atomically; returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    table = pa.table(
        {
            "key": pa.array(keys, type=pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), type=pa.float32()), spec.dim),
        }
    ).replace_schema_metadata({"model": spec.name, "source": spec.source, "dim": str(spec.dim)})
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:20]
    final = f"{model_dir}/shard-{digest}.parquet"
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    write_bytes_atomic(final, buf.getvalue().to_pybytes(), fs=fs)  # readers see all of a shard or nothing
    return final


def embed_with_cache(
    encoder: Encoder,
    keys: Sequence[str],
    load_inputs: Callable[[list[int]], list],
    cache_dir: str,
    chunk_size: int = 256,
    progress: Callable[[int, int], Any] | None = None,
    *,
    storage_options: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """Embed rows by content hash, computing only keys missing from the cache.

    Cache layout: ``<cache_dir>/<encoder.spec.name>/shard-<hash>.parquet``, each shard with columns
    ``key`` (string) and ``vector`` (fixed_size_list<float32>[dim]). Each finished chunk is written
    as its own shard (local: tmp file + rename; object store: one PUT), so a process killed mid-run
    loses at most the chunk in flight and a re-run resumes from there.

    Args:
        encoder: from :func:`load_encoder`.
        keys: one content hash per row (sha256 hex of catalog_content or image bytes); duplicates
            allowed (embedded once).
        load_inputs: ``load_inputs(row_indices) -> list`` of inputs (str or PIL image) for those
            rows, same length and order; called once per chunk, only for rows whose key is not cached,
            so cached rows never load their images.
        cache_dir: local path or fsspec URL (``s3://bucket/prefix``).
        chunk_size: unique keys per chunk / shard.
        progress: optional ``progress(done, total)`` called after each chunk is safely written
            (done / total counted in unique keys to compute). An exception it raises aborts the run;
            written chunks stay cached.
        storage_options: fsspec options (e.g. ``{"endpoint_url": ...}`` for S3).

    Returns:
        ``(vectors, stats)``: vectors (n, dim) float32 in input order (L2-normalised);
        stats ``{"rows": n, "unique_keys": u, "cached": c, "computed": k, "shards_written": s,
        "seconds": t, "rows_per_s": n / t}`` where cached + computed == u (unique keys).

    There is no per-row error tolerance: an exception from ``load_inputs`` (e.g. a stored photo
    that cannot be opened) or from the encoder propagates and ends the run; chunks written before
    it stay cached, the failing chunk is not written.

    Raises:
        ValueError: a key is not a non-empty string (names the row), chunk_size < 1, or
            load_inputs returned the wrong number of inputs (names the chunk's first row).
        CacheError: cached vectors have another dimension than ``encoder.spec.dim``.
        Exception: whatever ``load_inputs`` or ``encoder.encode`` raise, unchanged.
    """
    import fsspec

    t0 = time.perf_counter()
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    keys = list(keys)
    first_row: dict[str, int] = {}
    for i, k in enumerate(keys):
        if not isinstance(k, str) or not k:
            raise ValueError(f"keys[{i}] must be a non-empty string (content hash), got {k!r}")
        first_row.setdefault(k, i)
    spec = encoder.spec
    fs, root = fsspec.core.url_to_fs(str(cache_dir), **(storage_options or {}))
    model_dir = f"{root.rstrip('/')}/{spec.name}"
    if is_local_fs(fs):
        fs.makedirs(model_dir, exist_ok=True)

    cached_keys, cached_vecs = _read_cache(fs, model_dir, list(first_row), spec.dim)
    cached_set = set(cached_keys)
    todo = [k for k in first_row if k not in cached_set]
    new_vecs: list[np.ndarray] = []
    shards = 0
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        rows = [first_row[k] for k in chunk]
        inputs = list(load_inputs(rows))
        if len(inputs) != len(rows):
            raise ValueError(
                f"load_inputs returned {len(inputs)} inputs for {len(rows)} rows (chunk starting at row {rows[0]})"
            )
        vecs = encoder.encode(inputs)
        _write_shard(fs, model_dir, chunk, vecs, spec)
        shards += 1
        new_vecs.append(vecs)
        if progress is not None:
            progress(min(start + chunk_size, len(todo)), len(todo))

    import pandas as pd

    all_vecs = np.concatenate([cached_vecs, *new_vecs], axis=0)
    position = pd.Index(cached_keys + todo).get_indexer(keys)  # unique index -> row of all_vecs
    out = all_vecs[position]
    seconds = time.perf_counter() - t0
    stats = {
        "rows": len(keys),
        "unique_keys": len(first_row),
        "cached": len(first_row) - len(todo),
        "computed": len(todo),
        "shards_written": shards,
        "seconds": round(seconds, 4),
        "rows_per_s": round(len(keys) / seconds, 2) if seconds > 0 else math.inf,
    }
    return out, stats
