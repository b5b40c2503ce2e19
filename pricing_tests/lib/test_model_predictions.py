"""The ModelPredictions frame: OOF for labeled rows, predictions for unlabeled rows, prices clipped."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.model_predictions import predictions_frame


def test_predictions_frame():
    fm = pd.DataFrame({"sample_id": ["a", "b", "c"], "fold": [0, -1, 1], "price": [5.0, np.nan, 7.0], "x": [1.0, 2.0, 3.0], "category": ["f", "g", "f"]})
    p = predictions_frame(fm, np.log1p([4.0, 8.0]), np.array([-20.0]))
    assert p["pred_price"].tolist() == pytest.approx([4.0, 0.01, 8.0])
    assert p["fold"].tolist() == [0, -1, 1]
