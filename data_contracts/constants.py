"""Facts the contracts and the pipeline share, defined once here: the code location imports them from
this module (its ingest check, its image fetcher), and ``data_contracts`` imports nothing from the
code location.
"""

MAX_PRICE_USD = 10_000.0
"""Largest accepted price in USD (the ingest quarantines a row above it, ``RawCatalog`` refuses it).
The competition's training prices run from ~0.13 to ~2,800 USD (sample max 2,796), so anything above
10,000 is almost surely a unit/parsing error (cents, a concatenated number) rather than a real
grocery-catalog price, while still allowing rare luxury items."""

#: Every value ``lib.images.fetch.fetch_images`` writes to the ``status`` column of
#: ``product_images`` (``ProductImages`` accepts these only).
IMAGE_STATUSES: tuple[str, ...] = (
    "ok",
    "missing",
    "http_error",
    "timeout",
    "not_image",
    "too_large",
    "corrupt",
    "invalid_url",
    "host_unreachable",
)

#: Every value of ``ocr_text.ocr_status``: ``lib.images.ocr.run_ocr`` writes ``ok`` /
#: ``no_image`` / ``error``, the ``ocr_text`` asset ``disabled`` when OCR is switched off.
OCR_STATUSES: tuple[str, ...] = ("ok", "no_image", "error", "disabled")
