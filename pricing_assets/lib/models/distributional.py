"""Distributional price model: LightGBM classifies the price into quantile bins, and the point
prediction is the price that minimises the *expected SMAPE* under the predicted bin probabilities
(pure functions, no Dagster).

Why: SMAPE is a function of the log ratio only, ``SMAPE(F, A) = 2 tanh(|log F - log A| / 2)``, a
bounded loss. When the price given the features is multi-modal (the catalog's "Pack of 12" rows are
priced per pack on some listings and per unit on others), a regression on log price lands between
the modes and is far from both; the expected-SMAPE decision picks the likely mode instead. It is
the Bayes decision for the metric (decision theory: minimise the posterior expected loss), with the
posterior estimated by a multiclass LightGBM. Alone it scores a little worse than the LightGBM
regression, but its errors differ, so the blend gives it weight and scores lower than either
(docs/experiments.md, "Distributional LightGBM in the blend").
"""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from pricing_assets.lib.models.cross_validation import DEFAULT_SEED, CvResult, inner_split
from pricing_assets.lib.models.lightgbm_regression import LGBM_PARAMS, training_slots
from pricing_assets.lib.models.metrics import smape

#: Multiclass LightGBM settings: learning rate 0.05, 15 leaves, :data:`N_BINS` 20 price bins, the
#: best of the few tried on the sample's OOF SMAPE of the decision alone; not tuned further
#: (docs/experiments.md, "Distributional LightGBM settings").
DIST_PARAMS: dict = {
    **{k: v for k, v in LGBM_PARAMS.items() if k not in ("objective", "alpha")},  # shared sampling/regularisation
    "objective": "multiclass",
    "learning_rate": 0.05,
    "num_leaves": 15,
}
N_BINS = 20
GRID_POINTS = 300
#: Boosting-round budget per fold (early stopping may end sooner). The model is 5 folds x K classes x
#: rounds trees, evaluated for every row scored. On the sample early stopping ends far below the
#: budget, so it changes nothing there; on a large catalog it bounds the training and prediction time
#: without raising OOF SMAPE: docs/experiments.md ("Scale: a round budget for the distributional model").
DIST_NUM_BOOST_ROUND = 300


def smape_log(pred_log: np.ndarray, true_log: np.ndarray) -> np.ndarray:
    """Element-wise SMAPE as a fraction in [0, 2] from natural-log prices (broadcasting).

    ``|F - A| / ((|F| + |A|) / 2) == 2 tanh(|log F - log A| / 2)`` for F, A > 0.
    """
    return 2.0 * np.tanh(np.abs(np.asarray(pred_log) - np.asarray(true_log)) / 2.0)


