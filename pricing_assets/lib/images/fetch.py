"""Product image fetcher: safe download, retries, per-host circuit breaker and a content-addressed store.

Pure, Dagster-free. One call, :func:`fetch_images`, turns ``(sample_id, image_link)`` rows into one
status row per input row (never a silent drop) and leaves each good image exactly once in a store
that may be a local folder or ``s3://bucket/prefix`` (any fsspec URL).

This module holds the fetcher (HTTP, retries, breaker, store). The checks it applies live in two
modules of their own: the SSRF/URL guard in :mod:`pricing_assets.lib.images.url_safety`
(:func:`~pricing_assets.lib.images.url_safety.check_url`) and the validation and decoding of image bytes
in :mod:`pricing_assets.lib.images.decode` (:func:`~pricing_assets.lib.images.decode.inspect_image_bytes`,
:func:`~pricing_assets.lib.images.decode.sniff_image_format`,
:func:`~pricing_assets.lib.images.decode.open_image_rgb`, :class:`~pricing_assets.lib.images.decode.ImageRejected`).
Those names are re-exported here so that existing imports keep working.

Store layout under ``FetchConfig.store_base``::

    <store_base>/<sha[:2]>/<sha>.<ext>        image bytes exactly as received, sha = sha256(bytes)
    <store_base>/links/<sha256(link)>.json    index record: link -> sha256, key and image metadata

The link record is written after the image, so a record always points at a stored image; a re-run
reads the record and makes no HTTP request (``source == "store"``). Failed links get no record and
are tried again on the next run (their causes are often transient).

Lookup order per distinct link: store index, then ``mirror_dir/<basename of link path>``, then
HTTP (unless ``offline``). Mirror hits and downloads are copied into the store.

Safety measures (each maps to a status, see :data:`STATUSES`):

- only ``http``/``https`` URLs; hosts resolving to loopback, private, link-local, multicast,
  reserved or unspecified addresses are refused (SSRF guard, :mod:`pricing_assets.lib.images.url_safety`)
  unless ``allow_private_hosts``; redirects are followed by hand (at most :data:`MAX_REDIRECTS`)
  and every hop is re-checked.
  Limitation: the address is checked before httpx resolves the name again, so a DNS-rebinding
  attacker could still race the check.
- per-request timeout: httpx's connect/read/write/pool timeout of ``timeout_s`` *and* a wall-clock
  deadline of ``timeout_s`` on the whole body (a server dribbling bytes cannot hold a worker).
- retries only on transient failures (timeouts, connection errors, HTTP 429, HTTP 5xx) with
  tenacity exponential backoff ``backoff_s * 2**k`` (capped at 30 s) plus up to ``backoff_s`` jitter.
- per-host circuit breaker (``host_failure_threshold``, default 3; 0 turns it off), so a dead image
  host costs seconds per batch instead of every link's full retry/backoff budget:

  * a *connection failure* is one failed attempt to reach a host: its name does not resolve
    (``socket.gaierror``), or the connection is refused, reset or times out before any HTTP answer
    (``httpx.ConnectError``, ``ConnectTimeout``, ``ReadError``/``WriteError`` raised while sending
    the request). An HTTP answer of any code (404, 503, …) proves the host is up and resets the
    host's count; read timeouts and errors while streaming a body are neither.
  * failures are counted per attempt (retries and redirect hops included), per host (lower-cased
    hostname, port ignored), and only *consecutive* ones: an HTTP answer resets the count (and
    closes the breaker if a request already in flight gets one after it opened). At
    ``host_failure_threshold`` consecutive failures the host's breaker opens: the link whose attempt
    opened it and every later link (or retry, or redirect hop) to that host get ``host_unreachable``
    at once, with a reason naming the host and the last error, without DNS lookup or HTTP request.
    Links already in flight may still fail on their own, so a dead host costs at most
    ``host_failure_threshold + concurrency - 1`` attempts.
  * a name that does not resolve is not retried with backoff (one attempt per link): below the
    threshold such a link ends as ``http_error`` ("name does not resolve, not retried"). With
    ``host_failure_threshold=0`` (no breaker) DNS failures are retried like other connection errors.
  * breakers live for one :func:`fetch_images` call; ``host_unreachable`` links get no link
    record, so the next call tries them again with every breaker closed.
- ``Content-Type`` must be ``image/*`` (``application/octet-stream``, ``binary/octet-stream`` and a
  missing header are let through to the magic-byte check, as object stores often send them); the
  magic bytes must be JPEG, PNG, GIF or WEBP and decide the stored format/extension (the
  magic-byte check, the pixel cap and the full decode below are
  :func:`~pricing_assets.lib.images.decode.inspect_image_bytes`).
- size cap ``max_bytes`` (``Content-Length`` checked first, then while streaming) and a pixel cap
  ``max_pixels`` read from the header before decoding (decompression-bomb guard; Pillow's own
  ``DecompressionBombError`` is also mapped to ``too_large``); the image is then fully decoded so
  truncated files are caught (``corrupt``).
- reported width/height are after the EXIF orientation transpose;
  :func:`~pricing_assets.lib.images.decode.open_image_rgb` applies it.
"""

