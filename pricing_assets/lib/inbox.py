"""What the catalog inbox sensor does with a file it could not store: classification and retry bookkeeping.

Dagster-free. Two kinds of failure, told apart by :func:`classify_error`:

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
with the readers the ingest uses (``pandas.read_csv`` with :func:`pricing_assets.lib.catalog.read_catalog`'s
options, pyarrow's parquet metadata reader). Only whole-file problems are defects here; row-level
problems (non-UTF-8 bytes in a data row, bad prices, duplicates) stay with the ingest, which
quarantines the rows, and a file with no data row fails its run.
"""

import codecs
import io
import posixpath

import fsspec
import pandas as pd

from pricing_assets.lib.batches import CATALOG_SUFFIXES, batch_name_for, find_batch_file
from pricing_assets.lib.catalog import REQUIRED_COLUMNS

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
S3_FAST_FAIL_CONFIG: dict = {"connect_timeout": 3, "read_timeout": 5, "retries": {"total_max_attempts": 1, "mode": "standard"}}

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
        classes += [be.ClientError, be.ConnectionError, be.HTTPClientError, be.NoCredentialsError, be.PartialCredentialsError, be.CredentialRetrievalError]
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


def record_defect(defects: dict, path: str, signature: str, reason: str, now: float, cap: int = MAX_DEFECT_RECORDS) -> dict:
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
        the batch name (:func:`pricing_assets.lib.batches.batch_name_for`).

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
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=True, nrows=0)

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


def check_catalog_header(path: str, size: int, storage_options: dict | None = None, peek_bytes: int = HEADER_PEEK_BYTES) -> list[str]:
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
