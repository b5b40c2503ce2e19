"""Read, validate and parse raw product catalogs (Amazon ML Challenge 2025 "Smart Product Pricing").

Pure, Dagster-free functions:

- :func:`read_catalog` reads one CSV or parquet file from a local path or any fsspec URL
  (``s3://...`` through s3fs) and splits it into good rows and a quarantine table.
- :func:`parse_catalog_content` parses one ``catalog_content`` string of the competition's format::

      Item Name: Chex Mix Muddy Buddies, Mint Chocolate, 4.5 Oz (Pack of 7)
      Bullet Point 1: Combination of crunchy texture ...
      Product Description: ...
      Value: 31.5
      Unit: Ounce

- :func:`parse_catalog` turns the good rows into the ``catalog_items`` table.
"""

import hashlib
import io
import math
import os
import re
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.catalog import CatalogQuarantine
from data_contracts.constants import MAX_PRICE_USD  # one source: the ingest check and the RawCatalog contract agree

RAW_COLUMNS: tuple[str, ...] = ("sample_id", "catalog_content", "image_link", "price")
"""Columns of a raw catalog file. ``price`` is optional (unlabeled files have none)."""

REQUIRED_COLUMNS: tuple[str, ...] = ("sample_id", "catalog_content", "image_link")

MAX_TEXT_CHARS = 20_000
"""Longest accepted ``catalog_content`` in characters. The competition's texts are at most ~8k
characters (7,216-row sample: max 7,4xx); 20k leaves room while stopping pasted pages or binary junk."""

#: Columns of a quarantine record, in order: the ``CatalogQuarantine`` contract's (one source).
QUARANTINE_COLUMNS: tuple[str, ...] = tuple(CatalogQuarantine.to_schema().columns)
ROW_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "catalog_content",
    "image_link",
    "price",
    "content_hash",
    "source",
    "row",
)
ITEM_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "item_name",
    "bullets",
    "n_bullets",
    "description",
    "ipq_value",
    "ipq_unit",
    "text_chars",
    "text_words",
    "has_description",
    "content_hash",
    "price",
)

_VALUE_CHARS = 200
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


class CatalogFormatError(ValueError):
    """A whole catalog file is unusable (unreadable, malformed CSV, missing columns, empty).

    The message always names the file, and the line when the parser reports one.
    """


