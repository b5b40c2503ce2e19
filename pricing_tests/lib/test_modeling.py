"""Folds, LightGBM and TF-IDF ridge CV (determinism, held-out labels never used), blend weights."""


import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.metrics import smape
from pricing_assets.lib.modeling import (
    REFIT_ROUNDS_FACTOR,
    BlendFitError,
    apply_blend,
    assign_folds,
    fit_blend_weights,
    model_input,
    predict_lightgbm,
    predict_tfidf_ridge,
    predictions_frame,
    product_text,
    refit_lightgbm,
    tfidf_ridge_every_row,
    train_lightgbm_cv,
    train_tfidf_ridge_cv,
)
from pricing_tests.helpers import LABELED_CSV as SAMPLE


@pytest.fixture(scope="module")
def real():
    """500 real labeled rows: parsed text, log price, folds."""
    from pricing_assets.lib.catalog import parse_catalog_content

    df = pd.read_csv(SAMPLE, dtype={"sample_id": str}, nrows=500)
    parsed = pd.DataFrame([parse_catalog_content(t) for t in df["catalog_content"]])
    folds = assign_folds(df["sample_id"], df["image_link"], 4, 42)
    return parsed, np.log1p(df["price"].to_numpy(dtype=float)), folds


def _tabular(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))
    X["category"] = pd.Categorical(rng.choice(["food", "toys"], n))
    log_price = 2.0 + X["a"].to_numpy() + 0.5 * (X["category"] == "food").to_numpy() + rng.normal(0, 0.1, n)
    return X, np.log1p(np.exp(log_price)), np.arange(n) % 3


def test_assign_folds_groups_deterministic_and_order_free():
    ids = pd.Series([str(i) for i in range(40)])
    groups = pd.Series([f"img{i // 2}" for i in range(40)])  # pairs of variants
    f = assign_folds(ids, groups, 4, 42)
    assert f.dtype == np.int64 and sorted(set(f)) == [0, 1, 2, 3]
    assert all(f[2 * i] == f[2 * i + 1] for i in range(20))
    perm = np.random.default_rng(1).permutation(40)
    f2 = assign_folds(ids[perm].reset_index(drop=True), groups[perm].reset_index(drop=True), 4, 42)
    assert np.array_equal(f2, f[perm])
    with pytest.raises(ValueError, match="3 labeled rows < 5 folds"):
        assign_folds(ids[:3], groups[:3], 5)


def test_lightgbm_deterministic_and_learns():
    X, y, folds = _tabular()
    a = train_lightgbm_cv(X, y, folds, num_boost_round=200, early_stopping_rounds=20, categorical=["category"], num_threads=1)
    b = train_lightgbm_cv(X, y, folds, num_boost_round=200, early_stopping_rounds=20, categorical=["category"], num_threads=1)
    assert np.array_equal(a.oof_log, b.oof_log)
    assert np.array_equal(predict_lightgbm(a.models, X[:20]), predict_lightgbm(b.models, X[:20]))
    assert len(a.models) == 3 and len(a.fold_smape) == 3
    med = smape(np.expm1(y), np.full(len(y), np.expm1(np.median(y))))
    assert a.oof_smape(y) < 0.5 * med


def test_lightgbm_held_out_labels_never_used():
    """Early stopping uses an inner split of the training folds: scrambling fold 0's labels leaves
    fold 0's OOF predictions bit-identical."""
    X, y, folds = _tabular()
    a = train_lightgbm_cv(X, y, folds, num_boost_round=200, early_stopping_rounds=20, categorical=["category"], num_threads=1)
    y2 = y.copy()
    y2[folds == 0] = np.random.default_rng(5).uniform(0.1, 8, (folds == 0).sum())
    b = train_lightgbm_cv(X, y2, folds, num_boost_round=200, early_stopping_rounds=20, categorical=["category"], num_threads=1)
    assert np.array_equal(a.oof_log[folds == 0], b.oof_log[folds == 0])
    assert a.best_iterations[0] == b.best_iterations[0]


