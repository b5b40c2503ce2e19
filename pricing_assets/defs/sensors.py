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
cursor) goes through, oldest first:

1. name check (:func:`pricing_assets.lib.inbox.check_name`): the stem must give a valid batch name;
2. clash check: no other file of this tick (stored or waiting for a retry) maps to the same batch name —
   the oldest file keeps the name;
3. header check (:func:`pricing_assets.lib.inbox.check_catalog_header`): a few bytes are read (a CSV's
   first 64 KiB, a parquet file's head and footer) and parsed with the ingest's readers; the file must
   be a CSV / parquet file whose header is UTF-8 text holding the required columns
   (:data:`pricing_assets.lib.catalog.REQUIRED_COLUMNS`);
4. owner check: ``<storage>/batches/<batch>/`` must not already hold a file of another name (a batch
   stored from a file of the same name is replaced: that is a corrected re-delivery);
5. copy to ``<storage>/batches/<batch>/`` (:func:`pricing_assets.lib.batches.store_batch`), then its
   batch (the file's stem) is registered as a ``catalog_batches`` partition and a run of
   ``catalog_batch_job`` (the per-row assets) is requested with ``run_key = path|size|version``:
   idempotent — Dagster never launches two runs with the same key for this sensor.

What can go wrong (:func:`pricing_assets.lib.inbox.classify_error`):

* **defect of the file** (steps 1-4 raise ``InboxDefect``): logged at error level once, named in the
  tick's skip reason, recorded in the cursor (``defects``: path → signature, reason, time; the 100
  newest kept) and the version is marked done: not stored, not retried until the file changes (new
  size or mtime/ETag). Rows with non-UTF-8 bytes, bad prices, a header without data rows etc. are not
  defects here: the ingest quarantines the rows, or the run fails visibly (UI, run status) and is not
  retried until the file changes.
* **transient failure** (any ``OSError`` but ``FileNotFoundError`` — ``PermissionError``, connection
  refused, timeouts included —, botocore ``ClientError`` / ``EndpointConnectionError`` / timeouts /
  missing credentials, aiohttp client errors), reading the inbox or writing the storage: the version
  is *not* marked done; the cursor's ``retry`` record (path → signature, attempts, first_failed_at,
  next_try_at, error) holds it back for 30 s · 2^(attempts-1), capped at 15 min, and retries go on at
  that pace for as long as it fails (logged as warnings, at error level from the 5th attempt on). A
  changed file starts again at once. After a failure that means "unreachable" (connection refused,
  connect / read timeout) the other files of the tick are left for the next tick, uncounted.
* the file **vanished** (``FileNotFoundError``) between listing and copy: looked at again next tick.
* the **listing** fails transiently (inbox endpoint down): the tick returns a ``SkipReason`` naming
  the error and keeps the cursor (plus a ``listing`` failure count, error-level log from the 5th
  consecutive failure); nothing is marked or forgotten.
* anything else is a programming error and fails the tick loudly, cursor unchanged.

For ``s3://`` inbox and storage the sensor's own S3 calls use short timeouts
(:data:`pricing_assets.lib.inbox.S3_FAST_FAIL_CONFIG`): an endpoint that refuses connections costs
about 1 s per tick, one that never answers about 30 s, within Dagster's 60 s sensor timeout.

The global assets follow through ``pricing_automation_sensor`` and the nightly schedule.

