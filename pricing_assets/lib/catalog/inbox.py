"""What the catalog inbox sensor decides: which files are ready, what to store and request, what a
failure means and when to try again. ``pricing_assets/defs/sensors.py`` only wires this to Dagster.

Dagster-free. One tick: :func:`list_inbox`, then :func:`start_tick` (:func:`ready_files`: the files
ready and not handled in their version), then per ready file :meth:`InboxTick.hold_back` (backoff,
unreachable endpoint), :meth:`InboxTick.batch_for` (name and clash checks), the header / owner checks
and the copy (the sensor's I/O), and :meth:`InboxTick.stored` (a run request) or
:meth:`InboxTick.failed_with`; :meth:`InboxTick.next_cursor`, :meth:`InboxTick.new_batches` and
:meth:`InboxTick.skip_message` close it. A failed listing: :func:`listing_failed`.

Two kinds of failure, told apart by :func:`classify_error`:

* a **defect** of the file itself (:class:`InboxDefect`): unusable name or suffix, batch-name clash,
  not a CSV / parquet file, header not readable as UTF-8 text, required columns missing. Retrying
  cannot help: the file is reported once per version and left alone until it changes.
* a **transient** failure (:data:`TRANSIENT_ERRORS`): any ``OSError`` but ``FileNotFoundError``
  (``PermissionError``, ``ConnectionError``, ``TimeoutError`` included: a person fixes the permission
  or the network, then the file must go through), botocore ``ClientError`` / ``ConnectionError``
  (``EndpointConnectionError``, connect timeouts) / ``HTTPClientError`` (read timeouts) / missing
  credentials, aiohttp client errors.
  Retried with a bounded exponential backoff (:func:`backoff_delay_s`: 30 s, 60 s, … capped at
  15 min, then every 15 min for ever).

``FileNotFoundError`` is neither: the file *vanished* between the listing and the copy; it is looked
at again on the next tick (no attempt counted).

The header check (:func:`check_catalog_header`) reads only a few bytes: the first
:data:`HEADER_PEEK_BYTES` of a CSV, the 4-byte head and the footer of a parquet file, and parses them
with the readers the ingest uses (``pandas.read_csv`` with :func:`pricing_assets.lib.catalog.parsing.read_catalog`'s
options, pyarrow's parquet metadata reader). Only whole-file problems are defects here; row-level
problems (non-UTF-8 bytes in a data row, bad prices, duplicates) stay with the ingest, which
quarantines the rows, and a file with no data row fails its run.
"""

import codecs
import io
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import fsspec
import pandas as pd

from pricing_assets.lib.catalog.batches import CATALOG_SUFFIXES, batch_name_for, find_batch_file
from pricing_assets.lib.catalog.parsing import REQUIRED_COLUMNS

#: First delay (seconds) after a transient failure; doubled at each further failure.
RETRY_BASE_S = 30.0
#: Longest delay (seconds) between two attempts; retries go on at this pace, never stop.
RETRY_CAP_S = 900.0
#: From this many consecutive failures of one file version on, each failure is logged at error level.
ERROR_AFTER_ATTEMPTS = 5
#: Most defect records kept in the cursor (the newest ones).
MAX_DEFECT_RECORDS = 100
#: Bytes read from the start of a CSV file to find its header line.
HEADER_PEEK_BYTES = 64 * 1024
#: Longest error / reason text (characters) kept in the cursor.
MAX_MESSAGE_CHARS = 300
#: S3 client settings for the sensor's own reads and writes (botocore ``Config`` keyword arguments):
#: connect / read timeouts in seconds and a single attempt per s3fs call (s3fs itself retries a call
#: up to 5 times). Measured with s3fs 2026.9: an endpoint refusing connections fails a call in about
#: 1 s (about 8 s with botocore's defaults); one that accepts and never answers in about 30 s
#: (5 x the 5 s read timeout; about 25 min with the defaults), under Dagster's 60 s tick timeout.
S3_FAST_FAIL_CONFIG: dict = {
    "connect_timeout": 3,
    "read_timeout": 5,
    "retries": {"total_max_attempts": 1, "mode": "standard"},
}

