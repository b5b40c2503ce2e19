"""The LightGBM price regression: K-fold CV (:func:`train_lightgbm_cv`), the refit on all labeled rows
(:func:`refit_lightgbm`), prediction (:func:`predict_lightgbm`) and its input columns
(:func:`model_input`). Pure functions, no Dagster; lightgbm is imported inside them."""

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from pricing_assets.lib.models.cross_validation import DEFAULT_SEED, CvResult, inner_split
from pricing_assets.lib.models.metrics import smape
from pricing_assets.lib.runtime.cpu import default_threads

#: LightGBM defaults, chosen by 5-fold CV on the bundled sample (benchmarks/bench_models.py), not tuned
#: per run. Regression on log price: SMAPE is close to an L1 loss in log space. Objective: huber with
#: alpha 0.3 (L1 beyond 0.3 in log price, i.e. ~35 % relative error); robust losses gave a lower OOF
#: SMAPE than l2 and huber 0.3 the lowest of those tried (docs/experiments.md, "LightGBM objective").
LGBM_PARAMS: dict = {
    "objective": "huber",
    "alpha": 0.3,
    "learning_rate": 0.03,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
}


# LightGBM regresses the natural log of the price. SMAPE depends only on log(F / A)
# (``2 tanh(|log F - log A| / 2)``), so log is the metric's own scale; log1p compresses cheap items
# (0.5 vs 1 USD is 0.29 apart in log1p, 0.69 in log) and under-weights their relative errors, where
# cheap items carry the largest share of the SMAPE; the log target lowers the OOF SMAPE
# (docs/experiments.md, "LightGBM on log price instead of log1p"). The API stays in log1p: the
# transform is internal to :func:`train_lightgbm_cv` / :func:`predict_lightgbm`.


#: At most this many boosters train at once (:func:`training_slots`): each holds its own copy of its
#: training rows, so the cap bounds memory on many-core nodes.
MAX_PARALLEL_TRAININGS = 4


def training_slots(num_threads: int, tasks: int) -> tuple[int, int]:
    """How to spread ``tasks`` independent booster trainings (folds x bags) over the cores:
    ``(concurrent trainings, threads each)``.

    The trainings run side by side with one thread each rather than one after the other on every
    core: on the sample's few thousand rows a booster trains as fast on one thread as on two, so two
    side by side double the throughput, and a single-threaded training does not stall when another
    process takes a core (OpenMP threads waiting on each other slowed a 2-thread training 8x beside
    a busy process; docs/experiments.md, "LightGBM trainings side by side"). LightGBM releases the GIL
    in its C calls (ctypes), so Python threads suffice.

    Args:
        num_threads: the cores to use; 0 = :func:`~pricing_assets.lib.runtime.cpu.default_threads`.
        tasks: number of trainings (>= 1).

    Returns:
        ``(workers, threads)`` with ``1 <= workers <= min(tasks, MAX_PARALLEL_TRAININGS)`` and
        ``workers * threads <= max(num_threads, 1)`` cores.
    """
    total = num_threads if num_threads > 0 else default_threads()
    workers = max(1, min(total, tasks, MAX_PARALLEL_TRAININGS))
    return workers, max(1, total // workers)


def _to_log_price(y_log1p: np.ndarray) -> np.ndarray:
    return np.log(np.expm1(y_log1p))


def _to_log1p(log_price: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(log_price))


def _checked_log1p_prices(y_log1p, caller: str) -> np.ndarray:
    """``y_log1p`` as (n,) float64, or ValueError naming the first rows whose price is not finite and > 0."""
    y_log1p = np.asarray(y_log1p, dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(y_log1p) & (y_log1p > 0)))
    if bad.size:
        raise ValueError(f"{caller}: prices must be > 0 and finite (log1p(price) > 0); rows {bad[:5].tolist()}")
    return y_log1p


def monotone_constraints(columns) -> list[int]:
    """LightGBM ``monotone_constraints`` for feature ``columns``: +1 (non-decreasing) for every column
    that grows with the item pack quantity (``lib.features.listing.IPQ_INCREASING_FEATURES`` and the kNN
    unit-price transfers, ``lib.retrieval.knn.is_ipq_increasing_column``), 0 for the rest.

    With the ``basic`` method LightGBM enforces the constraint on every tree, so the sum is monotone:
    the same listing with a larger ``Value`` is never priced lower (tested in
    ``pricing_tests/model/test_behaviour.py``).
    """
    from pricing_assets.lib.features.listing import IPQ_INCREASING_FEATURES
    from pricing_assets.lib.retrieval.knn import is_ipq_increasing_column

    return [int(c in IPQ_INCREASING_FEATURES or is_ipq_increasing_column(str(c))) for c in columns]


