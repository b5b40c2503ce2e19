"""``catalog_inbox_sensor``: every new catalog file dropped in the inbox becomes a batch partition + run.

The inbox is ``settings.inbox`` (``PRICING_INBOX``): a local folder or ``s3://bucket/prefix`` (s3fs,
endpoint from ``PRICING_S3_ENDPOINT``, credentials from the ``AWS_*`` environment variables). Only the
top level is listed, only ``.csv`` / ``.parquet`` / ``.pq`` files are considered.

A file is *ready* when (:func:`ready_files`):

* its name doesn't look half-written: no leading ``.`` or ``~``, no ``.tmp`` / ``.part`` /
  ``.crdownload`` / ``.partial`` / ``.filepart`` / ``.download`` suffix (such names never match
  the catalog suffixes anyway, the rule is explicit for ``x.csv.part``-style names);
* it is non-empty and was last modified at least ``min_age_s`` seconds ago;
* on a local or network filesystem, its size is the one seen on the previous tick (a writer still
  appending changes it). Object stores publish an object only once its upload completes (PUT and
  multipart-complete are atomic), so this check is skipped for ``s3://``.

Each ready file not yet handled in its current version (path + size + mtime/ETag, kept in the
cursor) is copied to ``<storage>/batches/<batch>/`` (:func:`pricing_assets.lib.batches.store_batch`),
its batch (the file's stem) is registered as a ``catalog_batches`` partition and a run of
``catalog_batch_job`` (the per-row assets) is requested with ``run_key = path|size|version``:
idempotent — Dagster never launches two runs with the same key for this sensor, and a file that fails
its contract fails its run visibly (UI, run status) and is not retried until the file itself changes.
The global assets follow through ``pricing_automation_sensor`` and the nightly schedule.

Default status: **stopped**. Turn it on in the UI (Automation → ``catalog_inbox_sensor``), with
``dagster sensor start -m pricing_assets.definitions catalog_inbox_sensor`` (daemon running), or set
``PRICING_AUTOMATION=1`` for the code location.
"""

import json
import posixpath
import time
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import fsspec

from pricing_assets.automation import default_status
from pricing_assets.lib.batches import CATALOG_SUFFIXES, batch_name_for, store_batch
from pricing_assets.partitions import catalog_batches
from pricing_assets.resources import StorageResource, storage_options_for
from pricing_assets.schedules import catalog_batch_job

SENSOR_NAME = "catalog_inbox_sensor"
#: Name patterns of files still being written (browsers, rsync, scp clients, editors).
HALF_WRITTEN_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", ".download", ".swp")
#: Default quiet period (seconds) before a file is picked up.
DEFAULT_MIN_AGE_S = 10.0


@dataclass(frozen=True)
class InboxFile:
    """One catalog file seen in the inbox.

    Attributes:
        path: full path or URL (``s3://bucket/key``), as given to ``store_batch``.
        size: bytes.
        mtime: last modification, seconds since the epoch (UTC).
        version: ETag on object stores, else the mtime as text; with ``size`` it identifies one
            version of the file.
    """

    path: str
    size: int
    mtime: float
    version: str

    @property
    def signature(self) -> str:
        """``size|version``: changes whenever the file is rewritten."""
        return f"{self.size}|{self.version}"

    @property
    def run_key(self) -> str:
        """Idempotent Dagster run key ``path|size|version``."""
        return f"{self.path}|{self.signature}"

    @property
    def batch(self) -> str:
        """Partition key for the file (its stem, see :func:`pricing_assets.lib.batches.batch_name_for`)."""
        return batch_name_for(self.path)


def _mtime(info: dict) -> float:
    for k in ("mtime", "LastModified", "last_modified", "created"):
        v = info.get(k)
        if isinstance(v, datetime):
            return v.timestamp()
        if isinstance(v, (int, float)):
            return float(v)
    return 0.0


def list_inbox(inbox: str, storage_options: dict | None = None) -> list[InboxFile]:
    """Catalog files (by suffix) at the top level of ``inbox``, sorted by (mtime, path).

    Args:
        inbox: local folder or fsspec URL (``s3://bucket/prefix``).
        storage_options: fsspec options, e.g. ``{"endpoint_url": ...}``.

    Returns:
        one :class:`InboxFile` per file; ``[]`` when the folder / prefix doesn't exist yet. Names that
        look half-written are included here (filtered by :func:`ready_files`, which says why).
    """
    fs, root = fsspec.core.url_to_fs(inbox, **(storage_options or {}))
    try:
        fs.invalidate_cache(root)
    except Exception:  # pragma: no cover - filesystems without a listing cache
        pass
    if not fs.exists(root):
        return []
    proto = inbox.split("://", 1)[0] + "://" if "://" in inbox else ""
    out = []
    for info in fs.ls(root, detail=True):
        if info.get("type") != "file":
            continue
        name = info["name"]
        low = posixpath.basename(name).lower()
        if not (low.endswith(CATALOG_SUFFIXES) or any(low.endswith(s + h) for s in CATALOG_SUFFIXES for h in HALF_WRITTEN_SUFFIXES)):
            continue
        path = name if (not proto or name.startswith(proto)) else proto + name
        etag = info.get("ETag") or info.get("etag")
        mtime = _mtime(info)
        out.append(InboxFile(path=path, size=int(info.get("size") or 0), mtime=mtime, version=str(etag).strip('"') if etag else repr(mtime)))
    return sorted(out, key=lambda f: (f.mtime, f.path))


