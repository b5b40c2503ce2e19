"""Fusion MLP: shapes, image masking, tabular preprocessing, determinism, learning signal."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.models.metrics import smape
from pricing_assets.lib.models.mlp import (
    MLPConfig,
    MLPInputs,
    build_fusion_mlp,
    predict_mlp,
    tabular_matrix,
    train_mlp_cv,
)

FAST = MLPConfig(
    text_hidden=32,
    image_hidden=8,
    tab_hidden=16,
    head_hidden=32,
    max_epochs=20,
    patience=5,
    batch_size=32,
    lr=5e-3,
    num_threads=1,
)


def _synthetic(n=320, seed=0):
    """Price driven by one text direction, one tabular column and (when present) the image."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, 24)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    image = rng.normal(size=(n, 12)).astype(np.float32)
    has = rng.random(n) < 0.5
    image[~has] = 0.0
    tab = rng.normal(size=(n, 5)).astype(np.float32)
    y = 3.0 + 0.8 * np.tanh(5 * text[:, 0]) + 0.5 * tab[:, 1] + np.where(has, 0.3 * image[:, 0], 0.0)
    folds = np.arange(n) % 4
    return MLPInputs(text, image, has, tab, [f"t{i}" for i in range(5)]), y.astype(np.float64), folds


def test_forward_shape_and_image_mask():
    import torch

    net = build_fusion_mlp(24, 12, 5, FAST).eval()
    text, tab = torch.randn(7, 24), torch.randn(7, 5)
    has = torch.tensor([True, False, True, False, False, True, True])
    img_a, img_b = torch.randn(7, 12), torch.randn(7, 12) * 100
    with torch.no_grad():
        out_a = net(text, img_a, has, tab)
        out_b = net(text, img_b, has, tab)
    assert out_a.shape == (7,) and out_a.dtype == torch.float32
    # rows without an image ignore whatever the image tensor holds; rows with one do not
    assert torch.equal(out_a[~has], out_b[~has])
    assert not torch.allclose(out_a[has], out_b[has])


def test_cv_is_deterministic_and_learns():
    inp, y, folds = _synthetic()
    a = train_mlp_cv(inp, y, folds, FAST)
    b = train_mlp_cv(inp, y, folds, FAST)
    assert np.array_equal(a.oof_log, b.oof_log)
    assert len(a.models) == 4 and len(a.best_iterations) == 4
    assert all(1 <= e <= FAST.max_epochs for e in a.best_iterations)
    # far better than predicting the training median (the signal is learnable)
    med = smape(np.expm1(y), np.full(len(y), np.expm1(np.median(y))))
    assert a.oof_smape(y) < 0.7 * med
    pa, pb = predict_mlp(a.models, inp.take(np.arange(50))), predict_mlp(b.models, inp.take(np.arange(50)))
    assert pa.shape == (50,) and pa.dtype == np.float64 and np.array_equal(pa, pb)


def test_different_seed_changes_predictions():
    inp, y, folds = _synthetic(n=120)
    short = MLPConfig(**{**FAST.__dict__, "max_epochs": 2})
    a = train_mlp_cv(inp, y, folds, short)
    c = train_mlp_cv(inp, y, folds, MLPConfig(**{**short.__dict__, "seed": 7}))
    assert not np.array_equal(a.oof_log, c.oof_log)


def test_predict_rejects_wrong_dims():
    inp, y, folds = _synthetic(n=120)
    cv = train_mlp_cv(inp, y, folds, MLPConfig(**{**FAST.__dict__, "max_epochs": 2}))
    bad = MLPInputs(inp.text, inp.image, inp.has_image, inp.tab[:, :3])
    with pytest.raises(ValueError, match="dims"):
        predict_mlp(cv.models, bad)


def test_inputs_validate_rows():
    inp, _, _ = _synthetic(n=20)
    tab = inp.tab.copy()
    tab[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"tab has non-finite values in rows \[3\]"):
        MLPInputs(inp.text, inp.image, inp.has_image, tab)
    with pytest.raises(ValueError, match="image has 19 rows"):
        MLPInputs(inp.text, inp.image[:19], inp.has_image, inp.tab)
    # NaN image rows are fine where has_image is False (they are masked)
    img = inp.image.copy()
    img[~inp.has_image] = np.nan
    MLPInputs(inp.text, img, inp.has_image, inp.tab)


def test_tabular_matrix_fills_nan_and_adds_indicators():
    df = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c", "d"],
            "qty": [1.0, np.nan, 1000.0, 5.0],
            "flag": [1.0, 0.0, 1.0, 0.0],
            "empty": [np.nan] * 4,
            "category": ["food", "beauty", "food", None],
        }
    )
    X, cols = tabular_matrix(df, exclude_prefixes=("sample_id",))
    assert X.dtype == np.float32 and np.isfinite(X).all()
    assert cols == ["qty", "flag", "qty__isna", "category=None", "category=beauty", "category=food"]
    assert X.shape == (4, 6)
    assert X[:, cols.index("qty__isna")].tolist() == [0, 1, 0, 0]
    assert X[1, cols.index("qty")] == 0.0
    # monotone transform: order of qty kept among present rows
    q = X[[0, 3, 2], cols.index("qty")]
    assert q[0] < q[1] < q[2]
    with pytest.raises(ValueError, match="infinite values in columns \\['qty'\\]"):
        tabular_matrix(df.assign(qty=[1.0, np.inf, 2.0, 3.0]), exclude_prefixes=("sample_id",))
