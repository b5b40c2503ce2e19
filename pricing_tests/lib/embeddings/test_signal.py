"""The embedding price-signal probe: strong signal scores well, noise doesn't, bad input errors."""

import numpy as np
import pytest

from pricing_assets.lib.embeddings.signal import embedding_price_signal


def _data(n=400, d=16, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(2.7, 0.9, n)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, y, np.arange(n) % 5


def test_a_dimension_that_encodes_price_is_found():
    x, y, folds = _data()
    x[:, 7] = (y + np.random.default_rng(1).normal(0, 0.1, len(y))).astype(np.float32)
    sig = embedding_price_signal(x, y, folds)
    assert sig["top_dim"] == 7 and sig["top_abs_corr"] > 0.95
    assert sig["oof_r2"] > 0.9 and sig["oof_smape"] < 15
    assert (sig["rows"], sig["dim"]) == (400, 16)


def test_noise_carries_no_signal():
    x, y, folds = _data()
    sig = embedding_price_signal(x, y, folds)
    assert sig["oof_r2"] < 0.05 and sig["top_abs_corr"] < 0.25
    strong = embedding_price_signal(np.column_stack([x, y]).astype(np.float32), y, folds)
    assert sig["oof_smape"] > strong["oof_smape"] + 20


@pytest.mark.parametrize("bad", ["length", "folds"])
def test_bad_input_raises(bad):
    x, y, folds = _data()
    with pytest.raises(ValueError):
        if bad == "length":
            embedding_price_signal(x[:-1], y, folds)
        else:
            embedding_price_signal(x, y, np.zeros(len(y), int))
