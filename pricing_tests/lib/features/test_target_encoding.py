"""Target encoding (``lib.features.target_encoding``): smoothed means, out of fold, applied to new keys."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.features.target_encoding import apply_target_encoding, fit_target_encoding, oof_target_encode


def _toy():
    keys = pd.Series(["a", "a", "a", "b", "b", "c", "a", "b", "d", "a"])
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    folds = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    return keys, y, folds


def test_oof_encoding_matches_hand_computation():
    keys, y, folds = _toy()
    enc = oof_target_encode(keys, y, folds, smoothing=2.0)
    # row 0 (key a, fold 0): other folds' a-rows are y=2 (fold 1) and 3 (fold 2)
    other = folds != 0
    prior = y[other].mean()
    assert enc[0] == pytest.approx((2.0 + 3.0 + 2.0 * prior) / (2 + 2.0))
    assert enc.shape == (10,) and enc.dtype == np.float64


def test_oof_own_target_never_used():
    keys, y, folds = _toy()
    base = oof_target_encode(keys, y, folds)
    for i in range(len(y)):
        changed = y.copy()
        changed[i] = 1000.0
        enc = oof_target_encode(keys, changed, folds)
        assert enc[i] == pytest.approx(base[i])  # own value untouched
        # ...while rows of other folds that share the key do move (the test can fail)
        moved = (folds != folds[i]) & (keys == keys[i]).to_numpy()
        if moved.any():
            assert not np.allclose(enc[moved], base[moved])


def test_oof_key_only_in_own_fold_gets_prior():
    keys, y, folds = _toy()
    enc = oof_target_encode(keys, y, folds)
    for i, _key in [(5, "c"), (8, "d")]:  # c and d appear once, in fold 2
        assert enc[i] == pytest.approx(y[folds != folds[i]].mean())
    assert keys.tolist().count("c") == 1


def test_fit_apply_target_encoding():
    keys, y, _ = _toy()
    mapping = fit_target_encoding(keys, y, smoothing=0.0)
    assert mapping["a"] == pytest.approx(np.mean([1, 2, 3, 7, 10]))
    prior = float(np.mean(y))
    out = apply_target_encoding(mapping, prior, pd.Series(["a", "zzz", None]))
    assert out[0] == pytest.approx(mapping["a"])
    assert out[1] == pytest.approx(prior) and out[2] == pytest.approx(prior)
    smoothed = fit_target_encoding(keys, y, smoothing=10.0)
    assert abs(smoothed["c"] - prior) < abs(mapping["c"] - prior)  # rare key pulled to prior


@pytest.mark.parametrize(
    ("y", "folds", "match"),
    [
        (np.array([1.0, np.nan, 3.0]), np.array([0, 1, 0]), "non-finite"),
        (np.array([1.0, 2.0]), np.array([0, 1]), "len"),
        (np.array([1.0, 2.0, 3.0]), np.array([0, 0, 0]), ">= 2 folds"),
    ],
)
def test_oof_bad_input(y, folds, match):
    with pytest.raises(ValueError, match=match):
        oof_target_encode(pd.Series(["a", "b", "c"]), y, folds)
