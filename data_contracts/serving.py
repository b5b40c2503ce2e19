"""Contracts of the served-price log (``served_prices``), the realized accuracy (``served_accuracy``) and
the reasons behind each price (``price_explanations``, ``price_drivers``)."""

import numpy as np
import pandera.pandas as pa
from pandera.typing import Series


class ServedPrices(pa.DataFrameModel):
    """Every price served for one batch by one model version: each sample_id once, price finite and
    > 0 (USD), the model version and the UTC time it was served."""

    sample_id: Series[str] = pa.Field(unique=True)
    batch: Series[str] = pa.Field(str_length={"min_value": 1})
    price: Series[float] = pa.Field(gt=0, le=1e6)
    model_version: Series[str] = pa.Field(str_length={"min_value": 1})
    served_at: Series[str] = pa.Field(str_length={"min_value": 1})

    @pa.check("price", name="finite")
    def finite(cls, s: Series[float]) -> Series[bool]:
        """Per row: the price (USD) is finite (no NaN / inf)."""
        return np.isfinite(s)

    class Config:
        strict = False  # price_low / price_high follow when the prices carry an interval
        coerce = True


class ServedAccuracy(pa.DataFrameModel):
    """Served prices scored against the true prices that arrived: one row per (model version, batch)."""

    model_version: Series[str] = pa.Field(str_length={"min_value": 1})
    batch: Series[str] = pa.Field(str_length={"min_value": 1})
    rows: Series[int] = pa.Field(ge=1)
    smape: Series[float] = pa.Field(ge=0, le=200)
    median_ape: Series[float] = pa.Field(ge=0)
    interval_coverage: Series[float] = pa.Field(ge=0, le=1, nullable=True)

    @pa.dataframe_check(name="one_row_per_model_version_and_batch")
    def unique_pairs(cls, df) -> bool:
        """No (model version, batch) pair twice."""
        return not df.duplicated(["model_version", "batch"]).any()

    class Config:
        strict = True
        coerce = True


class PriceExplanations(pa.DataFrameModel):
    """The labeled comparables of each priced product: rank 1..k per product, each comparable a labeled
    product with its price (USD > 0), a similarity in [0, 1] and the view that found it."""

    sample_id: Series[str]
    rank: Series[int] = pa.Field(ge=1)
    comparable_id: Series[str]
    comparable_name: Series[str]
    comparable_price: Series[float] = pa.Field(gt=0)
    similarity: Series[float] = pa.Field(ge=0, le=1)
    view: Series[str] = pa.Field(str_length={"min_value": 1})

    @pa.dataframe_check(name="one_row_per_product_and_rank")
    def unique_ranks(cls, df) -> bool:
        """No (product, rank) pair twice, no comparable twice for one product."""
        return (
            not df.duplicated(["sample_id", "rank"]).any() and not df.duplicated(["sample_id", "comparable_id"]).any()
        )

    class Config:
        strict = True
        coerce = True


class PriceDrivers(pa.DataFrameModel):
    """The features that move each priced product's price most: rank 1..k per product, each with its
    readable name and value, its log-price contribution and multiplicative effect (``exp`` of it, > 0),
    the model's base price (USD > 0), the model explained and the serving-model version."""

    sample_id: Series[str]
    rank: Series[int] = pa.Field(ge=1)
    feature: Series[str] = pa.Field(str_length={"min_value": 1})
    value: Series[str]
    contribution: Series[float]
    effect: Series[float] = pa.Field(gt=0)
    base_price: Series[float] = pa.Field(gt=0)
    model_version: Series[str] = pa.Field(str_length={"min_value": 1})
    model: Series[str] = pa.Field(str_length={"min_value": 1})

    @pa.check("contribution", "effect", "base_price", name="finite")
    def finite(cls, s: Series[float]) -> Series[bool]:
        """Per row: no NaN / inf."""
        return np.isfinite(s)

    @pa.dataframe_check(name="one_row_per_product_and_rank")
    def unique_ranks(cls, df) -> bool:
        """No (product, rank) pair twice, no driver twice for one product."""
        return not df.duplicated(["sample_id", "rank"]).any() and not df.duplicated(["sample_id", "feature"]).any()

    class Config:
        strict = True
        coerce = True