PARQUET_SUFFIXES = tuple(s for s in CATALOG_SUFFIXES if s != ".csv")


class InboxDefect(ValueError):
    """A defect of an inbox file itself (name, format, encoding, header): retrying cannot fix it."""


def _transient_error_classes() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [OSError]  # PermissionError, ConnectionError, TimeoutError, ...
    try:
        import botocore.exceptions as be
    except ImportError:  # pragma: no cover - s3fs is a dependency, botocore comes with it
        pass
    else:
        classes += [
            be.ClientError,
            be.ConnectionError,
            be.HTTPClientError,
            be.NoCredentialsError,
            be.PartialCredentialsError,
            be.CredentialRetrievalError,
        ]
    try:
        import aiohttp
    except ImportError:  # pragma: no cover
        pass
    else:
        classes.append(aiohttp.ClientError)
    from fsspec.exceptions import FSTimeoutError

    classes.append(FSTimeoutError)
    return tuple(classes)


#: Exception classes of failures that may go away by themselves (or once a person fixes access):
#: ``OSError`` (``FileNotFoundError`` is told apart by :func:`classify_error`), botocore ``ClientError``,
#: ``ConnectionError`` (``EndpointConnectionError``, connect timeouts), ``HTTPClientError`` (read
#: timeouts, closed connections) and credential errors, aiohttp client errors, fsspec timeouts.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = _transient_error_classes()
#: Everything :func:`classify_error` gives a kind to; anything else is a programming error.
CLASSIFIED_ERRORS: tuple[type[BaseException], ...] = (InboxDefect, *TRANSIENT_ERRORS)


def _unreachable_classes() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import botocore.exceptions as be
    except ImportError:  # pragma: no cover
        pass
    else:
        # ConnectionError: EndpointConnectionError, ConnectTimeoutError; HTTPClientError: ReadTimeoutError,
        # ConnectionClosedError
        classes += [be.ConnectionError, be.HTTPClientError]
    try:
        import aiohttp
    except ImportError:  # pragma: no cover
        pass
    else:
        classes.append(aiohttp.ClientConnectionError)
    return tuple(classes)


_UNREACHABLE = _unreachable_classes()


def classify_error(exc: BaseException) -> str | None:
    """Kind of a failure met while checking or storing an inbox file.

    Returns:
        ``"vanished"`` for ``FileNotFoundError``; ``"defect"`` for :class:`InboxDefect`;
        ``"transient"`` for the other :data:`TRANSIENT_ERRORS`; ``None`` for anything else (a
        programming error: the caller re-raises it).
    """
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    if isinstance(exc, InboxDefect):
        return "defect"
    if isinstance(exc, TRANSIENT_ERRORS):
        return "transient"
    return None


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says an endpoint could not be reached or did not answer in time (connection
    refused / reset, connect or read timeout): further calls to it in the same tick would fail too."""
    return isinstance(exc, _UNREACHABLE)


def describe(exc: BaseException) -> str:
    """``"TypeName: message"``, cut to :data:`MAX_MESSAGE_CHARS` characters."""
    return f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS]


# ---- backoff bookkeeping -----------------------------------------------------------------------


def backoff_delay_s(attempts: int, base_s: float = RETRY_BASE_S, cap_s: float = RETRY_CAP_S) -> float:
    """Seconds to wait after the ``attempts``-th consecutive failure: ``min(cap_s, base_s * 2**(attempts-1))``.

    With the defaults: 30, 60, 120, 240, 480, 900, 900, … seconds.

    Raises:
        ValueError: ``attempts < 1``.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    return float(min(cap_s, base_s * 2 ** min(attempts - 1, 32)))


