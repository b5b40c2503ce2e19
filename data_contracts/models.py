"""Contract of the blend's weights (``blend_weights``)."""

import numpy as np
import pandera.pandas as pa
from pandera.typing import Series


class BlendWeights(pa.DataFrameModel):
    """One row per blended price model: its convex weight and its OOF SMAPE (percent)."""

    model: Series[str] = pa.Field(unique=True, str_length={"min_value": 1})
    weight: Series[float] = pa.Field(ge=0, le=1)
    oof_smape: Series[float] = pa.Field(ge=0, le=200)

    @pa.dataframe_check(name="weights_sum_to_one")
    def weights_sum_to_one(cls, df) -> bool:
        """The weights are convex: they sum to 1 (within 1e-6)."""
        return bool(len(df) > 0 and abs(float(np.sum(df["weight"])) - 1.0) < 1e-6)

    class Config:
        strict = True
        coerce = True
