"""``catalog_inbox_sensor``: every new catalog file dropped in the inbox becomes a batch partition + run.

The inbox is ``settings.inbox`` (``PRICING_INBOX``): a local folder or ``s3://bucket/prefix`` (s3fs,
endpoint from ``PRICING_S3_ENDPOINT``, credentials from the ``AWS_*`` environment variables). Only the
top level is listed, only ``.csv`` / ``.parquet`` / ``.pq`` files are considered.

The decisions are Dagster-free functions of :mod:`pricing_assets.lib.catalog.inbox` (tested without a sensor
context: ``pricing_tests/lib/catalog/test_inbox.py``); this module lists, checks and copies files with them and
turns their answers into run requests, dynamic-partition requests, log lines and the cursor.

A file is *ready* when (:func:`pricing_assets.lib.catalog.inbox.ready_files`):

* its name doesn't look half-written: no leading ``.`` or ``~``, no ``.tmp`` / ``.part`` /
  ``.crdownload`` / ``.partial`` / ``.filepart`` / ``.download`` suffix (such names never match
  the catalog suffixes anyway, the rule is explicit for ``x.csv.part``-style names);
* it is non-empty and was last modified at least ``min_age_s`` seconds ago;
* on a local or network filesystem, its size is the one seen on the previous tick (a writer still
  appending changes it). Object stores publish an object only once its upload completes (PUT and
  multipart-complete are atomic), so this check is skipped for ``s3://``.

Each ready file not yet handled in its current version (path + size + mtime/ETag, kept in the
cursor) goes through, oldest first:

1. name check (:func:`pricing_assets.lib.catalog.inbox.check_name`): the stem must give a valid batch name;
2. clash check: no other file of this tick (stored or waiting for a retry) maps to the same batch name —
   the oldest file keeps the name;
3. header check (:func:`pricing_assets.lib.catalog.inbox.check_catalog_header`): a few bytes are read (a CSV's
   first 64 KiB, a parquet file's head and footer) and parsed with the ingest's readers; the file must
   be a CSV / parquet file whose header is UTF-8 text holding the required columns
   (:data:`pricing_assets.lib.catalog.parsing.REQUIRED_COLUMNS`);
4. owner check: ``<storage>/batches/<batch>/`` must not already hold a file of another name (a batch
   stored from a file of the same name is replaced: that is a corrected re-delivery);
5. copy to ``<storage>/batches/<batch>/`` (:func:`pricing_assets.lib.catalog.batches.store_batch`), then its
   batch (the file's stem) is registered as a ``catalog_batches`` partition and a run of
   ``catalog_batch_job`` (the per-row assets) is requested with ``run_key = path|size|version``:
   idempotent — Dagster never launches two runs with the same key for this sensor.

What can go wrong (:func:`pricing_assets.lib.catalog.inbox.classify_error`, :meth:`pricing_assets.lib.catalog.inbox.InboxTick.failed_with`):

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
(:data:`pricing_assets.lib.catalog.inbox.S3_FAST_FAIL_CONFIG`): an endpoint that refuses connections costs
about 1 s per tick, one that never answers about 30 s, within Dagster's 60 s sensor timeout.

The global assets follow through ``pricing_automation_sensor`` and the nightly schedule.

Default status: **stopped**. Turn it on in the UI (Automation → ``catalog_inbox_sensor``), with
``dagster sensor start -w workspace.yaml catalog_inbox_sensor`` (daemon running), or set
``PRICING_AUTOMATION=1`` for the code location.
"""

import json
import time
from collections.abc import Callable

import dagster as dg

from pricing_assets.automation import build_automation_sensor, default_status
from pricing_assets.defs.schedules import catalog_batch_job
from pricing_assets.instance_state import is_registered_batch
from pricing_assets.lib.catalog.batches import store_batch
from pricing_assets.lib.catalog.inbox import (
    CLASSIFIED_ERRORS,
    DEFAULT_MIN_AGE_S,
    TRANSIENT_ERRORS,
    check_batch_owner,
    check_catalog_header,
    fast_fail_options,
    list_inbox,
    listing_failed,
    start_tick,
)
from pricing_assets.partitions import catalog_batches
from pricing_assets.resources import StorageResource, storage_options_for
from pricing_assets.settings import current_settings

SENSOR_NAME = "catalog_inbox_sensor"


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

    The sensor's own S3 calls (inbox and ``storage``) get :func:`pricing_assets.lib.catalog.inbox.fast_fail_options`.
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
            kept, level, msg = listing_failed(cursor, now, exc, inbox)
            getattr(context.log, level)(msg)
            return dg.SensorResult(cursor=json.dumps(kept, sort_keys=True), skip_reason=dg.SkipReason(msg))

        tick = start_tick(inbox, files, cursor, now, min_age_s, object_store)
        batches_dir = storage.batches_dir()
        dst_options = fast_fail_options(storage.base_path, storage.storage_options)
        runs = []
        for f in tick.ready:
            if tick.hold_back(f):
                continue
            batch = None
            try:
                batch = tick.batch_for(f)
                check_catalog_header(f.path, f.size, inbox_options)
                check_batch_owner(batches_dir, batch, f.path, dst_options)
                store_batch(f.path, batches_dir, batch, src_options=inbox_options, dst_options=dst_options)
            except CLASSIFIED_ERRORS as exc:  # anything else is a programming error: the tick fails loudly
                level, msg = tick.failed_with(f, batch, exc)
                getattr(context.log, level)(msg)
                continue
            runs.append(dg.RunRequest(**tick.stored(f, batch)))
        for path, why in tick.waiting.items():
            context.log.info(f"waiting for {path}: {why}")
        new_batches = tick.new_batches(lambda b: is_registered_batch(context.instance, b))
        skip = tick.skip_message()
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=[catalog_batches.build_add_request(new_batches)] if new_batches else [],
            cursor=json.dumps(tick.next_cursor(), sort_keys=True),
            skip_reason=dg.SkipReason(skip) if skip else None,
        )

    return catalog_inbox_sensor


@dg.definitions
def sensors_defs() -> dg.Definitions:
    """The inbox sensor and the automation sensor (stopped unless ``PRICING_AUTOMATION=1``)."""
    s = current_settings()
    return dg.Definitions(
        sensors=[
            build_inbox_sensor(s.inbox, s.s3_endpoint, on=s.automation_on),
            build_automation_sensor(on=s.automation_on),
        ]
    )