import hashlib
import json
import os
import posixpath
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import fsspec
import httpx
import pandas as pd
import tenacity

from data_contracts.constants import (
    IMAGE_STATUSES as STATUSES,  # every status fetch_images writes; one source with ProductImages
)

# Re-exported so that imports from this module keep working; their home is image_bytes / url_safety.
from pricing_assets.lib.images.decode import ImageRejected, inspect_image_bytes, open_image_rgb, sniff_image_format
from pricing_assets.lib.images.url_safety import check_url
from pricing_assets.lib.runtime.atomic_write import write_bytes_atomic

__all__ = [
    "MAX_REDIRECTS",
    "OUTPUT_COLUMNS",
    "STATUSES",
    "USER_AGENT",
    "FetchConfig",
    "fetch_images",
    # re-exported from pricing_assets.lib.images.decode and pricing_assets.lib.images.url_safety
    "ImageRejected",
    "check_url",
    "inspect_image_bytes",
    "open_image_rgb",
    "sniff_image_format",
]

#: Output columns of :func:`fetch_images`, in order.
OUTPUT_COLUMNS = [
    "sample_id",
    "image_link",
    "status",
    "reason",
    "source",
    "sha256",
    "image_uri",
    "width",
    "height",
    "aspect_ratio",
    "n_bytes",
    "format",
    "mode",
    "has_alpha",
]

MAX_REDIRECTS = 5
USER_AGENT = "pricing-assets-image-fetch/0.1 (+https://github.com/; contact: maintainers)"

_PASS_THROUGH_CONTENT_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
_RETRY_STATUS = {429, 500, 502, 503, 504} | set(range(505, 600))


@dataclass(frozen=True)
class FetchConfig:
    """Settings of :func:`fetch_images`.

    Attributes:
        store_base: local folder or fsspec URL (``s3://bucket/prefix``) of the content-addressed store.
        mirror_dir: optional folder (local or fsspec URL) holding pre-fetched files named by the
            basename of the link's path (``…/images/I/41D++Loo75L.jpg`` -> ``41D++Loo75L.jpg``).
        timeout_s: per-request timeout in seconds (connect/read and whole-body deadline).
        max_bytes: largest accepted body in bytes.
        max_pixels: largest accepted ``width * height`` (decompression-bomb guard).
        concurrency: worker threads = maximum simultaneous HTTP connections.
        retries: extra attempts after the first on transient errors (so ``retries + 1`` in total).
        backoff_s: base of the exponential backoff in seconds.
        storage_options: fsspec options for the store and mirror (e.g. ``{"endpoint_url": …}``).
        allow_private_hosts: allow links to loopback/private/link-local hosts (tests, intranets).
        offline: never use the network; rows not found in store or mirror get ``missing``.
        host_failure_threshold: consecutive connection failures (DNS, refused, reset, connect
            timeout; counted per attempt) after which a host's circuit breaker opens and its
            remaining links get ``host_unreachable`` without a request; 0 disables the breaker
            (and DNS failures are then retried like other connection errors).
    """

    store_base: str
    mirror_dir: str | None = None
    timeout_s: float = 10.0
    max_bytes: int = 10_000_000
    max_pixels: int = 40_000_000
    concurrency: int = 8
    retries: int = 3
    backoff_s: float = 0.5
    storage_options: dict | None = field(default=None, hash=False)
    allow_private_hosts: bool = False
    offline: bool = False
    host_failure_threshold: int = 3

    def __post_init__(self) -> None:
        if not self.store_base:
            raise ValueError("FetchConfig.store_base must be a folder path or fsspec URL, got ''")
        for name in ("timeout_s", "max_bytes", "max_pixels", "concurrency"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FetchConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.retries < 0 or self.backoff_s < 0:
            raise ValueError("FetchConfig.retries and FetchConfig.backoff_s must be >= 0")
        if self.host_failure_threshold < 0:
            raise ValueError(
                "FetchConfig.host_failure_threshold must be >= 0 (0 disables the breaker), "
                f"got {self.host_failure_threshold!r}"
            )


# --------------------------------------------------------------------------------------------
# Outcome of one distinct link
# --------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    status: str
    reason: str = ""
    source: str = ""
    sha256: str | None = None
    key: str | None = None  # path of the image relative to store_base
    meta: dict[str, Any] = field(default_factory=dict)


class _TransientHTTP(Exception):
    """HTTP 429/5xx: worth another attempt."""

    def __init__(self, code: int):
        super().__init__(f"HTTP {code}")
        self.code = code


class _Deadline(Exception):
    """The whole-body deadline passed while streaming."""


#: Failures of one attempt that say nothing was reached at the host: name resolution, connection
#: refused/reset, connect timeout (raised by ``check_url`` or ``client.send``, before any answer).
_CONNECTION_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.WriteError)


