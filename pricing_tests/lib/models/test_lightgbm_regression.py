"""LightGBM CV (determinism, held-out labels never used, seed bagging), the refit and its input columns."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.models.lightgbm_regression import (
    MAX_PARALLEL_TRAININGS,
    REFIT_ROUNDS_FACTOR,
    model_input,
    predict_lightgbm,
    refit_lightgbm,
    train_lightgbm_cv,
    training_slots,
)
from pricing_assets.lib.models.metrics import smape


def _tabular(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))
    X["category"] = pd.Categorical(rng.choice(["food", "toys"], n))
    log_price = 2.0 + X["a"].to_numpy() + 0.5 * (X["category"] == "food").to_numpy() + rng.normal(0, 0.1, n)
    return X, np.log1p(np.exp(log_price)), np.arange(n) % 3


def test_lightgbm_deterministic_and_learns():
    X, y, folds = _tabular()
    a = train_lightgbm_cv(
        X, y, folds, num_boost_round=200, early_stopping_rounds=20, categorical=["category"], num_threads=1
    )
    b = train_lightgbm_cv(
        X, y, folds, num_boost_round=200, early_stopping_rounds=20, categorical=["category"], num_threads=1
    )
    assert np.array_equal(a.oof_log, b.oof_log)
    assert np.array_equal(predict_lightgbm(a.models, X[:20]), predict_lightgbm(b.models, X[:20]))
    assert len(a.models) == 3 and len(a.fold_smape) == 3
    med = smape(np.expm1(y), np.full(len(y), np.expm1(np.median(y))))
    assert a.oof_smape(y) < 0.5 * med


def test_lightgbm_held_out_labels_never_used():
    """Early stopping uses an inner split of the training folds: scrambling fold 0's labels leaves
    fold 0's OOF predictions bit-identical."""
    X, y, folds = _tabular()
    a = train_lightgbm_cv(
        X, y, folds, num_boost_round=200, early_stopping_rounds=20, categorical=["category"], num_threads=1
    )
    y2 = y.copy()
    y2[folds == 0] = np.random.default_rng(5).uniform(0.1, 8, (folds == 0).sum())
    b = train_lightgbm_cv(
        X, y2, folds, num_boost_round=200, early_stopping_rounds=20, categorical=["category"], num_threads=1
    )
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


def test_model_input():
    fm = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c"],
            "fold": [0, -1, 1],
            "price": [5.0, np.nan, 7.0],
            "x": [1.0, 2.0, 3.0],
            "category": ["f", "g", "f"],
        }
    )
    X = model_input(fm)
    assert list(X.columns) == ["x", "category"] and X["category"].dtype == "category"


def test_monotone_constraints_cover_the_pack_quantity_columns():
    from pricing_assets.lib.models.lightgbm_regression import monotone_constraints

    cols = [
        "ipq_value",
        "log_grams",
        "qty_per_pack",
        "pack_count",
        "uknn_minilm_unit_wmean",
        "uknn_tfidf_unit_median",
        "uknn_tfidf_unit_n",
        "knn_tfidf_mean",
        "brand_te",
    ]
    assert monotone_constraints(cols) == [1, 1, 1, 0, 1, 1, 0, 0, 0]


def test_lightgbm_is_non_decreasing_in_the_pack_quantity():
    # a price that *falls* with the quantity in the data: the constrained model still never does
    rng = np.random.default_rng(3)
    n = 400
    X = pd.DataFrame({"log_qty": rng.uniform(0, 5, n), "other": rng.normal(size=n)})
    log_price = 2.0 - 0.4 * X["log_qty"] + np.sin(3 * X["log_qty"]) + 0.3 * X["other"] + rng.normal(0, 0.1, n)
    res = train_lightgbm_cv(
        X, np.log1p(np.exp(log_price)), np.arange(n) % 4, num_boost_round=300, early_stopping_rounds=30, num_threads=1
    )
    grid = pd.DataFrame({"log_qty": np.repeat(np.linspace(0, 5, 50), 5), "other": np.tile(np.linspace(-2, 2, 5), 50)})
    pred = predict_lightgbm(res.models, grid).reshape(50, 5)
    assert (np.diff(pred, axis=0) >= -1e-12).all()
    refit = refit_lightgbm(X, np.log1p(np.exp(log_price)), res.best_iterations, num_threads=1)
    assert (np.diff(predict_lightgbm(refit, grid).reshape(50, 5), axis=0) >= -1e-12).all()
    # without the constraint (a column name outside the list) the same data gives a falling price
    free = train_lightgbm_cv(
        X.rename(columns={"log_qty": "q"}),
        np.log1p(np.exp(log_price)),
        np.arange(n) % 4,
        num_boost_round=300,
        early_stopping_rounds=30,
        num_threads=1,
    )
    free_pred = predict_lightgbm(free.models, grid.rename(columns={"log_qty": "q"})).reshape(50, 5)
    assert (np.diff(free_pred, axis=0) < -1e-3).any()


def test_training_slots_spread_the_trainings_over_the_cores():
    assert training_slots(2, 15) == (2, 1)
    assert training_slots(1, 15) == (1, 1)
    assert training_slots(8, 3) == (3, 2)  # fewer trainings than cores: each gets more threads
    assert training_slots(16, 18) == (MAX_PARALLEL_TRAININGS, 16 // MAX_PARALLEL_TRAININGS)
    assert training_slots(2, 1) == (1, 2)
    workers, threads = training_slots(0, 10)  # 0 = every core this process may use
    assert workers >= 1 and threads >= 1


def test_trainings_side_by_side_give_the_models_of_one_after_the_other():
    """num_threads=2 trains two single-threaded boosters at a time; num_threads=1 one after the other:
    the same boosters (fold-major order), so the same OOF and refit predictions, bit for bit."""
    X, y, folds = _tabular()
    kw = {"num_boost_round": 200, "early_stopping_rounds": 20, "categorical": ["category"], "n_bags": 2}
    serial = train_lightgbm_cv(X, y, folds, num_threads=1, **kw)
    side = train_lightgbm_cv(X, y, folds, num_threads=2, **kw)
    assert np.array_equal(serial.oof_log, side.oof_log)
    assert serial.best_iterations == side.best_iterations and serial.fold_smape == side.fold_smape
    a = refit_lightgbm(X, y, serial.best_iterations, categorical=["category"], num_threads=1, n_bags=3)
    b = refit_lightgbm(X, y, serial.best_iterations, categorical=["category"], num_threads=2, n_bags=3)
    assert [m.model_to_string() for m in a] == [m.model_to_string() for m in b]