def content_hash(text: str) -> str:
    """Return the sha256 hex digest (64 lowercase hex chars) of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _is_parquet(path: str) -> bool:
    return path.lower().rstrip("/").endswith(_PARQUET_SUFFIXES)


def _read_bytes(path: str, storage_options: dict | None) -> bytes:
    import fsspec

    try:
        with fsspec.open(path, mode="rb", compression="infer", **(storage_options or {})) as fh:
            return fh.read()
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError) as exc:  # gzip errors, permission, bad URL
        raise CatalogFormatError(f"{path}: cannot read file: {exc}") from exc


def _cell_to_str(value: Any) -> str | None:
    """Parquet cells to text; None for missing. Integral floats (16.0) become '16'."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _load_frame(path: str, storage_options: dict | None) -> tuple[pd.DataFrame, bool]:
    """Return (all-object frame of str/None cells, decoding_replaced)."""
    raw = _read_bytes(path, storage_options)
    if not raw.strip():
        raise CatalogFormatError(f"{path}: empty file (0 data bytes)")
    name = os.path.basename(path.rstrip("/"))
    if _is_parquet(path):
        try:
            frame = pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise CatalogFormatError(f"{path}: unreadable parquet file {name!r}: {exc}") from exc
        frame.columns = [str(c).strip() for c in frame.columns]
        out = pd.DataFrame({c: [_cell_to_str(v) for v in frame[c].tolist()] for c in frame.columns}, dtype=object)
        return out, False

    replaced = False
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("utf-8-sig", errors="replace")
        replaced = True
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError as exc:
        raise CatalogFormatError(f"{path}: empty file, no header row") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        # pandas messages carry the line: "Expected 4 fields in line 5, saw 6",
        # "EOF inside string starting at row 3".
        raise CatalogFormatError(f"{path}: malformed CSV: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.astype(object).where(frame.notna(), None)
    return frame, replaced


def _classify_price(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Parse price strings. Returns (float64 prices with NaN where bad, reason per row or None)."""
    stripped = values.map(lambda v: "" if v is None else str(v).strip())
    numeric = pd.to_numeric(stripped.where(stripped != "", None), errors="coerce").astype("float64")
    empty = stripped.eq("") | stripped.str.lower().isin(["nan", "na", "null", "none"])
    non_numeric = numeric.isna() & ~empty
    arr = numeric.to_numpy()
    with np.errstate(invalid="ignore"):
        zero = arr == 0
        negative = arr < 0
        absurd = arr > MAX_PRICE_USD  # includes +inf
    reasons = np.select(
        [empty.to_numpy(), non_numeric.to_numpy(), zero, negative, absurd],
        [
            "price missing in a labeled file",
            "price non-numeric",
            "price is zero",
            "price is negative",
            f"price absurd (> {MAX_PRICE_USD:g} USD)",
        ],
        default="",
    )
    reason_series = pd.Series(reasons, index=values.index).replace("", None)
    return arr, reason_series


def read_catalog(path: str, storage_options: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read one raw catalog file and split it into good rows and quarantined rows.

    Args:
        path: local path or fsspec URL (``s3://bucket/key.csv``, ``file://...``, ``memory://...``).
            ``*.parquet`` / ``*.pq`` is read as parquet, anything else as CSV (UTF-8; ``.gz`` /
            ``.bz2`` etc. are decompressed by fsspec's ``compression="infer"``).
        storage_options: passed to ``fsspec.open`` (e.g. ``{"endpoint_url": ..., "key": ...}``
            for s3fs; ``client_kwargs`` as s3fs documents).

    Returns:
        ``(rows, quarantine)``.

        ``rows``: one row per accepted data row, in file order, columns
        ``sample_id`` (str, stripped), ``catalog_content`` (str, as written),
        ``image_link`` (str or None when empty; bad schemes are kept for the images stage),
        ``price`` (float64 USD; NaN for every row when the file has no price column),
        ``content_hash`` (sha256 hex of ``catalog_content``), ``source`` (``path``),
        ``row`` (int64, 1-based data row number: the header is row 0).
        Columns beyond :data:`RAW_COLUMNS` are dropped and listed in
        ``rows.attrs["extra_columns"]`` (a warning, not an error).

        ``quarantine``: columns ``source, row, sample_id, field, reason, value`` (``value`` is the
        offending field's text truncated to 200 chars); exactly one record per rejected row, for
        its first problem in this order: non-UTF-8 bytes, missing sample_id, duplicate sample_id
        (first occurrence kept; reason "duplicate sample_id, first seen at row N"), empty
        catalog_content, catalog_content over :data:`MAX_TEXT_CHARS`, price (only when the file
        has a price column: missing / non-numeric / zero / negative / absurd > :data:`MAX_PRICE_USD`).

    Invariant: ``number of data rows in the file == len(rows) + quarantine["row"].nunique()``
    and ``len(quarantine) == quarantine["row"].nunique()``; no row is dropped silently.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CatalogFormatError: unreadable file, malformed CSV (message carries the parser's line),
            missing required columns (named), empty file or header without data rows.
    """
    frame, replaced = _load_frame(path, storage_options)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogFormatError(f"{path}: missing required column(s) {missing}; found {list(frame.columns)}")
    if len(frame) == 0:
        raise CatalogFormatError(f"{path}: empty file, header but no data rows")
    extra = [c for c in frame.columns if c not in RAW_COLUMNS]
    has_price = "price" in frame.columns

    n = len(frame)
    row_no = np.arange(1, n + 1, dtype=np.int64)
    text = {c: frame[c].map(lambda v: "" if v is None else str(v)) for c in RAW_COLUMNS if c in frame}
    sid = text["sample_id"].str.strip()
    content = text["catalog_content"]
    link = text["image_link"].str.strip()

    field = pd.Series([None] * n, dtype=object)
    reason = pd.Series([None] * n, dtype=object)
    value = pd.Series([None] * n, dtype=object)

    def flag(mask: pd.Series | np.ndarray, fld: str, why: Any, val: pd.Series) -> None:
        mask = pd.Series(np.asarray(mask, dtype=bool)) & reason.isna()
        if not mask.any():
            return
        field[mask] = fld
        reason[mask] = why[mask] if isinstance(why, pd.Series) else why
        value[mask] = val[mask].str.slice(0, _VALUE_CHARS)

    if replaced:
        for col in RAW_COLUMNS:
            if col in text:
                flag(text[col].str.contains("\ufffd", regex=False), col, "non-UTF-8 bytes", text[col])

    flag(sid.eq(""), "sample_id", "missing or empty sample_id", text["sample_id"])

    present = sid.ne("")
    first_row = pd.Series(row_no).groupby(sid.where(present, None)).transform("first")
    dup = present & sid.duplicated(keep="first")
    dup_reason = "duplicate sample_id, first seen at row " + first_row.astype("Int64").astype(str)
    flag(dup, "sample_id", dup_reason, sid)

    flag(content.str.strip().eq(""), "catalog_content", "empty or whitespace catalog_content", content)
    lengths = content.str.len()
    flag(
        lengths > MAX_TEXT_CHARS,
        "catalog_content",
        "catalog_content too long: " + lengths.astype(str) + f" chars > {MAX_TEXT_CHARS}",
        content,
    )

    if has_price:
        prices, price_reason = _classify_price(frame["price"])
        flag(price_reason.notna(), "price", price_reason, text["price"])
    else:
        prices = np.full(n, np.nan, dtype="float64")

    bad = reason.notna().to_numpy()
    good = ~bad
    rows = pd.DataFrame(
        {
            "sample_id": sid[good].astype(str).to_numpy(dtype=object),
            "catalog_content": content[good].to_numpy(dtype=object),
            "image_link": link[good].where(link[good] != "", None).to_numpy(dtype=object),
            "price": prices[good].astype("float64"),
            "content_hash": [content_hash(t) for t in content[good]],
            "source": path,
            "row": row_no[good],
        },
        columns=list(ROW_COLUMNS),
    )
    rows["row"] = rows["row"].astype("int64")
    rows.attrs["extra_columns"] = extra
    rows.attrs["has_price"] = has_price

    quarantine = pd.DataFrame(
        {
            "source": path,
            "row": row_no[bad],
            "sample_id": sid[bad].to_numpy(dtype=object),
            "field": field[bad].to_numpy(dtype=object),
            "reason": reason[bad].to_numpy(dtype=object),
            "value": value[bad].to_numpy(dtype=object),
        },
        columns=list(QUARANTINE_COLUMNS),
    )
    quarantine["row"] = quarantine["row"].astype("int64")
    return rows, quarantine


# --------------------------------------------------------------------------------------------
# parsing catalog_content
# --------------------------------------------------------------------------------------------

# "Item Name:", "Bullet Point 3:", "Bullet Point:", "Product Description 1:", "Value:", "Unit:",
# case-insensitive, tolerant of extra spaces ("item  name :").
_KEY_RE = re.compile(
    r"^\s*(item\s*name|bullet\s*points?|product\s*description|description|value|unit)"
    r"\s*(\d+)?\s*:\s?(.*)$",
    re.IGNORECASE,
)


def _key_kind(key: str) -> str:
    k = re.sub(r"\s+", "", key.lower())
    if k == "itemname":
        return "item_name"
    if k.startswith("bullet"):
        return "bullet"
    if k in ("productdescription", "description"):
        return "description"
    return k  # "value" / "unit"


def _to_float(text: str) -> float:
    try:
        out = float(text.strip().replace(",", ""))
    except ValueError:
        return float("nan")
    return out if math.isfinite(out) else float("nan")


def normalise_whitespace(text: str) -> str:
    """``text`` with every run of spaces/tabs inside a line collapsed to one space, lines stripped
    and blank lines dropped (newlines kept: they separate the catalog's ``Key:`` lines).

    Everything the models read is built from this form, so extra, doubled or trailing whitespace
    never changes a price (behavioural test: ``pricing_tests/model/test_behaviour.py``).

    Raises:
        TypeError: ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"catalog_content must be str, got {type(text).__name__}")
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def parse_catalog_content(text: str) -> dict:
    """Parse one ``catalog_content`` string of the competition's format (after
    :func:`normalise_whitespace`, so the parts hold single spaces only).

    Recognised line keys (case-insensitive, extra whitespace allowed): ``Item Name:``,
    ``Bullet Point N:`` / ``Bullet Point:``, ``Product Description[ N]:``, ``Value:``, ``Unit:``.
    A line without a key continues the previous section. Text with no key at all: ``item_name``
    is its first non-empty line and ``description`` the remaining lines.

    Returns:
        dict with ``item_name`` (str, stripped, "" when absent), ``bullet_points`` (list[str], in
        order, empties skipped), ``description`` (str; several description sections joined by
        "\\n"), ``ipq_value`` (float, NaN when absent or unparseable), ``ipq_unit`` (str, stripped,
        as written, e.g. "Fl Oz"; "" when absent).

    Raises:
        TypeError: ``text`` is not a str.
    """
    text = normalise_whitespace(text)
    item: list[str] = []
    bullets: list[list[str]] = []
    desc: list[list[str]] = []
    value = ""
    unit = ""
    current: list[str] | None = None
    unstructured: list[str] = []
    found_key = False
    for line in text.splitlines():
        m = _KEY_RE.match(line)
        if m:
            found_key = True
            kind = _key_kind(m.group(1))
            body = m.group(3).strip()
            if kind == "item_name":
                item.append(body)
                current = item
            elif kind == "bullet":
                bullets.append([body])
                current = bullets[-1]
            elif kind == "description":
                desc.append([body])
                current = desc[-1]
            elif kind == "value":
                value = body
                current = None
            else:
                unit = body
                current = None
        elif line.strip():
            if current is not None:
                current.append(line.strip())
            elif not found_key:
                unstructured.append(line.strip())
    if not found_key:
        return {
            "item_name": unstructured[0] if unstructured else "",
            "bullet_points": [],
            "description": "\n".join(unstructured[1:]),
            "ipq_value": float("nan"),
            "ipq_unit": "",
        }
    bullet_texts = [" ".join(b).strip() for b in bullets]
    return {
        "item_name": " ".join(item).strip(),
        "bullet_points": [b for b in bullet_texts if b],
        "description": "\n".join(t for t in (" ".join(d).strip() for d in desc) if t),
        "ipq_value": _to_float(value) if value else float("nan"),
        "ipq_unit": unit,
    }


def parse_catalog(rows: pd.DataFrame) -> pd.DataFrame:
    """Build the ``catalog_items`` table from ``read_catalog``'s good rows.

    Args:
        rows: DataFrame with at least ``sample_id``, ``catalog_content``; ``content_hash`` and
            ``price`` are carried through when present (computed / NaN otherwise).

    Returns:
        One row per input row, same order, columns :data:`ITEM_COLUMNS`:
        ``sample_id`` (str), ``item_name`` (str), ``bullets`` (str, bullet points joined by "\\n"),
        ``n_bullets`` (int64), ``description`` (str), ``ipq_value`` (float64, NaN if absent),
        ``ipq_unit`` (str as written), ``text_chars`` (int64, characters of the whitespace-normalised
        product text: name, bullets, description; the Value/Unit lines excluded; 0 when none),
        ``text_words`` (int64, whitespace-separated tokens of that text),
        ``has_description`` (bool), ``content_hash`` (str), ``price`` (float64 USD or NaN).

    Raises:
        KeyError: a required input column is missing (named in the message).
    """
    for col in ("sample_id", "catalog_content"):
        if col not in rows.columns:
            raise KeyError(f"parse_catalog: input lacks column {col!r}")
    texts = rows["catalog_content"].tolist()
    parsed = [parse_catalog_content(t) for t in texts]
    hashes = rows["content_hash"].tolist() if "content_hash" in rows.columns else [content_hash(t) for t in texts]
    price = rows["price"].astype("float64").to_numpy() if "price" in rows.columns else np.full(len(rows), np.nan)
    desc = [p["description"] for p in parsed]
    # Size of the product text (name, bullets, description) after whitespace normalisation: not of
    # the raw string, so neither spacing nor the Value/Unit line (the pack quantity) moves it.
    body = ["\n".join(t for t in (p["item_name"], *p["bullet_points"], p["description"]) if t) for p in parsed]
    out = pd.DataFrame(
        {
            "sample_id": rows["sample_id"].astype(str).to_numpy(dtype=object),
            "item_name": [p["item_name"] for p in parsed],
            "bullets": ["\n".join(p["bullet_points"]) for p in parsed],
            "n_bullets": np.array([len(p["bullet_points"]) for p in parsed], dtype=np.int64),
            "description": desc,
            "ipq_value": np.array([p["ipq_value"] for p in parsed], dtype=np.float64),
            "ipq_unit": [p["ipq_unit"] for p in parsed],
            "text_chars": np.array([len(t) for t in body], dtype=np.int64),
            "text_words": np.array([len(t.split()) for t in body], dtype=np.int64),
            "has_description": np.array([bool(d) for d in desc], dtype=bool),
            "content_hash": hashes,
            "price": price,
        },
        columns=list(ITEM_COLUMNS),
    )
    return out