def _constrained(params: dict, X: pd.DataFrame) -> dict:
    """``params`` with the pack-quantity constraints of :func:`monotone_constraints` for ``X``."""
    mono = monotone_constraints(X.columns)
    if not any(mono):
        return params
    return {**params, "monotone_constraints": mono, "monotone_constraints_method": "basic"}


def train_lightgbm_cv(
    X: pd.DataFrame,
    y_log1p: np.ndarray,
    folds: np.ndarray,
    params: dict | None = None,
    num_boost_round: int = 3000,
    early_stopping_rounds: int = 150,
    seed: int = DEFAULT_SEED,
    num_threads: int = 0,
    categorical: list[str] | None = None,
    log=None,
    inner_valid_fraction: float = 0.1,
    n_bags: int = 1,
) -> CvResult:
    """K-fold LightGBM price regression with early stopping on an inner split of the training folds.

    The boosters regress log price (see the note above :func:`_to_log_price`); ``y_log1p`` in and ``oof_log`` out
    are ``log1p(price)``, as for every model of the pipeline.

    Args:
        X: (n, p) features; float columns, plus ``categorical`` columns as pandas ``category``.
        y_log1p: (n,) float64 ``log1p(price USD)``.
        folds: (n,) int fold ids (from :func:`assign_folds`).
        params: LightGBM params merged over :data:`LGBM_PARAMS`.
        num_boost_round / early_stopping_rounds: boosting budget.
        seed: LightGBM seed (with ``deterministic=True`` the same inputs give the same model).
        num_threads: cores to use, 0 = all this process may run on; the fold x bag trainings share
            them (:func:`training_slots`).
        log: optional ``callable(str)`` for progress lines.
        inner_valid_fraction: share of the training folds (seeded random rows) held back for early
            stopping, so the held-out fold never chooses the iteration count and OOF SMAPE stays an
            honest estimate; 0 = stop on the held-out fold itself (optimistic, for comparison only).
        n_bags: boosters per fold, bag b with seed ``seed + 1000 b`` (LightGBM row/feature sampling
            and the inner split), predictions averaged. Seed bagging reduces variance: a 3-bag scores
            below each of its single seeds (docs/experiments.md, "Seed bagging of LightGBM").

    Returns:
        :class:`CvResult` with ``models`` = list of ``lightgbm.Booster`` (``n_bags`` per fold,
        fold-major); ``best_iterations`` one per booster.

    Raises:
        ValueError: if a price is not finite and > 0 (names the rows).
    """
    import lightgbm as lgb

    t0 = time.perf_counter()
    p = _constrained({**LGBM_PARAMS, **(params or {}), "seed": seed}, X)
    oof = np.zeros(len(X), dtype=np.float64)
    y_log1p = _checked_log1p_prices(y_log1p, "train_lightgbm_cv")
    if n_bags < 1:
        raise ValueError(f"train_lightgbm_cv: n_bags must be >= 1, got {n_bags}")
    target = _to_log_price(y_log1p)
    fold_ids = list(np.unique(folds))
    workers, threads = training_slots(num_threads, len(fold_ids) * n_bags)

    def train_one(task: tuple) -> object:
        f, b = task
        bag_seed = seed + 1000 * b
        va = folds == f
        tr, es = folds != f, va
        if inner_valid_fraction > 0:
            tr_idx = np.flatnonzero(tr)
            inner = tr_idx[inner_split(len(tr_idx), inner_valid_fraction, bag_seed + int(f))]
            es = np.zeros(len(X), dtype=bool)
            es[inner] = True
            tr = tr & ~es
        dtr = lgb.Dataset(X[tr], target[tr], categorical_feature=categorical or "auto", free_raw_data=False)
        dva = lgb.Dataset(X[es], target[es], reference=dtr)
        return lgb.train(
            {**p, "seed": bag_seed, "num_threads": threads},
            dtr,
            num_boost_round=num_boost_round,
            valid_sets=[dva],
            callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
        )

    tasks = [(f, b) for f in fold_ids for b in range(n_bags)]  # fold-major, as CvResult.models
    with ThreadPoolExecutor(max_workers=workers) as pool:
        models = list(pool.map(train_one, tasks))
    iters, fold_scores = [int(m.best_iteration) for m in models], []
    for i, f in enumerate(fold_ids):
        va = folds == f
        boosters = models[i * n_bags : (i + 1) * n_bags]
        pred = np.mean([m.predict(X[va], num_iteration=m.best_iteration) for m in boosters], axis=0)
        oof[va] = _to_log1p(pred)
        fold_scores.append(smape(np.expm1(y_log1p[va]), np.expm1(oof[va])))
        if log:
            log(f"lightgbm fold {f}: best_iter={iters[i * n_bags : (i + 1) * n_bags]} smape={fold_scores[-1]:.2f}")
    return CvResult(oof, models, iters, fold_scores, time.perf_counter() - t0)