def test_lightgbm_seed_bagging_averages_the_bags():
    """n_bags=2: two boosters per fold, the OOF is the mean (log-price space) of the single-seed runs
    with seeds 42 and 1042; held-out labels still never reach their own fold."""
    X, y, folds = _tabular()
    kw = {"num_boost_round": 200, "early_stopping_rounds": 20, "categorical": ["category"], "num_threads": 1}
    bag = train_lightgbm_cv(X, y, folds, n_bags=2, **kw)
    s1 = train_lightgbm_cv(X, y, folds, seed=42, **kw)
    s2 = train_lightgbm_cv(X, y, folds, seed=1042, **kw)
    assert len(bag.models) == 6 and len(bag.best_iterations) == 6 and len(bag.fold_smape) == 3
    expected = np.log1p(np.exp((np.log(np.expm1(s1.oof_log)) + np.log(np.expm1(s2.oof_log))) / 2))
    assert np.allclose(bag.oof_log, expected, rtol=0, atol=1e-9)
    assert not np.allclose(s1.oof_log, s2.oof_log)
    y2 = y.copy()
    y2[folds == 0] = np.random.default_rng(5).uniform(0.1, 8, (folds == 0).sum())
    bag2 = train_lightgbm_cv(X, y2, folds, n_bags=2, **kw)
    assert np.array_equal(bag.oof_log[folds == 0], bag2.oof_log[folds == 0])
    with pytest.raises(ValueError, match="n_bags must be >= 1"):
        train_lightgbm_cv(X, y, folds, n_bags=0, **kw)


def test_refit_lightgbm_uses_all_rows_with_the_cv_rounds():
    """The final boosters: n_bags of them, each with round(REFIT_ROUNDS_FACTOR x mean CV iteration) trees and
    best_iteration 0 (predict with every tree), seeded (same inputs, same predictions), and as good
    on fresh rows of the same process as the fold boosters' average."""
    X, y, folds = _tabular()
    kw = {"categorical": ["category"], "num_threads": 1}
    cv = train_lightgbm_cv(X, y, folds, num_boost_round=300, early_stopping_rounds=20, **kw)
    final = refit_lightgbm(X, y, cv.best_iterations, n_bags=2, **kw)
    rounds = round(REFIT_ROUNDS_FACTOR * np.mean(cv.best_iterations))
    assert len(final) == 2 and [b.num_trees() for b in final] == [rounds, rounds]
    assert all(b.best_iteration == 0 for b in final)
    X_new, y_new, _ = _tabular(seed=1)
    p_refit = predict_lightgbm(final, X_new)
    assert np.array_equal(p_refit, predict_lightgbm(refit_lightgbm(X, y, cv.best_iterations, n_bags=2, **kw), X_new))
    assert not np.array_equal(final[0].predict(X_new), final[1].predict(X_new))  # bag seeds 42 / 1042
    s_refit = smape(np.expm1(y_new), np.expm1(p_refit))
    s_folds = smape(np.expm1(y_new), np.expm1(predict_lightgbm(cv.models, X_new)))
    s_median = smape(np.expm1(y_new), np.full(len(y_new), np.median(np.expm1(y))))
    assert s_refit < 0.5 * s_median and s_refit < s_folds + 1.0, (s_refit, s_folds, s_median)
    y_bad = y.copy()
    y_bad[3] = np.nan
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        refit_lightgbm(X, y_bad, cv.best_iterations, **kw)
    with pytest.raises(ValueError, match="no CV best_iterations"):
        refit_lightgbm(X, y, [], **kw)
    with pytest.raises(ValueError, match="n_bags must be >= 1"):
        refit_lightgbm(X, y, cv.best_iterations, n_bags=0, **kw)


def test_lightgbm_rejects_non_positive_prices():
    X, y, folds = _tabular()
    y = y.copy()
    y[7] = 0.0  # log1p(price) 0: price 0 has no log
    with pytest.raises(ValueError, match=r"prices must be > 0.*rows \[7\]"):
        train_lightgbm_cv(X, y, folds, num_boost_round=10, num_threads=1)


def test_tfidf_ridge_on_real_rows(real):
    parsed, y, folds = real
    text = product_text(parsed)
    assert len(text) == 500 and text.iloc[0].startswith(parsed["item_name"].iloc[0])
    a = train_tfidf_ridge_cv(text, y, folds)
    b = train_tfidf_ridge_cv(text, y, folds)
    assert np.array_equal(a.oof_log, b.oof_log)
    med = np.zeros(len(y))
    for f in np.unique(folds):
        med[folds == f] = np.median(y[folds != f])
    # beats the median on real rows, by a clear margin
    assert a.oof_smape(y) < smape(np.expm1(y), np.expm1(med)) - 5
    # held-out labels never used
    y2 = y.copy()
    y2[folds == 1] = 0.5
    c = train_tfidf_ridge_cv(text, y2, folds)
    assert np.array_equal(a.oof_log[folds == 1], c.oof_log[folds == 1])
    # fold models share one vectoriser; predicting = averaging the fold ridges
    p = predict_tfidf_ridge(a.models, text[:5])
    assert p.shape == (5,) and np.allclose(p, np.mean([m.predict(text[:5]) for m in a.models], axis=0))
    with pytest.raises(ValueError, match="length mismatch"):
        train_tfidf_ridge_cv(text[:10], y, folds)


