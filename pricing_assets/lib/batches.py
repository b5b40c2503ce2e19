"""Catalog batches on storage: one folder per batch under ``<base>/batches/<batch>/`` (fsspec)."""

import posixpath
import re

import fsspec

CATALOG_SUFFIXES = (".csv", ".parquet", ".pq")
_BATCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_batch_name(batch: str) -> str:
    """Return ``batch`` if it is a safe partition key (letters, digits, ``._-``; max 128 chars).

    Raises:
        ValueError: naming the offending batch name.
    """
    if not _BATCH_RE.match(batch or ""):
        raise ValueError(f"invalid batch name {batch!r}: use letters, digits, '.', '_' or '-' (max 128, no leading '.')")
    return batch


def batch_name_for(path: str) -> str:
    """Default batch name for a catalog file: its stem with unsafe characters replaced by ``_``."""
    stem = posixpath.basename(path.rstrip("/"))
    for suf in CATALOG_SUFFIXES:
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    return validate_batch_name(re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip(".") or "batch")


def store_batch(src: str, batches_dir: str, batch: str, src_options: dict | None = None, dst_options: dict | None = None) -> str:
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
        raise FileNotFoundError(f"no catalog file stored for batch {batch!r} under {d}; run `pricing ingest FILE --batch {batch}`")
    proto = d.split("://", 1)[0] + "://" if "://" in d else ""
    return proto + files[0] if proto and not files[0].startswith(proto) else files[0]