def predict_lightgbm(models: list, X: pd.DataFrame) -> np.ndarray:
    """Average of the boosters' predictions (log price), as ``log1p(price)``: (n,) float64.

    Fold boosters predict with their early-stopping iteration; refit boosters (``best_iteration`` 0)
    with all their trees."""
    return _to_log1p(np.mean([m.predict(X, num_iteration=m.best_iteration) for m in models], axis=0))


#: Boosting rounds of the final refit = this factor x the mean early-stopping iteration of the CV
#: boosters. They trained on 72 % of the labeled rows (4 of 5 folds minus the 10 % inner split); more
#: rows support a few more rounds. 1.1 is the usual heuristic, not tuned.
REFIT_ROUNDS_FACTOR = 1.1


def refit_lightgbm(
    X: pd.DataFrame,
    y_log1p: np.ndarray,
    best_iterations: list[int],
    params: dict | None = None,
    seed: int = DEFAULT_SEED,
    num_threads: int = 0,
    categorical: list[str] | None = None,
    n_bags: int = 1,
    rounds_factor: float = REFIT_ROUNDS_FACTOR,
) -> list:
    """Final LightGBM boosters refit on *all* labeled rows, for rows without a price.

    The K-fold boosters of :func:`train_lightgbm_cv` give honest OOF predictions and the number of
    boosting rounds; each saw only (K-1)/K of the rows. Refitting on every labeled row with
    ``round(rounds_factor * mean(best_iterations))`` rounds (no early stopping: there is no held-out
    row left) uses the remaining rows too: on held-out folds priced as new products the refit beats
    the fold boosters' average (docs/experiments.md, "Refit on all labeled rows vs the fold
    ensemble").

    Args:
        X: (n, p) features of the labeled rows (as for :func:`train_lightgbm_cv`).
        y_log1p: (n,) float64 ``log1p(price USD)``.
        best_iterations: the CV boosters' early-stopping iterations (``CvResult.best_iterations``).
        params / seed / num_threads / categorical: as for :func:`train_lightgbm_cv`.
        n_bags: boosters, bag b with seed ``seed + 1000 b`` (as the CV's bags).
        rounds_factor: see :data:`REFIT_ROUNDS_FACTOR`.

    Returns:
        ``n_bags`` ``lightgbm.Booster`` with ``best_iteration`` 0 (predict with every tree);
        average them with :func:`predict_lightgbm`.

    Raises:
        ValueError: if a price is not finite and > 0 (names the rows), ``best_iterations`` is empty
            or ``n_bags`` < 1.
    """
    import lightgbm as lgb

    y_log1p = _checked_log1p_prices(y_log1p, "refit_lightgbm")
    if not len(best_iterations):
        raise ValueError("refit_lightgbm: no CV best_iterations to size the refit")
    if n_bags < 1:
        raise ValueError(f"refit_lightgbm: n_bags must be >= 1, got {n_bags}")
    rounds = max(1, round(rounds_factor * float(np.mean(best_iterations))))
    p = _constrained({**LGBM_PARAMS, **(params or {})}, X)
    target = _to_log_price(y_log1p)
    workers, threads = training_slots(num_threads, n_bags)

    def train_one(b: int) -> object:
        data = lgb.Dataset(X, target, categorical_feature=categorical or "auto", free_raw_data=False)
        return lgb.train({**p, "seed": seed + 1000 * b, "num_threads": threads}, data, num_boost_round=rounds)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(train_one, range(n_bags)))


def model_input(fm: pd.DataFrame) -> pd.DataFrame:
    """Feature columns of the ``feature_matrix`` (drops ids/labels; ``category`` as pandas category)."""
    X = fm.drop(columns=["sample_id", "fold", "price"])
    if "category" in X:
        X["category"] = X["category"].astype("category")
    return X
