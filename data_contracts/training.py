"""Contracts of the global (unpartitioned) assets: features, predictions."""

import numpy as np
import pandera.pandas as pa
from pandera.typing import Series


class Products(pa.DataFrameModel):
    """The training set: all batches combined, one row per labeled sample_id (latest batch wins),
    each with a price (USD) and its CV fold. Products without a price never enter it
    (``batch_predictions`` prices them)."""

    sample_id: Series[str] = pa.Field(unique=True)
    batch: Series[str]
    is_labeled: Series[bool] = pa.Field(isin=[True])
    price: Series[float] = pa.Field(gt=0)
    fold: Series[int] = pa.Field(ge=0)

    class Config:
        coerce = True


class ListingFeatures(pa.DataFrameModel):
    """Engineered brand / quantity / IPQ features, one row per product."""

    sample_id: Series[str] = pa.Field(unique=True)
    brand: Series[str]
    pack_count: Series[float] = pa.Field(ge=1, nullable=True)

    class Config:
        coerce = True


class KnnFeatures(pa.DataFrameModel):
    """Neighbour-price features (out-of-fold for labeled rows)."""

    sample_id: Series[str] = pa.Field(unique=True)

    @pa.dataframe_check(name="knn_columns_finite")
    def finite(cls, df) -> bool:
        """Every ``knn_*`` column (image kNN aside: NaN without a photo) exists and is finite."""
        cols = [c for c in df.columns if c.startswith("knn_") and not c.startswith("knn_image")]
        return bool(cols) and bool(np.isfinite(df[cols].to_numpy(dtype=float)).all())

    class Config:
        coerce = True


class FeatureMatrix(pa.DataFrameModel):
    """Model input: one row per labeled product, with its CV fold and price (USD)."""

    sample_id: Series[str] = pa.Field(unique=True)
    fold: Series[int] = pa.Field(ge=0)
    price: Series[float] = pa.Field(gt=0)

    class Config:
        coerce = True


class ModelPredictions(pa.DataFrameModel):
    """One model's (or the blend's) out-of-fold predictions, one row per labeled product with its
    fold and price. Prices in USD."""

    sample_id: Series[str] = pa.Field(unique=True)
    fold: Series[int] = pa.Field(ge=0)
    price: Series[float] = pa.Field(gt=0)
    pred_price: Series[float] = pa.Field(gt=0, le=1e6)

    @pa.check("pred_price", name="finite")
    def finite(cls, s: Series[float]) -> Series[bool]:
        """Per row: the price (USD) is finite (no NaN / inf)."""
        return np.isfinite(s)

    class Config:
        coerce = True


class BatchPredictions(pa.DataFrameModel):
    """One batch's products without a price, scored by the serving model (``batch_predictions``):
    each sample_id once, price finite and > 0 (USD), the model version that priced it."""

    sample_id: Series[str] = pa.Field(unique=True)
    price: Series[float] = pa.Field(gt=0, le=1e6)
    model_version: Series[str] = pa.Field(str_length={"min_value": 1})

    @pa.check("price", name="finite")
    def finite(cls, s: Series[float]) -> Series[bool]:
        """Per row: the price (USD) is finite (no NaN / inf)."""
        return np.isfinite(s)

    class Config:
        strict = False  # the per-model ``pred_*`` diagnostics follow
        coerce = True


class PricePredictions(pa.DataFrameModel):
    """Every unlabeled sample_id exactly once (its latest batch's row), price finite and > 0 (USD),
    with its batch and the model version that priced it; ``pricing predictions`` writes the
    competition format (``sample_id,price``) from it."""

    sample_id: Series[str] = pa.Field(unique=True)
    price: Series[float] = pa.Field(gt=0, le=1e6)
    price_low: Series[float] | None = pa.Field(gt=0, nullable=True)  # its interval, when the model has one
    price_high: Series[float] | None = pa.Field(gt=0, nullable=True)
    batch: Series[str]
    model_version: Series[str] = pa.Field(str_length={"min_value": 1})

    @pa.dataframe_check(name="interval_contains_the_price")
    def interval_contains_the_price(cls, df) -> bool:
        """Where an interval is given: ``price_low <= price <= price_high`` (USD)."""
        if "price_low" not in df or "price_high" not in df:
            return True
        given = df["price_low"].notna() & df["price_high"].notna()
        low_ok = df["price_low"] <= df["price"] * (1 + 1e-9)
        high_ok = df["price"] <= df["price_high"] * (1 + 1e-9)
        return bool((low_ok & high_ok)[given].all())

    @pa.check("price", name="finite")
    def finite(cls, s: Series[float]) -> Series[bool]:
        """Per row: the price (USD) is finite (no NaN / inf)."""
        return np.isfinite(s)

    class Config:
        strict = True
        coerce = True