def record_failure(previous: dict | None, signature: str, now: float, error: str) -> dict:
    """Retry record after a transient failure of one file version.

    Args:
        previous: the file's record from the cursor, or ``None``. A record for another signature
            (the file changed since) is ignored: the count starts again.
        signature: the file version (``size|version``).
        now: seconds since the epoch.
        error: what failed (:func:`describe`).

    Returns:
        ``{"signature", "attempts", "first_failed_at", "next_try_at", "error"}``; ``attempts`` counts
        consecutive failures of this version, ``next_try_at = now + backoff_delay_s(attempts)``.
    """
    same = bool(previous) and previous.get("signature") == signature
    attempts = int(previous.get("attempts", 0)) + 1 if same else 1
    return {
        "signature": signature,
        "attempts": attempts,
        "first_failed_at": float(previous.get("first_failed_at", now)) if same else now,
        "next_try_at": now + backoff_delay_s(attempts),
        "error": error[:MAX_MESSAGE_CHARS],
    }


def retry_wait_s(record: dict | None, signature: str, now: float) -> float:
    """Seconds before a file version may be tried again: ``0.0`` when due, when there is no record,
    or when the record is for another version of the file."""
    if not record or record.get("signature") != signature:
        return 0.0
    return max(0.0, float(record.get("next_try_at", 0.0)) - now)


def record_defect(
    defects: dict, path: str, signature: str, reason: str, now: float, cap: int = MAX_DEFECT_RECORDS
) -> dict:
    """``defects`` plus ``path → {"signature", "reason", "at"}``, keeping the ``cap`` newest records.

    Args:
        defects: cursor records ``{path: {"signature", "reason", "at"}}`` (not modified).
        now: seconds since the epoch, stored as ``at``.
        cap: most records kept (oldest ``at`` dropped first).
    """
    out = dict(defects)
    out[path] = {"signature": signature, "reason": reason[:MAX_MESSAGE_CHARS], "at": now}
    if len(out) > cap:
        newest = sorted(out.items(), key=lambda kv: (kv[1].get("at", 0.0), kv[0]), reverse=True)[:cap]
        out = dict(newest)
    return out


# ---- defects: name, header, clash --------------------------------------------------------------


def check_name(path: str) -> str:
    """Batch name of an inbox file, after checking its name can be stored.

    Returns:
        the batch name (:func:`pricing_assets.lib.catalog.batches.batch_name_for`).

    Raises:
        InboxDefect: suffix not in ``CATALOG_SUFFIXES``, or a stem that gives no valid batch name
            (leading ``_``/``-``, over 128 characters, ...).
    """
    name = posixpath.basename(path.rstrip("/"))
    if not name.lower().endswith(CATALOG_SUFFIXES):
        raise InboxDefect(f"unsupported file name {name!r}: catalog files end with one of {CATALOG_SUFFIXES}")
    try:
        return batch_name_for(path)
    except ValueError as exc:
        raise InboxDefect(f"unusable file name {name!r}: {exc}; rename the file") from exc


def csv_header_columns(head: bytes, complete: bool) -> list[str]:
    """Header columns (stripped) of a CSV file from its first bytes, parsed as ``read_catalog`` does.

    Args:
        head: the first bytes of the file.
        complete: True when ``head`` is the whole file (else it is cut after its last line break).

    Raises:
        InboxDefect: parquet data, UTF-16 or binary data (NUL bytes) in the first line, no line break
            in ``head`` (not a CSV, or a header longer than ``len(head)``), no header row, or a header
            pandas cannot parse.
    """
    if head.startswith(b"PAR1"):
        raise InboxDefect("parquet data in a file named .csv: rename it .parquet")
    first_line = head.split(b"\n", 1)[0]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in first_line:
        raise InboxDefect("not UTF-8 text: UTF-16 or binary data in the header line; save the file as UTF-8 CSV")
    if not complete:
        cut = head.rfind(b"\n")
        if cut < 0:
            raise InboxDefect(f"no line break in the first {len(head)} bytes: not a CSV file")
        head = head[: cut + 1]

    def parse(raw: bytes) -> pd.DataFrame:
        text = raw.decode("utf-8-sig", errors="replace")  # \n never occurs inside a UTF-8 sequence
        return pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=True, nrows=0
        )

    try:
        try:
            frame = parse(head)
        except pd.errors.ParserError:
            if complete:
                raise
            frame = parse(first_line + b"\n")  # the peek ended inside a long quoted record: the header line alone
    except pd.errors.EmptyDataError as exc:
        raise InboxDefect("no header row: not a CSV catalog") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise InboxDefect(f"malformed CSV header: {exc}") from exc
    return [str(c).strip() for c in frame.columns]


