"""Distributional price model: bins, the expected-SMAPE decision (checked against brute force and
against a bimodal case where it must pick a mode), CV determinism and held-out labels never used."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.models.distributional import (
    bin_log_prices,
    bin_loss_matrix,
    expected_smape_decision,
    predict_lightgbm_dist,
    price_bins,
    smape_log,
    train_lightgbm_dist_cv,
)
from pricing_assets.lib.models.metrics import smape


def test_smape_log_matches_the_metric():
    rng = np.random.default_rng(0)
    a, f = rng.uniform(0.1, 500, 200), rng.uniform(0.1, 500, 200)
    assert np.isclose(smape_log(np.log(f), np.log(a)).mean() * 100, smape(a, f))


def test_price_bins_are_quantiles_and_cover_every_row():
    lp = np.log(np.random.default_rng(1).lognormal(2.5, 1.0, 1000))
    edges, labels = price_bins(lp, 10)
    assert len(edges) == 11 and edges[0] == -np.inf and edges[-1] == np.inf
    assert labels.dtype == np.int64 and labels.min() == 0 and labels.max() == 9
    counts = np.bincount(labels)
    assert counts.min() >= 95 and counts.max() <= 105  # ~100 rows per decile
    assert all(lp[labels == k].max() <= lp[labels == k + 1].min() for k in range(9))
    # ties collapse bins instead of leaving empty ones
    _, tied = price_bins(np.log(np.r_[np.full(50, 5.0), np.full(50, 20.0)]), 10)
    assert sorted(set(tied)) == [0, 1]
    # heavy ties (small batches, round prices): no bin may be empty
    rng = np.random.default_rng(3)
    for _ in range(200):
        lp = np.log(rng.choice([1.0, 2.0, 5.0, 9.99, 20.0], size=int(rng.integers(8, 40))))
        if len(np.unique(lp)) < 2:
            continue
        e, lab = price_bins(lp, int(rng.integers(2, 25)))
        assert np.bincount(lab).min() >= 1 and lab.max() == len(e) - 2
        assert all(e[k] <= lp[lab == k].min() and lp[lab == k].max() < e[k + 1] for k in range(len(e) - 1))
    with pytest.raises(ValueError, match="finite"):
        price_bins(np.array([1.0, np.nan]), 5)
    with pytest.raises(ValueError, match="fewer than 2"):
        price_bins(np.zeros(10), 5)


def test_decision_equals_brute_force_expected_smape():
    rng = np.random.default_rng(2)
    lp = np.log(rng.lognormal(2.5, 1.0, 400))
    _, labels = price_bins(lp, 5)
    per_bin = bin_log_prices(lp, labels)
    grid = np.linspace(lp.min(), lp.max(), 200)
    proba = rng.dirichlet(np.ones(5), size=7)
    got = expected_smape_decision(proba, bin_loss_matrix(per_bin, grid), grid)
    for i in range(7):
        # brute force: expected SMAPE = sum_k p_k * mean over bin k's rows
        exp_loss = [sum(proba[i, k] * smape_log(g, per_bin[k]).mean() for k in range(5)) for g in grid]
        assert got[i] == grid[int(np.argmin(exp_loss))]


def test_bimodal_posterior_picks_the_likely_mode_not_the_middle():
    """70 % mass at 2 USD, 30 % at 24 USD (unit vs 12-pack price): the SMAPE decision is the 2 USD
    mode; the log-space mean (~4.2 USD) would cost more expected SMAPE."""
    per_bin = [np.log(np.full(10, 2.0)), np.log(np.full(10, 24.0))]
    grid = np.linspace(np.log(1.0), np.log(30.0), 500)
    dec = expected_smape_decision(np.array([[0.7, 0.3]]), bin_loss_matrix(per_bin, grid), grid)
    assert abs(np.exp(dec[0]) - 2.0) < 0.05
    mid = 0.7 * np.log(2.0) + 0.3 * np.log(24.0)

    def cost(g):
        return 0.7 * smape_log(g, np.log(2.0)) + 0.3 * smape_log(g, np.log(24.0))

    assert cost(dec[0]) < cost(mid) - 0.2


def _tabular(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))
    y_log1p = np.log1p(np.exp(2.0 + X["a"].to_numpy() + rng.normal(0, 0.2, n)))
    return X, y_log1p, np.arange(n) % 4


def test_cv_learns_is_deterministic_and_predicts_unlabeled_rows():
    X, y, folds = _tabular()
    kw = {"n_bins": 8, "num_boost_round": 200, "early_stopping_rounds": 20, "num_threads": 1}
    a = train_lightgbm_dist_cv(X, y, folds, **kw)
    b = train_lightgbm_dist_cv(X, y, folds, **kw)
    assert np.array_equal(a.oof_log, b.oof_log)
    side = train_lightgbm_dist_cv(X, y, folds, **{**kw, "num_threads": 2})  # two folds at a time, 1 thread each
    assert np.array_equal(a.oof_log, side.oof_log) and a.best_iterations == side.best_iterations
    assert len(a.models) == 4 and len(a.fold_smape) == 4 and all(len(m["bin_log_prices"]) == 8 for m in a.models)
    med = smape(np.expm1(y), np.full(len(y), np.expm1(np.median(y))))
    assert a.oof_smape(y) < 0.6 * med
    new = X.iloc[:25]
    p = predict_lightgbm_dist(a.models, new)
    assert p.shape == (25,) and np.isfinite(p).all()
    assert np.array_equal(p, predict_lightgbm_dist(b.models, new))
    # predictions are ensemble decisions close to the truth for in-sample rows
    assert smape(np.expm1(y[:25]), np.expm1(p)) < 0.6 * med


def test_held_out_labels_never_used():
    """Bins, loss matrix, early stopping and classifier use the other folds only: scrambling fold 0's
    prices leaves fold 0's OOF predictions identical."""
    X, y, folds = _tabular()
    kw = {"n_bins": 8, "num_boost_round": 200, "early_stopping_rounds": 20, "num_threads": 1}
    a = train_lightgbm_dist_cv(X, y, folds, **kw)
    y2 = y.copy()
    y2[folds == 0] = np.log1p(np.random.default_rng(5).uniform(0.5, 900, (folds == 0).sum()))
    b = train_lightgbm_dist_cv(X, y2, folds, **kw)
    assert np.array_equal(a.oof_log[folds == 0], b.oof_log[folds == 0])
    assert not np.array_equal(a.oof_log[folds == 1], b.oof_log[folds == 1])


