"""Blend weights: convex, fitted on OOF SMAPE, SLSQP failures handled, non-finite inputs named."""

import numpy as np
import pytest

from pricing_assets.lib.models.blend import BlendFitError, apply_blend, fit_blend_weights
from pricing_assets.lib.models.metrics import smape
from pricing_assets.lib.models.tfidf_ridge import product_text, train_tfidf_ridge_cv


def test_blend_weights_convex_and_pick_perfect_model():
    rng = np.random.default_rng(0)
    y = rng.uniform(2, 100, 500)
    perfect = y.copy()
    noisy = y * rng.lognormal(0, 0.5, 500)
    biased = y * 1.8
    w = fit_blend_weights(np.column_stack([noisy, perfect, biased]), y)
    assert w.shape == (3,) and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert w[1] > 0.95
    blended = apply_blend(np.column_stack([noisy, perfect, biased]), w)
    assert smape(y, blended) < 1.0
    assert fit_blend_weights(noisy[:, None], y).tolist() == [1.0]


def test_blend_of_two_complementary_models_beats_each():
    rng = np.random.default_rng(1)
    y = rng.uniform(2, 100, 2000)
    a = y * rng.lognormal(0, 0.4, 2000)
    b = y * rng.lognormal(0, 0.4, 2000)
    w = fit_blend_weights(np.column_stack([a, b]), y)
    assert 0.3 < w[0] < 0.7
    assert smape(y, apply_blend(np.column_stack([a, b]), w)) < min(smape(y, a), smape(y, b)) - 3


def _three_models(n=400, seed=2):
    rng = np.random.default_rng(seed)
    y = rng.uniform(2, 100, n)
    return y, np.column_stack([y * rng.lognormal(0, 0.3, n), y * rng.lognormal(0, 0.3, n), y * 3.0])


def _fake_minimize(x, success, message="Iteration limit reached", status=9):
    from scipy.optimize import OptimizeResult

    def fake(fun, x0, **kw):
        return OptimizeResult(x=np.asarray(x, dtype=float), success=success, message=message, status=status, nit=100)

    return fake


def test_blend_failed_optimizer_with_worse_point_raises(monkeypatch):
    import scipy.optimize

    y, mats = _three_models()
    # the optimizer "stops" on the 3x-biased model: far worse than equal weights
    monkeypatch.setattr(scipy.optimize, "minimize", _fake_minimize([0.0, 0.0, 1.0], success=False))
    with pytest.raises(
        BlendFitError, match=r"SLSQP failed \('Iteration limit reached', status 9\).*\['a', 'b', 'c'\]"
    ) as info:
        fit_blend_weights(mats, y, names=["a", "b", "c"])
    err = info.value
    assert err.message == "Iteration limit reached" and err.status == 9
    assert err.loss_end == pytest.approx(smape(y, mats[:, 2]))
    assert err.loss_end > err.loss_start == pytest.approx(smape(y, apply_blend(mats, np.full(3, 1 / 3))))
    assert isinstance(err, RuntimeError)
    # a non-finite optimizer point is a failure even if it claims success
    monkeypatch.setattr(
        scipy.optimize, "minimize", _fake_minimize([np.nan, 0.5, 0.5], success=True, message="ok", status=0)
    )
    with pytest.raises(BlendFitError, match="SMAPE inf"):
        fit_blend_weights(mats, y)


def test_blend_failed_optimizer_with_better_point_is_accepted(monkeypatch):
    """SLSQP can stop with 'Positive directional derivative for linesearch' at SMAPE's kinks; a point
    at least as good as the equal-weight start is kept (projected onto the simplex)."""
    import scipy.optimize

    y, mats = _three_models()
    msg = "Positive directional derivative for linesearch"
    monkeypatch.setattr(
        scipy.optimize, "minimize", _fake_minimize([0.5, 0.5, -1e-9], success=False, message=msg, status=8)
    )
    w = fit_blend_weights(mats, y)
    assert w.tolist() == pytest.approx([0.5, 0.5, 0.0]) and w.sum() == pytest.approx(1.0) and (w >= 0).all()


def test_blend_rejects_non_finite_inputs_naming_the_model():
    y, mats = _three_models(50)
    bad = mats.copy()
    bad[[3, 7], 1] = np.nan
    with pytest.raises(ValueError, match=r"model 'lightgbm' has 2 non-finite OOF prediction\(s\), first rows \[3, 7\]"):
        fit_blend_weights(bad, y, names=["ridge", "lightgbm", "mlp"])
    bad = mats.copy()
    bad[0, 2] = np.inf
    with pytest.raises(ValueError, match=r"model 'column 2' has 1 non-finite"):
        fit_blend_weights(bad, y)
    y_bad = y.copy()
    y_bad[4] = np.nan
    with pytest.raises(ValueError, match=r"y_price has 1 non-finite value\(s\), first rows \[4\]"):
        fit_blend_weights(mats, y_bad)
    with pytest.raises(ValueError, match="2 names for 3 model columns"):
        fit_blend_weights(mats, y, names=["a", "b"])
    with pytest.raises(ValueError, match=r"must be \(n, m\)"):
        fit_blend_weights(mats[:10], y)
    bad = mats[:, :1].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="column 0"):  # checked even for a single model
        fit_blend_weights(bad, y)


def test_slsqp_converges_on_real_oof_predictions(real, monkeypatch):
    """The real optimizer on real OOF predictions (TF-IDF ridge, its 2-fold-median shrink and the
    fold median): SLSQP reports success and beats equal weights."""
    import scipy.optimize

    parsed, y, folds = real
    ridge = train_tfidf_ridge_cv(product_text(parsed), y, folds).oof_log
    med = np.zeros(len(y))
    for f in np.unique(folds):
        med[folds == f] = np.median(y[folds != f])
    mats = np.expm1(np.column_stack([ridge, 0.5 * (ridge + med), med]))
    price = np.expm1(y)
    seen = []
    real_minimize = scipy.optimize.minimize

    def spy(*a, **kw):
        res = real_minimize(*a, **kw)
        seen.append(res)
        return res

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    w = fit_blend_weights(mats, price)
    assert len(seen) == 1 and seen[0].success, seen[0].message
    assert smape(price, apply_blend(mats, w)) <= smape(price, apply_blend(mats, np.full(3, 1 / 3)))