def test_stacked_title_ridge_is_out_of_fold_and_covers_unlabeled_rows(real):
    parsed, y, folds = real
    titles = parsed["item_name"]
    # the last 100 rows play the unlabeled batch: no price, fold -1
    y_in, folds_in = y.copy(), folds.copy()
    y_in[400:], folds_in[400:] = np.nan, -1
    a, a_cv = tfidf_ridge_every_row(titles, y_in, folds_in)
    assert a.shape == (500,) and a.dtype == np.float64 and np.isfinite(a).all()
    # labeled rows: exactly the OOF of a CV on the labeled rows alone; the vocabulary too is fitted on
    # the labeled titles only (an unlabeled row gets what a new product gets: no transductive step)
    cv = train_tfidf_ridge_cv(titles[:400].reset_index(drop=True), y[:400], folds[:400])
    assert np.array_equal(a[:400], cv.oof_log) and np.array_equal(a_cv.oof_log, cv.oof_log) and len(a_cv.models) == 4
    # unlabeled rows: the average of the fold ridges
    assert np.allclose(a[400:], predict_tfidf_ridge(cv.models, titles[400:]))
    # a title carries price signal: better than each fold's training median on the labeled rows
    med = np.zeros(400)
    for f in np.unique(folds_in[:400]):
        med[folds_in[:400] == f] = np.median(y[:400][folds_in[:400] != f])
    assert smape(np.expm1(y[:400]), np.expm1(a[:400])) < smape(np.expm1(y[:400]), np.expm1(med)) - 3
    # no row sees its own fold's prices: scrambling fold 2's prices leaves fold 2's values unchanged
    y_scr = y_in.copy()
    y_scr[folds_in == 2] = np.log1p(1000.0)
    b, _ = tfidf_ridge_every_row(titles, y_scr, folds_in)
    assert np.array_equal(a[folds_in == 2], b[folds_in == 2])
    assert not np.allclose(a[folds_in == 1], b[folds_in == 1])
    with pytest.raises(ValueError, match="tfidf_ridge_every_row: length mismatch"):
        tfidf_ridge_every_row(titles[:10], y_in, folds_in)


def test_product_text_joins_parts():
    items = pd.DataFrame({"item_name": ["Tea", None], "bullets": [["strong", "black"], None], "description": [np.nan, "d"], "ipq_value": [12.0, np.nan], "ipq_unit": ["Ounce", None]})
    t = product_text(items)
    assert t.iloc[0] == "Tea\nstrong\nblack\n\nvalue 12.0 Ounce"
    assert t.iloc[1] == "\n\nd\nvalue  "
    with pytest.raises(KeyError, match="item_name"):
        product_text(pd.DataFrame({"x": [1]}))


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
    with pytest.raises(BlendFitError, match=r"SLSQP failed \('Iteration limit reached', status 9\).*\['a', 'b', 'c'\]") as info:
        fit_blend_weights(mats, y, names=["a", "b", "c"])
    err = info.value
    assert err.message == "Iteration limit reached" and err.status == 9
    assert err.loss_end == pytest.approx(smape(y, mats[:, 2]))
    assert err.loss_end > err.loss_start == pytest.approx(smape(y, apply_blend(mats, np.full(3, 1 / 3))))
    assert isinstance(err, RuntimeError)
    # a non-finite optimizer point is a failure even if it claims success
    monkeypatch.setattr(scipy.optimize, "minimize", _fake_minimize([np.nan, 0.5, 0.5], success=True, message="ok", status=0))
    with pytest.raises(BlendFitError, match="SMAPE inf"):
        fit_blend_weights(mats, y)


def test_blend_failed_optimizer_with_better_point_is_accepted(monkeypatch):
    """SLSQP can stop with 'Positive directional derivative for linesearch' at SMAPE's kinks; a point
    at least as good as the equal-weight start is kept (projected onto the simplex)."""
    import scipy.optimize

    y, mats = _three_models()
    msg = "Positive directional derivative for linesearch"
    monkeypatch.setattr(scipy.optimize, "minimize", _fake_minimize([0.5, 0.5, -1e-9], success=False, message=msg, status=8))
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


def test_predictions_frame_and_model_input():
    fm = pd.DataFrame({"sample_id": ["a", "b", "c"], "fold": [0, -1, 1], "price": [5.0, np.nan, 7.0], "x": [1.0, 2.0, 3.0], "category": ["f", "g", "f"]})
    X = model_input(fm)
    assert list(X.columns) == ["x", "category"] and X["category"].dtype == "category"
    p = predictions_frame(fm, np.log1p([4.0, 8.0]), np.array([-20.0]))
    assert p["pred_price"].tolist() == pytest.approx([4.0, 0.01, 8.0])
    assert p["fold"].tolist() == [0, -1, 1]