def price_bins(log_price: np.ndarray, n_bins: int = N_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bins of natural-log prices.

    Args:
        log_price: (n,) float64 ``log(price USD)``, finite.
        n_bins: number of bins (K); ties may merge bins, so fewer may come back.

    Returns:
        (edges (K'+1,) float64 increasing, labels (n,) int64 in ``0..K'-1``); every bin holds at
        least one row (ties and empty interpolated bins are merged, so K' <= K).

    Raises:
        ValueError: if ``log_price`` is empty or not finite, or ``n_bins < 2``.
    """
    log_price = np.asarray(log_price, dtype=np.float64)
    if n_bins < 2:
        raise ValueError(f"price_bins: n_bins must be >= 2, got {n_bins}")
    if log_price.size == 0 or not np.isfinite(log_price).all():
        raise ValueError("price_bins: log prices must be a non-empty finite array")
    edges = np.unique(np.quantile(log_price, np.linspace(0, 1, n_bins + 1)))
    if len(edges) < 3:
        raise ValueError(f"price_bins: fewer than 2 distinct price bins ({len(edges) - 1})")
    edges[0], edges[-1] = -np.inf, np.inf
    labels = np.clip(np.searchsorted(edges, log_price, side="right") - 1, 0, len(edges) - 2)
    # interpolated quantiles between tied values can leave a bin empty: merge it into its neighbour
    used = np.unique(labels)
    if len(used) < len(edges) - 1:
        edges = np.r_[-np.inf, edges[used[1:]], np.inf]
        labels = np.searchsorted(used, labels)
    if len(edges) < 3:
        raise ValueError("price_bins: fewer than 2 distinct price bins (1)")
    return edges, labels.astype(np.int64)


def bin_log_prices(log_price: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """The training rows' ``log(price)`` grouped by bin: K (n_k,) float64 arrays (bin k at index k)."""
    return [np.sort(np.asarray(log_price, dtype=np.float64)[labels == k]) for k in range(int(labels.max()) + 1)]


def bin_loss_matrix(per_bin: list[np.ndarray], grid: np.ndarray) -> np.ndarray:
    """Mean SMAPE of predicting each grid price for the training rows of each bin.

    Args:
        per_bin: K non-empty arrays of training ``log(price)`` (:func:`bin_log_prices`).
        grid: (g,) float64 candidate ``log(price)`` predictions.

    Returns:
        (g, K) float64 ``M[j, k] = mean_{i in bin k} SMAPE(exp(grid_j), price_i)`` (fraction, 0-2).
    """
    grid = np.asarray(grid, dtype=np.float64)
    return np.column_stack([smape_log(grid[:, None], v[None, :]).mean(axis=1) for v in per_bin])


def expected_smape_decision(proba: np.ndarray, loss: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Bayes decision for SMAPE: for each row the grid price with the least expected SMAPE.

    Args:
        proba: (n, K) float class probabilities (rows sum to 1).
        loss: (g, K) :func:`bin_loss_matrix`.
        grid: (g,) candidate ``log(price)``.

    Returns:
        (n,) float64 chosen ``log(price)``.
    """
    return grid[np.argmin(np.asarray(proba) @ loss.T, axis=1)]


def quantity_blind(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` without the columns that grow with the item pack quantity
    (``lib.models.lightgbm_regression.monotone_constraints``): the distributional model's input.

    A multiclass LightGBM cannot be constrained to move its decision up with a feature (its
    constraints act per class score, lightgbm-org/LightGBM#3912), so it does not see the pack
    quantity at all; the regression model carries it under a monotone constraint, and the blend (a
    weighted geometric mean, non-negative weights) of a non-decreasing and a constant term is
    non-decreasing. Effect on OOF SMAPE: docs/experiments.md ("A served price monotone in the pack
    quantity, blind to whitespace and case").
    """
    from pricing_assets.lib.models.lightgbm_regression import monotone_constraints

    return X[[c for c, m in zip(X.columns, monotone_constraints(X.columns)) if not m]]


def train_lightgbm_dist_cv(
    X: pd.DataFrame,
    y_log1p: np.ndarray,
    folds: np.ndarray,
    params: dict | None = None,
    n_bins: int = N_BINS,
    num_boost_round: int = DIST_NUM_BOOST_ROUND,
    early_stopping_rounds: int = 50,
    seed: int = DEFAULT_SEED,
    num_threads: int = 0,
    categorical: list[str] | None = None,
    inner_valid_fraction: float = 0.1,
    log=None,
) -> CvResult:
    """K-fold multiclass LightGBM over price bins + expected-SMAPE decision.

    For held-out fold f: bins, loss matrix and classifier come from the other folds only (early
    stopping on a seeded ``inner_valid_fraction`` of them), so the OOF prediction of a row never
    depends on its own price.

    Args:
        X: (n, p) features (``lib.models.lightgbm_regression.model_input``); the pack-quantity columns are
            dropped here (:func:`quantity_blind`).
        y_log1p: (n,) float64 ``log1p(price USD)`` (the pipeline's target convention).
        folds: (n,) int fold ids (>= 2 distinct).
        params: overrides of :data:`DIST_PARAMS`.
        n_bins: price bins K.
        num_boost_round / early_stopping_rounds: boosting budget (multi_logloss on the inner split).
        seed: LightGBM and inner-split seed (deterministic: same inputs, same predictions).
        num_threads: cores to use, 0 = all this process may run on; the folds train side by side
            (``lib.models.lightgbm_regression.training_slots``).
        categorical: categorical column names of ``X``.
        inner_valid_fraction: share of the training folds held back for early stopping.
        log: optional ``callable(str)``.

    Returns:
        :class:`~pricing_assets.lib.models.cross_validation.CvResult`: ``oof_log`` in ``log1p(price)``; ``models``
        are dicts ``{"booster", "bin_log_prices"}`` (picklable) for :func:`predict_lightgbm_dist`.

    Raises:
        ValueError: on length mismatch, non-finite or non-positive prices, or fewer than 2 folds.
    """
    import lightgbm as lgb

    y_log1p = np.asarray(y_log1p, dtype=np.float64)
    folds = np.asarray(folds)
    if not (len(X) == len(y_log1p) == len(folds)):
        raise ValueError(f"train_lightgbm_dist_cv: length mismatch {len(X)}, {len(y_log1p)}, {len(folds)}")
    price = np.expm1(y_log1p)
    if not (np.isfinite(price).all() and (price > 0).all()):
        bad = np.flatnonzero(~(np.isfinite(price) & (price > 0)))
        raise ValueError(f"train_lightgbm_dist_cv: prices must be finite and > 0 (rows {bad[:5].tolist()})")
    uniq = np.unique(folds)
    if len(uniq) < 2:
        raise ValueError(f"train_lightgbm_dist_cv: needs >= 2 folds, got {uniq.tolist()}")
    t0 = time.perf_counter()
    X = quantity_blind(X)
    categorical = [c for c in (categorical or []) if c in X.columns]
    y = np.log(price)
    oof = np.zeros(len(y))
    workers, threads = training_slots(num_threads, len(uniq))

    def train_fold(f) -> tuple:
        tr_all = np.flatnonzero(folds != f)
        edges, labels = price_bins(y[tr_all], n_bins)
        K = len(edges) - 1
        per_bin = bin_log_prices(y[tr_all], labels)
        inner = inner_split(len(tr_all), inner_valid_fraction, seed + int(f))
        p = {**DIST_PARAMS, **(params or {}), "num_class": K, "seed": seed, "num_threads": threads}
        dtr = lgb.Dataset(
            X.iloc[tr_all[~inner]], labels[~inner], categorical_feature=categorical or "auto", free_raw_data=False
        )
        des = lgb.Dataset(X.iloc[tr_all[inner]], labels[inner], reference=dtr)
        booster = lgb.train(
            p,
            dtr,
            num_boost_round=num_boost_round,
            valid_sets=[des],
            callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
        )
        return booster, per_bin, tr_all, K

    with ThreadPoolExecutor(max_workers=workers) as pool:  # folds side by side (training_slots)
        trained = list(pool.map(train_fold, uniq))
    models, iters, scores = [], [], []
    for f, (booster, per_bin, tr_all, K) in zip(uniq, trained):
        va = folds == f
        grid = np.linspace(y[tr_all].min(), y[tr_all].max(), GRID_POINTS)
        loss = bin_loss_matrix(per_bin, grid)
        model = {"booster": booster, "bin_log_prices": per_bin}
        oof[va] = expected_smape_decision(booster.predict(X[va], num_iteration=booster.best_iteration), loss, grid)
        models.append(model)
        iters.append(int(booster.best_iteration))
        scores.append(smape(price[va], np.exp(oof[va])))
        if log:
            log(
                f"lightgbm_distributional fold {f}: {K} bins, best_iter={booster.best_iteration} smape={scores[-1]:.2f}"
            )
    return CvResult(np.log1p(np.exp(oof)), models, iters, scores, time.perf_counter() - t0)


def predict_lightgbm_dist(models: list[dict], X: pd.DataFrame) -> np.ndarray:
    """Expected-SMAPE decision averaged over the fold models: (n,) float64 ``log1p(price)``.
    ``X`` has the training columns (``model_input``); :func:`quantity_blind` drops the same ones.

    The fold models' expected-SMAPE curves over one grid (spanning every fold's training prices) are
    summed, then minimised: the decision for the averaged posterior, not an average of decisions.

    Raises:
        ValueError: if ``models`` is empty.
    """
    if not models:
        raise ValueError("predict_lightgbm_dist: no models")
    X = quantity_blind(X)
    lo = min(m["bin_log_prices"][0][0] for m in models)
    hi = max(m["bin_log_prices"][-1][-1] for m in models)
    grid = np.linspace(lo, hi, GRID_POINTS)
    total = np.zeros((len(X), len(grid)))
    for m in models:
        b = m["booster"]
        total += b.predict(X, num_iteration=b.best_iteration) @ bin_loss_matrix(m["bin_log_prices"], grid).T
    return np.log1p(np.exp(grid[np.argmin(total, axis=1)]))
