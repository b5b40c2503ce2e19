"""lib.models.metrics: the competition's SMAPE against values computed by hand."""

import math

import numpy as np
import pytest

from pricing_assets.lib.models.metrics import smape, smape_by_bin


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        ([10.0], [10.0], 0.0),  # exact
        ([100.0], [50.0], 100 * 50 / 75),  # |50 - 100| / ((100 + 50) / 2) = 2/3 -> 66.67
        ([50.0], [100.0], 100 * 50 / 75),  # symmetric in over- and under-prediction
        ([10.0], [0.0], 200.0),  # the worst: predicting 0 for a positive price
        ([0.0], [0.0], 0.0),  # both zero: counted as no error
        ([10.0, 20.0], [12.0, 15.0], 100 * (2 / 11 + 5 / 17.5) / 2),  # mean over rows: 18.18 % and 28.57 %
        ([4.0, 4.0, 4.0, 4.0], [4.0, 4.0, 4.0, 12.0], 100 * (8 / 8) / 4),  # one row off by 3x: 100 % / 4 rows
    ],
)
def test_smape_hand_computed(y_true, y_pred, expected):
    assert smape(np.array(y_true), np.array(y_pred)) == pytest.approx(expected, rel=1e-12)


def test_smape_worked_example_in_percent():
    # rows: (true 8, pred 10): 2/9; (true 25, pred 20): 5/22.5; (true 3.5, pred 3.5): 0
    got = smape([8.0, 25.0, 3.5], [10.0, 20.0, 3.5])
    assert math.isclose(got, 100 * (2 / 9 + 5 / 22.5 + 0) / 3, rel_tol=1e-12)
    assert round(got, 3) == 14.815


@pytest.mark.parametrize(
    ("y_true", "y_pred"), [([1.0, 2.0], [1.0]), ([], []), ([1.0, np.nan], [1.0, 2.0]), ([1.0], [np.inf])]
)
def test_smape_refuses_bad_input(y_true, y_pred):
    with pytest.raises(ValueError, match="smape"):
        smape(np.array(y_true), np.array(y_pred))


def test_smape_by_bin_splits_on_the_true_price():
    bins = smape_by_bin([2.0, 4.0, 7.0, 150.0], [2.0, 2.0, 7.0, 50.0], edges=(0, 5, 10, np.inf))
    assert bins == [
        {"bin": "[0, 5)", "rows": 2, "smape": pytest.approx(100 * (0 + 2 / 3) / 2)},  # (4 vs 2): 2/3
        {"bin": "[5, 10)", "rows": 1, "smape": 0.0},
        {"bin": "[10, inf)", "rows": 1, "smape": pytest.approx(100.0)},  # (150 vs 50): 100/100
    ]