Default status: **stopped**. Turn it on in the UI (Automation → ``catalog_inbox_sensor``), with
``dagster sensor start -w workspace.yaml catalog_inbox_sensor`` (daemon running), or set
``PRICING_AUTOMATION=1`` for the code location.
"""

import json
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import fsspec

from pricing_assets.automation import build_automation_sensor, default_status
from pricing_assets.defs.schedules import catalog_batch_job
from pricing_assets.lib.batches import CATALOG_SUFFIXES, batch_name_for, store_batch
from pricing_assets.lib.inbox import (
    CLASSIFIED_ERRORS,
    ERROR_AFTER_ATTEMPTS,
    TRANSIENT_ERRORS,
    InboxDefect,
    check_batch_owner,
    check_catalog_header,
    check_name,
    classify_error,
    describe,
    fast_fail_options,
    is_unreachable,
    record_defect,
    record_failure,
    record_listing_failure,
    retry_wait_s,
)
from pricing_assets.partitions import catalog_batches
from pricing_assets.resources import StorageResource, storage_options_for
from pricing_assets.settings import current_settings

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

    Raises:
        OSError, botocore / aiohttp errors: the listing failed (e.g. endpoint down). The folder is
        listed directly rather than probed with ``exists`` first: s3fs's ``exists`` of a bucket
        answers ``False`` when the endpoint is down, which would read as an empty inbox.
    """
    fs, root = fsspec.core.url_to_fs(inbox, **(storage_options or {}))
    fs.invalidate_cache(root)  # a no-op on filesystems without a listing cache
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    proto = inbox.split("://", 1)[0] + "://" if "://" in inbox else ""
    out = []
    for info in entries:
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
        cursor: previous state ``{"done": {path: signature}, "sizes": {path: size}, ...}`` (``{}`` at
            first); other keys (``retry``, ``defects``, ``listing``) are the sensor's and ignored here.
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


def _claimed_batches(retry: dict) -> dict[str, str]:
    """``{batch: path}`` of the files waiting for a retry: they keep their batch name."""
    out = {}
    for path in sorted(retry):
        try:
            out.setdefault(check_name(path), path)
        except InboxDefect:  # pragma: no cover - a retried file passed the name check
            continue
    return out