def _is_name_resolution_failure(exc: BaseException) -> bool:
    """True if ``exc`` or an exception it was raised from is a ``socket.gaierror``."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, socket.gaierror):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _host_of(url: str) -> str | None:
    """Lower-cased hostname of ``url`` (urllib lower-cases it), or None if it has none/unparseable."""
    try:
        return urlsplit(url).hostname or None
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------------


class _Store:
    def __init__(self, base: str, storage_options: dict | None):
        self.fs, root = fsspec.core.url_to_fs(base, **(storage_options or {}))
        self.local = "file" in _as_tuple(self.fs.protocol) or "local" in _as_tuple(self.fs.protocol)
        if self.local:
            base = os.path.abspath(base.removeprefix("file://"))
            root = base
        self.base_uri = base.rstrip("/")
        self.root = root.rstrip("/")

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def uri(self, key: str) -> str:
        return f"{self.base_uri}/{key}"

    @staticmethod
    def link_key(link: str) -> str:
        return f"links/{hashlib.sha256(link.encode('utf-8')).hexdigest()}.json"

    def read_record(self, link: str) -> dict | None:
        path = self.path(self.link_key(link))
        try:
            with self.fs.open(path, "rb") as fh:
                rec = json.loads(fh.read())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return None  # unreadable record: fetch again and overwrite it
        if rec.get("image_link") != link or not rec.get("key") or not rec.get("sha256"):
            return None
        if not self.fs.exists(self.path(rec["key"])):
            return None
        return rec

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        if self.local:
            write_bytes_atomic(path, data)  # readers never see half a file
        else:
            self.fs.pipe_file(path, data)

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))


def _as_tuple(p: str | tuple) -> tuple:
    return (p,) if isinstance(p, str) else tuple(p)


# --------------------------------------------------------------------------------------------
# Fetcher
# --------------------------------------------------------------------------------------------


class _Fetcher:
    def __init__(self, config: FetchConfig):
        self.cfg = config
        self.store = _Store(config.store_base, config.storage_options)
        self.mirror_fs = None
        self.mirror_root = None
        if config.mirror_dir:
            self.mirror_fs, root = fsspec.core.url_to_fs(config.mirror_dir, **(config.storage_options or {}))
            self.mirror_root = root.rstrip("/")
        self._lock = threading.Lock()
        self.stats = {
            "http_requests": 0,
            "downloaded": 0,
            "from_mirror": 0,
            "from_store": 0,
            "connection_failures": 0,
        }
        self.client: httpx.Client | None = None
        # circuit breaker state, guarded by self._lock: host -> consecutive connection failures,
        # host -> last failure in words, hosts whose breaker opened during this call
        self._host_failures: dict[str, int] = {}
        self._host_last_error: dict[str, str] = {}
        self.hosts_unreachable: set[str] = set()

    # ---- counters -----------------------------------------------------------------------
    def _bump(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _on_request(self, request: httpx.Request) -> None:
        self._bump("http_requests")

    # ---- per-host circuit breaker ---------------------------------------------------------------
    def _unreachable(self, host: str, n: int, last: str, requested: bool) -> ImageRejected:
        tail = "" if requested else "; link not requested"
        return ImageRejected(
            "host_unreachable",
            f"host {host!r} unreachable: {n} consecutive connection failures in this run "
            f"(host_failure_threshold {self.cfg.host_failure_threshold}), last: {last}{tail}",
        )

    def _breaker_check(self, host: str | None) -> None:
        """Raise ``ImageRejected("host_unreachable")`` if ``host``'s breaker is open."""
        threshold = self.cfg.host_failure_threshold
        if host is None or threshold == 0:
            return
        with self._lock:
            n = self._host_failures.get(host, 0)
            last = self._host_last_error.get(host, "")
        if n >= threshold:
            raise self._unreachable(host, n, last, requested=False)

    def _host_answered(self, host: str | None) -> None:
        """An HTTP answer came from ``host``: its consecutive-failure count starts again at 0."""
        if host is None or self.cfg.host_failure_threshold == 0:
            return
        with self._lock:
            self._host_failures.pop(host, None)

    def _host_failed(self, host: str | None, exc: BaseException) -> None:
        """Count one connection failure to ``host``; raise the link's final verdict if there is one.

        Raises:
            ImageRejected: ``host_unreachable`` if the host's breaker is (now) open; ``http_error``
                if the name does not resolve (no retry) and the breaker is still closed.
        Returns normally (caller re-raises ``exc`` for tenacity) otherwise.
        """
        self._bump("connection_failures")
        threshold = self.cfg.host_failure_threshold
        if host is None or threshold == 0:
            return
        last = f"{type(exc).__name__}: {exc}"
        with self._lock:
            n = self._host_failures.get(host, 0) + 1
            self._host_failures[host] = n
            self._host_last_error[host] = last
            if n >= threshold:
                self.hosts_unreachable.add(host)
        if n >= threshold:
            raise self._unreachable(host, n, last, requested=True) from exc
        if _is_name_resolution_failure(exc):
            raise ImageRejected("http_error", f"connection error (name does not resolve, not retried): {last}") from exc

    # ---- one link --------------------------------------------------------------------------
    def fetch(self, link: str) -> _Outcome:
        rec = self.store.read_record(link)
        if rec is not None:
            self._bump("from_store")
            return _Outcome("ok", "", "store", rec["sha256"], rec["key"], rec.get("meta", {}))

        mirrored = self._read_mirror(link)
        if mirrored is not None:
            name, data = mirrored
            out = self._accept(link, data, "mirror")
            if out.status == "ok":
                self._bump("from_mirror")
            else:
                out.reason = f"mirror file {name}: {out.reason}"
            return out

        if self.cfg.offline:
            return _Outcome("missing", "offline: not in store or mirror")

        try:
            data = self._download(link)
        except ImageRejected as exc:
            return _Outcome(exc.status, exc.reason)
        out = self._accept(link, data, "download")
        if out.status == "ok":
            self._bump("downloaded")
        return out

    def _accept(self, link: str, data: bytes, source: str) -> _Outcome:
        try:
            meta = inspect_image_bytes(data, self.cfg.max_bytes, self.cfg.max_pixels)
        except ImageRejected as exc:
            return _Outcome(exc.status, exc.reason, source)
        sha = meta.pop("sha256")
        key = f"{sha[:2]}/{sha}.{meta.pop('ext')}"
        if not self.store.exists(key):
            self.store.put(key, data)
        record = {"image_link": link, "sha256": sha, "key": key, "first_source": source, "meta": meta}
        self.store.put(self.store.link_key(link), json.dumps(record, sort_keys=True).encode("utf-8"))
        return _Outcome("ok", "", source, sha, key, meta)

    def _read_mirror(self, link: str) -> tuple[str, bytes] | None:
        if self.mirror_fs is None:
            return None
        try:
            raw = posixpath.basename(urlsplit(link).path)
        except ValueError:
            return None
        for name in dict.fromkeys([raw, unquote(raw)]):
            if not name or name in (".", ".."):
                continue
            path = f"{self.mirror_root}/{name}"
            try:
                with self.mirror_fs.open(path, "rb") as fh:
                    return name, fh.read(self.cfg.max_bytes + 1)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
        return None

    # ---- HTTP -----------------------------------------------------------------------------
    def _download(self, link: str) -> bytes:
        cfg = self.cfg
        attempts = cfg.retries + 1
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=tenacity.wait_exponential(multiplier=cfg.backoff_s, max=30) + tenacity.wait_random(0, cfg.backoff_s),
            retry=tenacity.retry_if_exception_type(
                (_TransientHTTP, _Deadline, httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
            ),
            reraise=True,
        )
        try:
            return retrying(self._attempt, link)
        except ImageRejected:
            raise
        except (httpx.TimeoutException, _Deadline) as exc:
            raise ImageRejected(
                "timeout", f"no complete response within {cfg.timeout_s}s ({attempts} attempts): {type(exc).__name__}"
            ) from exc
        except _TransientHTTP as exc:
            raise ImageRejected("http_error", f"HTTP {exc.code} after {attempts} attempts") from exc
        except httpx.HTTPError as exc:
            raise ImageRejected(
                "http_error", f"connection error after {attempts} attempts: {type(exc).__name__}: {exc}"
            ) from exc

    def _attempt(self, link: str) -> bytes:
        cfg = self.cfg
        assert self.client is not None
        url = link
        deadline = time.monotonic() + cfg.timeout_s
        for _hop in range(MAX_REDIRECTS + 1):
            host = _host_of(url)
            self._breaker_check(host)
            try:
                check_url(url, cfg.allow_private_hosts)
                request = self.client.build_request("GET", url)
                response = self.client.send(request, stream=True)
            except _CONNECTION_FAILURES as exc:
                self._host_failed(host, exc)  # raises the final verdict when there is one
                raise
            self._host_answered(host)
            try:
                code = response.status_code
                if code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise ImageRejected("http_error", f"HTTP {code} without Location header")
                    url = urljoin(url, location)
                    continue
                if code in (404, 410):
                    raise ImageRejected("missing", f"HTTP {code}")
                if code in _RETRY_STATUS:
                    raise _TransientHTTP(code)
                if not 200 <= code < 300:
                    raise ImageRejected("http_error", f"HTTP {code}")
                ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if not ctype.startswith("image/") and ctype not in _PASS_THROUGH_CONTENT_TYPES:
                    raise ImageRejected("not_image", f"content-type {ctype!r} is not image/*")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
                    raise ImageRejected("too_large", f"Content-Length {declared} > max_bytes {cfg.max_bytes}")
                buf = bytearray()
                for chunk in response.iter_bytes():
                    buf += chunk
                    if len(buf) > cfg.max_bytes:
                        raise ImageRejected("too_large", f"body exceeds max_bytes {cfg.max_bytes} (stopped reading)")
                    if time.monotonic() > deadline:
                        raise _Deadline(f"body not complete after {cfg.timeout_s}s")
                return bytes(buf)
            finally:
                response.close()
        raise ImageRejected("http_error", f"more than {MAX_REDIRECTS} redirects")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def fetch_images(
    rows: pd.DataFrame,
    config: FetchConfig,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Fetch, validate and store the image of every row; one status row per input row.

    Args:
        rows: DataFrame with columns ``sample_id`` and ``image_link`` (other columns ignored).
        config: see :class:`FetchConfig`.
        progress: optional ``progress(done, total)`` called after each *distinct* link finishes
            (``total`` = number of distinct non-empty links), from the calling thread.

    Returns:
        DataFrame, same length and order as ``rows`` (index reset), columns
        :data:`OUTPUT_COLUMNS`: ``sample_id`` (str), ``image_link`` (object: str or None),
        ``status`` (str, one of :data:`STATUSES`), ``reason`` (str, "" when ok),
        ``source`` ("store" | "mirror" | "download" | ""), ``sha256`` (hex str of the image bytes
        or None), ``image_uri`` (``<store_base>/<sha[:2]>/<sha>.<ext>`` or None unless ok;
        absolute path for a local store), ``width``/``height`` (Int64 pixels after EXIF
        orientation), ``aspect_ratio`` (float64 width/height, NaN unless ok), ``n_bytes``
        (Int64), ``format`` ("JPEG" | "PNG" | "GIF" | "WEBP" or None), ``mode`` (Pillow mode or
        None), ``has_alpha`` (boolean, <NA> unless ok).
        ``result.attrs["stats"]`` = ``{"http_requests", "downloaded", "from_mirror",
        "from_store", "connection_failures", "hosts_unreachable"}``: ints counted per distinct link
        (``http_requests`` counts every request sent, retries and redirect hops included;
        ``connection_failures`` every failed attempt to reach a host: DNS, refused, reset, connect
        timeout), except ``hosts_unreachable``, the sorted list of hostnames (str) whose circuit
        breaker opened during this call (their links have status ``host_unreachable``).

        Rows whose ``status`` is ``missing`` because of an empty link: "empty image_link".
        Duplicate links are fetched once and reported on every row.

    Raises:
        KeyError: if ``rows`` lacks ``sample_id`` or ``image_link``.
        OSError: if the store cannot be written (an infrastructure fault, not a row fault).
    """
    missing_cols = [c for c in ("sample_id", "image_link") if c not in rows.columns]
    if missing_cols:
        raise KeyError(f"fetch_images: rows lacks column(s) {missing_cols}; has {list(rows.columns)}")

    fetcher = _Fetcher(config)
    links: list[str | None] = []
    pre: dict[int, _Outcome] = {}
    raw_links = [None if v is None or (isinstance(v, float) and pd.isna(v)) else v for v in rows["image_link"].tolist()]
    for i, value in enumerate(raw_links):
        if value is None:
            links.append(None)
            pre[i] = _Outcome("missing", "empty image_link")
        elif not isinstance(value, str):
            links.append(None)
            pre[i] = _Outcome("invalid_url", f"image_link is {type(value).__name__}, not str: {value!r}")
        elif not value.strip():
            links.append(None)
            pre[i] = _Outcome("missing", "empty image_link")
        else:
            links.append(value.strip())

    distinct = list(dict.fromkeys(link for link in links if link is not None))
    outcomes: dict[str, _Outcome] = {}
    if distinct:
        if not config.offline:
            fetcher.client = httpx.Client(
                timeout=httpx.Timeout(config.timeout_s),
                limits=httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
                event_hooks={"request": [fetcher._on_request]},
                trust_env=False,
            )
        try:
            with ThreadPoolExecutor(
                max_workers=min(config.concurrency, len(distinct)), thread_name_prefix="img-fetch"
            ) as pool:
                futures = {pool.submit(fetcher.fetch, link): link for link in distinct}
                for done, fut in enumerate(as_completed(futures), start=1):
                    outcomes[futures[fut]] = fut.result()
                    if progress is not None:
                        progress(done, len(distinct))
        finally:
            if fetcher.client is not None:
                fetcher.client.close()

    records = []
    sample_ids = rows["sample_id"].tolist()
    for i, (sid, link) in enumerate(zip(sample_ids, links)):
        out = pre[i] if i in pre else outcomes[link]
        meta = out.meta if out.status == "ok" else {}
        records.append(
            {
                "sample_id": str(sid),
                "image_link": raw_links[i],
                "status": out.status,
                "reason": out.reason,
                "source": out.source,
                "sha256": out.sha256 if out.status == "ok" else None,
                "image_uri": fetcher.store.uri(out.key) if out.status == "ok" and out.key else None,
                "width": meta.get("width"),
                "height": meta.get("height"),
                "aspect_ratio": meta.get("aspect_ratio"),
                "n_bytes": meta.get("n_bytes"),
                "format": meta.get("format"),
                "mode": meta.get("mode"),
                "has_alpha": meta.get("has_alpha"),
            }
        )
    result = pd.DataFrame.from_records(records, columns=OUTPUT_COLUMNS)
    result = result.astype(
        {
            "sample_id": str,
            "width": "Int64",
            "height": "Int64",
            "n_bytes": "Int64",
            "aspect_ratio": "float64",
            "has_alpha": "boolean",
        }
    )
    result.attrs["stats"] = {**fetcher.stats, "hosts_unreachable": sorted(fetcher.hosts_unreachable)}
    return result