def test_errors_name_the_problem():
    X, y, folds = _tabular(40)
    with pytest.raises(ValueError, match="length mismatch"):
        train_lightgbm_dist_cv(X, y[:-1], folds)
    bad = y.copy()
    bad[3] = 0.0  # price 0
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        train_lightgbm_dist_cv(X, bad, folds)
    with pytest.raises(ValueError, match="needs >= 2 folds"):
        train_lightgbm_dist_cv(X, y, np.zeros(40, int))
    with pytest.raises(ValueError, match="no models"):
        predict_lightgbm_dist([], X)


def test_the_distributional_model_does_not_see_the_pack_quantity():
    from pricing_assets.lib.models.distributional import quantity_blind

    X, y, folds = _tabular()
    X = X.assign(log_qty=np.linspace(0, 4, len(X)), uknn_minilm_unit_wmean=1.0)
    assert list(quantity_blind(X).columns) == [c for c in X.columns if c not in ("log_qty", "uknn_minilm_unit_wmean")]
    res = train_lightgbm_dist_cv(X, y, folds, n_bins=8, num_boost_round=100, early_stopping_rounds=20, num_threads=1)
    assert res.models[0]["booster"].feature_name() == list(quantity_blind(X).columns)
    p = predict_lightgbm_dist(res.models, X.iloc[:30])
    assert np.array_equal(
        p, predict_lightgbm_dist(res.models, X.iloc[:30].assign(log_qty=99.0, uknn_minilm_unit_wmean=7.0))
    )
