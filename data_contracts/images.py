"""Contracts of the image stage: ``product_images`` and ``ocr_text``."""

import pandera.pandas as pa
from pandera.typing import Series

from data_contracts.constants import IMAGE_STATUSES, OCR_STATUSES


class ProductImages(pa.DataFrameModel):
    """One row per catalog row: where its photo is and what it is, or why there is none."""

    sample_id: Series[str] = pa.Field(unique=True)
    status: Series[str] = pa.Field(isin=list(IMAGE_STATUSES))
    reason: Series[str] = pa.Field(nullable=True)
    image_uri: Series[str] = pa.Field(nullable=True)
    sha256: Series[str] = pa.Field(nullable=True)
    width: Series[float] = pa.Field(nullable=True, gt=0)
    height: Series[float] = pa.Field(nullable=True, gt=0)
    n_bytes: Series[float] = pa.Field(nullable=True, gt=0)

    @pa.dataframe_check(name="ok_rows_have_a_stored_image")
    def ok_has_uri(cls, df) -> bool:
        """Every ``ok`` row names its stored file (``image_uri``) and its ``sha256``."""
        ok = df["status"] == "ok"
        return bool(df.loc[ok, "image_uri"].notna().all() and df.loc[ok, "sha256"].notna().all())

    class Config:
        coerce = True


class OcrText(pa.DataFrameModel):
    """One row per catalog row: text read from its photo (empty when there is no image)."""

    sample_id: Series[str] = pa.Field(unique=True)
    ocr_status: Series[str] = pa.Field(isin=list(OCR_STATUSES))
    ocr_text: Series[str] = pa.Field(nullable=True)
    n_lines: Series[int] = pa.Field(ge=0)
    mean_conf: Series[float] = pa.Field(nullable=True, ge=0, le=1)

    class Config:
        coerce = True
