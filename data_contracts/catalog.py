"""Contracts of the ingest stage: ``raw_catalog``, ``catalog_quarantine``, ``catalog_items``."""

from typing import Optional

import pandera.pandas as pa
from pandera.typing import Series

from data_contracts.constants import MAX_PRICE_USD  # one source: the ingest check and the contract agree


class RawCatalog(pa.DataFrameModel):
    """One row per valid catalog row of a batch file (bad rows go to the quarantine)."""

    sample_id: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    catalog_content: Series[str] = pa.Field(str_length={"min_value": 1})
    image_link: Series[str] = pa.Field(nullable=True)
    price: Series[float] = pa.Field(nullable=True, gt=0, le=MAX_PRICE_USD)
    content_hash: Series[str] = pa.Field(str_length={"min_value": 64, "max_value": 64})
    source: Series[str]
    row: Series[int] = pa.Field(ge=1)

    @pa.check("catalog_content", name="not_blank")
    def not_blank(cls, s: Series[str]) -> Series[bool]:
        """Per row: ``catalog_content`` has a non-whitespace character."""
        return s.str.strip().str.len() > 0

    class Config:
        strict = "filter"
        coerce = True


class CatalogQuarantine(pa.DataFrameModel):
    """Rows refused at ingest, each with the field and the reason."""

    source: Series[str]
    row: Series[int] = pa.Field(ge=0)
    sample_id: Series[str] = pa.Field(nullable=True)
    field: Series[str]
    reason: Series[str] = pa.Field(str_length={"min_value": 1})
    value: Series[str] = pa.Field(nullable=True)

    class Config:
        coerce = True


class CatalogItems(pa.DataFrameModel):
    """Fields parsed from ``catalog_content`` (one row per raw row)."""

    sample_id: Series[str] = pa.Field(unique=True)
    item_name: Series[str]
    bullets: Series[str]
    n_bullets: Series[int] = pa.Field(ge=0)
    description: Series[str]
    ipq_value: Series[float] = pa.Field(nullable=True, ge=0)
    ipq_unit: Series[str] = pa.Field(nullable=True)
    text_chars: Series[int] = pa.Field(ge=0)
    content_hash: Series[str]
    price: Optional[Series[float]] = pa.Field(nullable=True, gt=0)

    class Config:
        coerce = True