def skip_reason(f: InboxFile, previous_size: int | None, now: float, min_age_s: float, object_store: bool) -> str | None:
    """Why ``f`` is not ready yet (``None`` when it is): half-written name, empty, too recent, or
    size not yet confirmed stable across two ticks (local filesystems only)."""
    name = posixpath.basename(f.path)
    if name.startswith((".", "~")) or name.lower().endswith(HALF_WRITTEN_SUFFIXES):
        return "half-written name"
    if f.size <= 0:
        return "empty file"
    if now - f.mtime < min_age_s:
        return f"modified {now - f.mtime:.0f} s ago (< {min_age_s:.0f} s)"
    if not object_store and previous_size != f.size:
        return "size not yet stable (seen for the first time or still growing)"
    return None


def ready_files(files: list[InboxFile], cursor: dict, now: float, min_age_s: float, object_store: bool) -> tuple[list[InboxFile], dict, dict]:
    """Split the listing into files to ingest now and files to wait for.

    Args:
        files: from :func:`list_inbox`.
        cursor: previous state ``{"done": {path: signature}, "sizes": {path: size}}`` (``{}`` at first).
        now: current time, seconds since the epoch.
        min_age_s: quiet period in seconds.
        object_store: True for ``s3://`` inboxes (no size-stability check).

    Returns:
        ``(ready, new_cursor, waiting)``: ``ready`` files not handled in this version, oldest first;
        ``new_cursor`` with this tick's sizes (``done`` pruned to files still present, *not* yet
        updated with ``ready`` — the caller marks them after storing); ``waiting`` ``{path: reason}``.
    """
    done = dict(cursor.get("done", {}))
    sizes = dict(cursor.get("sizes", {}))
    ready, waiting = [], {}
    for f in files:
        if done.get(f.path) == f.signature:
            continue
        reason = skip_reason(f, sizes.get(f.path), now, min_age_s, object_store)
        if reason:
            waiting[f.path] = reason
        else:
            ready.append(f)
    present = {f.path for f in files}
    new_cursor = {"done": {p: s for p, s in done.items() if p in present}, "sizes": {f.path: f.size for f in files}}
    return ready, new_cursor, waiting


def build_inbox_sensor(
    inbox: str,
    endpoint_url: str | None = None,
    *,
    min_age_s: float = DEFAULT_MIN_AGE_S,
    minimum_interval_seconds: int = 30,
    on: bool = False,
) -> dg.SensorDefinition:
    """``catalog_inbox_sensor`` watching ``inbox`` (local folder or ``s3://bucket/prefix``).

    Args:
        inbox: where catalog files are dropped (``settings.inbox``).
        endpoint_url: S3-compatible endpoint for an ``s3://`` inbox (``settings.s3_endpoint``).
        min_age_s: seconds a file must have been left unmodified.
        minimum_interval_seconds: time between ticks.
        on: default status RUNNING instead of STOPPED.
    """
    inbox_options = storage_options_for(inbox, endpoint_url)
    object_store = "://" in inbox and not inbox.startswith("file://")

    @dg.sensor(
        name=SENSOR_NAME,
        job=catalog_batch_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status(on),
        description=f"Registers each new catalog file in {inbox} as a batch partition and runs its per-row assets.",
    )
    def catalog_inbox_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        files = list_inbox(inbox, inbox_options)
        ready, new_cursor, waiting = ready_files(files, cursor, time.time(), min_age_s, object_store)
        for path, why in waiting.items():
            context.log.info(f"waiting for {path}: {why}")
        runs, batches, failed = [], [], {}
        claimed = {}
        for f in ready:
            try:
                batch = f.batch
                if batch in claimed:
                    raise ValueError(f"batch name {batch!r} also derived from {claimed[batch]} in this tick; rename one file")
                claimed[batch] = f.path
                store_batch(f.path, storage.batches_dir(), batch, src_options=inbox_options, dst_options=storage.storage_options)
            except FileNotFoundError:
                context.log.warning(f"{f.path} vanished before it could be stored; will look again next tick")
                continue
            except Exception as e:  # reported once per file version, not retried until the file changes
                failed[f.path] = f"{type(e).__name__}: {e}"
                context.log.error(f"cannot ingest {f.path}: {failed[f.path]}")
                new_cursor["done"][f.path] = f.signature
                continue
            new_cursor["done"][f.path] = f.signature
            batches.append(batch)
            runs.append(
                dg.RunRequest(
                    run_key=f.run_key,
                    partition_key=batch,
                    tags={"pricing/inbox_file": f.path, "pricing/inbox_version": f.signature},
                )
            )
        new_batches = [b for b in dict.fromkeys(batches) if not context.instance.has_dynamic_partition(catalog_batches.name, b)]
        skip = None
        if not runs:
            skip = dg.SkipReason(
                f"no new catalog file in {inbox}"
                + (f"; waiting for {len(waiting)}: {dict(list(waiting.items())[:3])}" if waiting else "")
                + (f"; failed {len(failed)}: {failed}" if failed else "")
            )
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=[catalog_batches.build_add_request(new_batches)] if new_batches else [],
            cursor=json.dumps(new_cursor, sort_keys=True),
            skip_reason=skip,
        )

    return catalog_inbox_sensor