def parquet_footer_length(head: bytes, tail: bytes, size: int) -> int:
    """Length in bytes of a parquet file's footer metadata.

    Args:
        head: the file's first 4 bytes; tail: its last 8 bytes; size: its size in bytes.

    Raises:
        InboxDefect: no ``PAR1`` magic at both ends, or a footer length that doesn't fit the file.
    """
    if size < 12 or head[:4] != b"PAR1" or tail[-4:] != b"PAR1" or len(tail) != 8:
        raise InboxDefect("not a parquet file (no PAR1 magic at both ends)")
    n = int.from_bytes(tail[:4], "little")
    if n <= 0 or n + 12 > size:
        raise InboxDefect(f"corrupt parquet file: footer length {n} for {size} bytes")
    return n


def parquet_footer_columns(footer: bytes) -> list[str]:
    """Column names (stripped) from a parquet footer (metadata + 8-byte trailer).

    Raises:
        InboxDefect: pyarrow cannot read the metadata.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:  # in memory: any error here is about the bytes, not about I/O
        schema = pq.read_schema(io.BytesIO(b"PAR1" + footer))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InboxDefect(f"unreadable parquet metadata: {exc}") from exc
    return [str(c).strip() for c in schema.names]


def check_required_columns(columns: list[str], required: tuple[str, ...] = REQUIRED_COLUMNS) -> None:
    """Raise :class:`InboxDefect` naming the ``required`` columns absent from ``columns``.

    The message adds "the header is not UTF-8 text" when a column name holds a replacement
    character (U+FFFD), i.e. the header was not decodable as UTF-8.
    """
    missing = [c for c in required if c not in columns]
    if missing:
        hint = "; the header is not UTF-8 text" if any("\ufffd" in c for c in columns) else ""
        raise InboxDefect(f"missing required column(s) {missing}; found {columns}{hint}")


def check_catalog_header(
    path: str, size: int, storage_options: dict | None = None, peek_bytes: int = HEADER_PEEK_BYTES
) -> list[str]:
    """Read just enough of a catalog file to check its format and required columns.

    A CSV costs one ranged read of at most ``peek_bytes``; a parquet file three small ones (head,
    trailer, footer).

    Args:
        path: local path or fsspec URL; ``.parquet`` / ``.pq`` names are read as parquet, others as CSV.
        size: file size in bytes (from the listing).
        storage_options: fsspec options for ``path``.

    Returns:
        the header's column names.

    Raises:
        InboxDefect: the file's own defect (see :func:`csv_header_columns`, :func:`parquet_footer_length`,
            :func:`parquet_footer_columns`, :func:`check_required_columns`).
        FileNotFoundError: the file vanished.
        OSError, botocore / aiohttp errors: reading failed (transient, see :func:`classify_error`).
    """
    fs, p = fsspec.core.url_to_fs(path, **(storage_options or {}))
    if posixpath.basename(path).lower().endswith(PARQUET_SUFFIXES):
        if size < 12:
            raise InboxDefect(f"not a parquet file ({size} bytes)")
        head = fs.cat_file(p, start=0, end=4)
        tail = fs.cat_file(p, start=size - 8, end=size)
        n = parquet_footer_length(head, tail, size)
        columns = parquet_footer_columns(fs.cat_file(p, start=size - 8 - n, end=size - 8) + tail)
    else:
        head = fs.cat_file(p, start=0, end=min(size, peek_bytes))
        columns = csv_header_columns(head, complete=size <= peek_bytes)
    check_required_columns(columns)
    return columns


def check_batch_owner(batches_dir: str, batch: str, path: str, storage_options: dict | None = None) -> None:
    """Refuse to overwrite a stored batch that came from a file of another name.

    A batch stored from a file of the same name (a corrected re-delivery) may be replaced.

    Raises:
        InboxDefect: ``<batches_dir>/<batch>/`` already holds a catalog file named differently from
            ``path``'s basename.
        OSError, botocore / aiohttp errors: the storage could not be read (transient).
    """
    try:
        stored = posixpath.basename(find_batch_file(batches_dir, batch, storage_options))
    except FileNotFoundError:
        return
    name = posixpath.basename(path.rstrip("/"))
    if stored != name:
        raise InboxDefect(
            f"batch {batch!r} already holds {stored!r} from another file; rename {name!r} "
            f"(or delete the stored batch to replace it)"
        )


def fast_fail_options(url: str, options: dict | None) -> dict:
    """``options`` for ``url`` plus :data:`S3_FAST_FAIL_CONFIG` in ``config_kwargs`` for ``s3://`` URLs.

    Settings already in ``options["config_kwargs"]`` win. Other URLs get ``options`` unchanged (copied).
    """
    out = dict(options or {})
    if url.startswith(("s3://", "s3a://")):
        out["config_kwargs"] = {**S3_FAST_FAIL_CONFIG, **(out.get("config_kwargs") or {})}
    return out


def record_listing_failure(previous: dict | None, now: float, error: str) -> dict:
    """Cursor record of consecutive failed listings of the inbox.

    Args:
        previous: the cursor's ``listing`` record, or ``None`` after a successful listing.
        now: seconds since the epoch.
        error: what failed (:func:`describe`).

    Returns:
        ``{"failures": n, "since": first failure time (s since the epoch), "error": error}``.
    """
    failures = int(previous.get("failures", 0)) + 1 if previous else 1
    since = float(previous.get("since", now)) if previous else now
    return {"failures": failures, "since": since, "error": error[:MAX_MESSAGE_CHARS]}


# ---- the inbox listing and what one tick does with it ---------------------------------------------

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
        """Partition key for the file (its stem, see :func:`pricing_assets.lib.catalog.batches.batch_name_for`)."""
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
        if not (
            low.endswith(CATALOG_SUFFIXES)
            or any(low.endswith(s + h) for s in CATALOG_SUFFIXES for h in HALF_WRITTEN_SUFFIXES)
        ):
            continue
        path = name if (not proto or name.startswith(proto)) else proto + name
        etag = info.get("ETag") or info.get("etag")
        mtime = _mtime(info)
        out.append(
            InboxFile(
                path=path,
                size=int(info.get("size") or 0),
                mtime=mtime,
                version=str(etag).strip('"') if etag else repr(mtime),
            )
        )
    return sorted(out, key=lambda f: (f.mtime, f.path))


def skip_reason(
    f: InboxFile, previous_size: int | None, now: float, min_age_s: float, object_store: bool
) -> str | None:
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


def ready_files(
    files: list[InboxFile], cursor: dict, now: float, min_age_s: float, object_store: bool
) -> tuple[list[InboxFile], dict, dict]:
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


def claimed_batches(retry: dict) -> dict[str, str]:
    """``{batch: path}`` of the files waiting for a retry (the cursor's ``retry`` records, by path):
    they keep their batch name against newer files of the same stem (the first path in sorted order
    wins a name two of them give)."""
    out = {}
    for path in sorted(retry):
        try:
            out.setdefault(check_name(path), path)
        except InboxDefect:  # pragma: no cover - a retried file passed the name check
            continue
    return out


def listing_failed(cursor: dict, now: float, exc: BaseException, inbox: str) -> tuple[dict, str, str]:
    """What a tick whose listing of ``inbox`` failed transiently keeps and says: nothing is marked or
    forgotten, the ``listing`` failure count goes up (:func:`record_listing_failure`).

    Returns:
        ``(cursor, level, message)``: the previous cursor plus its ``listing`` record; the log level
        (``"error"`` from the :data:`ERROR_AFTER_ATTEMPTS`-th consecutive failure on, else
        ``"warning"``); the message, also the tick's skip reason.
    """
    listing = record_listing_failure(cursor.get("listing"), now, describe(exc))
    level = "error" if listing["failures"] >= ERROR_AFTER_ATTEMPTS else "warning"
    message = (
        f"cannot list the inbox {inbox} ({listing['failures']} tick(s) in a row): {listing['error']}; "
        "nothing marked, listing again next tick"
    )
    return {**cursor, "listing": listing}, level, message


@dataclass
class InboxTick:
    """What one tick of the inbox sensor has decided so far (built by :func:`start_tick`; no I/O).

    Attributes:
        inbox: the watched folder or prefix (named in the skip message).
        now: the tick's time, seconds since the epoch.
        ready: the files to try this tick, oldest first (:func:`ready_files`).
        cursor: the next cursor's ``done`` / ``sizes`` (``done`` updated as files are stored or refused).
        waiting: ``{path: reason}`` of the files not tried this tick.
        retry: the cursor's retry records (:func:`record_failure`) of the files still present.
        defects: the cursor's defect records (:func:`record_defect`) of the files still present.
        claimed: ``{batch: path}``: which file owns a batch name this tick.
        batches: batch names stored this tick, in order.
        refused: ``{path: reason}`` of the files refused this tick (defects).
        failed: ``{path: "attempt n: error"}`` of the transient failures of this tick.
        unreachable: the error of an endpoint found unreachable this tick (the remaining files wait).
    """

    inbox: str
    now: float
    ready: list[InboxFile]
    cursor: dict
    waiting: dict[str, str]
    retry: dict
    defects: dict
    claimed: dict[str, str]
    batches: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    unreachable: str | None = None

    def hold_back(self, f: InboxFile) -> bool:
        """True (and ``f`` recorded in :attr:`waiting`) when ``f`` is not to be tried this tick: its
        retry is not due (:func:`retry_wait_s`) or an endpoint was found unreachable earlier this tick."""
        wait_s = retry_wait_s(self.retry.get(f.path), f.signature, self.now)
        if wait_s > 0:
            rec = self.retry[f.path]
            self.waiting[f.path] = f"attempt {rec['attempts'] + 1} in {wait_s:.0f} s (last: {rec['error']})"
            return True
        if self.unreachable is not None:
            self.waiting[f.path] = f"not tried this tick, an endpoint is unreachable: {self.unreachable}"
            return True
        return False

    def batch_for(self, f: InboxFile) -> str:
        """The batch name of ``f`` (:func:`check_name`), checked against the other files of this tick.

        Raises:
            InboxDefect: unusable name, or another file (stored this tick or waiting for a retry)
                owns the same batch name.
        """
        batch = check_name(f.path)
        other = self.claimed.get(batch)
        if other is not None and other != f.path:
            raise InboxDefect(f"batch name {batch!r} is also derived from {other}; rename one of the files")
        return batch

    def stored(self, f: InboxFile, batch: str) -> dict:
        """Record that ``f`` was stored as ``batch`` (done in this version, its retry and defect records
        dropped).

        Returns:
            the run request to make: ``{"run_key": path|size|version, "partition_key": batch,
            "tags": {"pricing/inbox_file": path, "pricing/inbox_version": size|version}}``.
        """
        self.claimed[batch] = f.path
        self.cursor["done"][f.path] = f.signature
        self.retry.pop(f.path, None)
        self.defects.pop(f.path, None)
        self.batches.append(batch)
        return {
            "run_key": f.run_key,
            "partition_key": batch,
            "tags": {"pricing/inbox_file": f.path, "pricing/inbox_version": f.signature},
        }

    def failed_with(self, f: InboxFile, batch: str | None, exc: BaseException) -> tuple[str, str]:
        """Record a failure of ``f`` (``batch``: its name when known) by its kind (:func:`classify_error`):
        *vanished*: nothing recorded, looked at again next tick; *defect*: refused, done in this version,
        recorded in :attr:`defects`; *transient*: a retry record with backoff (:func:`record_failure`),
        the batch name kept, and :attr:`unreachable` set when ``exc`` says an endpoint is unreachable.

        Returns:
            ``(level, message)`` to log: ``"warning"`` (vanished, early transient failures) or
            ``"error"`` (a defect, a transient failure from the :data:`ERROR_AFTER_ATTEMPTS`-th attempt on).

        Raises:
            the exception ``exc`` itself when it is none of the three kinds (a programming error).
        """
        kind = classify_error(exc)
        if kind == "vanished":
            return (
                "warning",
                f"{f.path}: not found ({describe(exc)}); the file vanished or the storage location is missing, looking again next tick",
            )
        if kind == "defect":
            self.refused[f.path] = str(exc)
            self.defects = record_defect(self.defects, f.path, f.signature, str(exc), self.now)
            self.retry.pop(f.path, None)
            self.cursor["done"][f.path] = f.signature
            return "error", f"refused {f.path}, not retried until the file changes: {exc}"
        if kind != "transient":
            raise exc
        rec = record_failure(self.retry.get(f.path), f.signature, self.now, describe(exc))
        self.retry[f.path] = rec
        self.claimed[batch] = f.path
        self.failed[f.path] = f"attempt {rec['attempts']}: {rec['error']}"
        if is_unreachable(exc):
            self.unreachable = rec["error"]
        level = "error" if rec["attempts"] >= ERROR_AFTER_ATTEMPTS else "warning"
        return level, (
            f"cannot store {f.path} (attempt {rec['attempts']}, failing for {self.now - rec['first_failed_at']:.0f} s): "
            f"{rec['error']}; next try in {rec['next_try_at'] - self.now:.0f} s"
        )

    def next_cursor(self) -> dict:
        """The cursor after this tick: ``{"done", "sizes", "retry", "defects"}`` (a ``listing`` failure
        record is dropped: the listing worked)."""
        return {**self.cursor, "retry": self.retry, "defects": self.defects}

    def new_batches(self, registered: Callable[[str], bool]) -> list[str]:
        """The batches stored this tick (first occurrence order) that ``registered(batch)`` says are not
        partitions yet: the dynamic partitions to add."""
        return [b for b in dict.fromkeys(self.batches) if not registered(b)]

    def skip_message(self) -> str | None:
        """None when a file was stored this tick; else why nothing runs: no new file, plus up to three
        of the waiting and of the failing files, and every file refused this tick."""
        if self.batches:
            return None
        waiting, failed, refused = self.waiting, self.failed, self.refused
        return (
            f"no new catalog file in {self.inbox}"
            + (f"; waiting for {len(waiting)}: {dict(list(waiting.items())[:3])}" if waiting else "")
            + (f"; failed, will retry {len(failed)}: {dict(list(failed.items())[:3])}" if failed else "")
            + (
                f"; refused {len(refused)} (file defects, not retried until the file changes): {refused}"
                if refused
                else ""
            )
        )


def start_tick(
    inbox: str, files: list[InboxFile], cursor: dict, now: float, min_age_s: float, object_store: bool
) -> InboxTick:
    """The tick's starting state from the listing and the previous cursor: the ready files
    (:func:`ready_files`), the retry and defect records of the files still present, and the batch
    names the files waiting for a retry keep (:func:`claimed_batches`).

    Args:
        inbox: the watched folder or prefix.
        files: the listing (:func:`list_inbox`).
        cursor: the previous cursor (``{}`` at first).
        now: seconds since the epoch.
        min_age_s: quiet period in seconds.
        object_store: True for ``s3://`` inboxes (no size-stability check).
    """
    ready, new_cursor, waiting = ready_files(files, cursor, now, min_age_s, object_store)
    present = {f.path for f in files}
    retry = {p: r for p, r in cursor.get("retry", {}).items() if p in present}
    defects = {p: d for p, d in cursor.get("defects", {}).items() if p in present}
    return InboxTick(
        inbox=inbox,
        now=now,
        ready=ready,
        cursor=new_cursor,
        waiting=waiting,
        retry=retry,
        defects=defects,
        claimed=claimed_batches(retry),
    )