def build_inbox_sensor(
    inbox: str,
    endpoint_url: str | None = None,
    *,
    min_age_s: float = DEFAULT_MIN_AGE_S,
    minimum_interval_seconds: int = 30,
    on: bool = False,
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """``catalog_inbox_sensor`` watching ``inbox`` (local folder or ``s3://bucket/prefix``).

    Args:
        inbox: where catalog files are dropped (``settings.inbox``).
        endpoint_url: S3-compatible endpoint for an ``s3://`` inbox (``settings.s3_endpoint``).
        min_age_s: seconds a file must have been left unmodified.
        minimum_interval_seconds: time between ticks.
        on: default status RUNNING instead of STOPPED.
        clock: current time in seconds since the epoch (file age, retry backoff); tests pass a fake.

    The sensor's own S3 calls (inbox and ``storage``) get :func:`pricing_assets.lib.inbox.fast_fail_options`.
    """
    inbox_options = fast_fail_options(inbox, storage_options_for(inbox, endpoint_url))
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
        now = clock()
        try:
            files = list_inbox(inbox, inbox_options)
        except TRANSIENT_ERRORS as exc:  # endpoint down, permissions, timeouts: keep everything, try next tick
            listing = record_listing_failure(cursor.get("listing"), now, describe(exc))
            log = context.log.error if listing["failures"] >= ERROR_AFTER_ATTEMPTS else context.log.warning
            msg = (
                f"cannot list the inbox {inbox} ({listing['failures']} tick(s) in a row): {listing['error']}; "
                "nothing marked, listing again next tick"
            )
            log(msg)
            return dg.SensorResult(cursor=json.dumps({**cursor, "listing": listing}, sort_keys=True), skip_reason=dg.SkipReason(msg))

        ready, new_cursor, waiting = ready_files(files, cursor, now, min_age_s, object_store)
        present = {f.path for f in files}
        retry = {p: r for p, r in cursor.get("retry", {}).items() if p in present}
        defects = {p: d for p, d in cursor.get("defects", {}).items() if p in present}
        claimed = _claimed_batches(retry)
        batches_dir = storage.batches_dir()
        dst_options = fast_fail_options(storage.base_path, storage.storage_options)
        runs, batches, refused, failed = [], [], {}, {}
        unreachable = None
        for f in ready:
            wait_s = retry_wait_s(retry.get(f.path), f.signature, now)
            if wait_s > 0:
                rec = retry[f.path]
                waiting[f.path] = f"attempt {rec['attempts'] + 1} in {wait_s:.0f} s (last: {rec['error']})"
                continue
            if unreachable is not None:
                waiting[f.path] = f"not tried this tick, an endpoint is unreachable: {unreachable}"
                continue
            batch = None
            try:
                batch = check_name(f.path)
                other = claimed.get(batch)
                if other is not None and other != f.path:
                    raise InboxDefect(f"batch name {batch!r} is also derived from {other}; rename one of the files")
                check_catalog_header(f.path, f.size, inbox_options)
                check_batch_owner(batches_dir, batch, f.path, dst_options)
                store_batch(f.path, batches_dir, batch, src_options=inbox_options, dst_options=dst_options)
            except CLASSIFIED_ERRORS as exc:
                kind = classify_error(exc)
                if kind == "vanished":
                    context.log.warning(f"{f.path}: not found ({describe(exc)}); the file vanished or the storage location is missing, looking again next tick")
                elif kind == "defect":
                    refused[f.path] = str(exc)
                    defects = record_defect(defects, f.path, f.signature, str(exc), now)
                    retry.pop(f.path, None)
                    new_cursor["done"][f.path] = f.signature
                    context.log.error(f"refused {f.path}, not retried until the file changes: {exc}")
                else:  # transient: keep the version pending, back off
                    rec = record_failure(retry.get(f.path), f.signature, now, describe(exc))
                    retry[f.path] = rec
                    claimed[batch] = f.path
                    failed[f.path] = f"attempt {rec['attempts']}: {rec['error']}"
                    log = context.log.error if rec["attempts"] >= ERROR_AFTER_ATTEMPTS else context.log.warning
                    log(
                        f"cannot store {f.path} (attempt {rec['attempts']}, failing for {now - rec['first_failed_at']:.0f} s): "
                        f"{rec['error']}; next try in {rec['next_try_at'] - now:.0f} s"
                    )
                    if is_unreachable(exc):
                        unreachable = rec["error"]
                continue
            claimed[batch] = f.path
            new_cursor["done"][f.path] = f.signature
            retry.pop(f.path, None)
            defects.pop(f.path, None)
            batches.append(batch)
            runs.append(
                dg.RunRequest(
                    run_key=f.run_key,
                    partition_key=batch,
                    tags={"pricing/inbox_file": f.path, "pricing/inbox_version": f.signature},
                )
            )
        for path, why in waiting.items():
            context.log.info(f"waiting for {path}: {why}")
        new_cursor["retry"] = retry
        new_cursor["defects"] = defects
        new_batches = [b for b in dict.fromkeys(batches) if not context.instance.has_dynamic_partition(catalog_batches.name, b)]
        skip = None
        if not runs:
            skip = dg.SkipReason(
                f"no new catalog file in {inbox}"
                + (f"; waiting for {len(waiting)}: {dict(list(waiting.items())[:3])}" if waiting else "")
                + (f"; failed, will retry {len(failed)}: {dict(list(failed.items())[:3])}" if failed else "")
                + (f"; refused {len(refused)} (file defects, not retried until the file changes): {refused}" if refused else "")
            )
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=[catalog_batches.build_add_request(new_batches)] if new_batches else [],
            cursor=json.dumps(new_cursor, sort_keys=True),
            skip_reason=skip,
        )

    return catalog_inbox_sensor


@dg.definitions
def sensors_defs() -> dg.Definitions:
    """The inbox sensor and the automation sensor (stopped unless ``PRICING_AUTOMATION=1``)."""
    s = current_settings()
    return dg.Definitions(sensors=[build_inbox_sensor(s.inbox, s.s3_endpoint, on=s.automation_on), build_automation_sensor(on=s.automation_on)])
