"""Cross-validation folds, the LightGBM and TF-IDF + ridge price models, and the OOF blend (pure
functions, no Dagster)."""

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pricing_assets.lib.metrics import smape

#: LightGBM defaults, chosen by 5-fold CV on the bundled sample (benchmarks/bench_models.py), not tuned
#: per run. Regression on log1p(price): SMAPE is close to an L1 loss in log space.
#: Objective chosen on the 5 grouped folds of the 7.2k labeled rows (OOF SMAPE, inner early
#: stopping, otherwise these params): huber alpha=1.0 57.02, l2 57.28, l1 56.70, l1 with
#: feature_fraction 0.4 56.72, huber alpha=0.3 56.39 -> robust losses win consistently; huber 0.3
#: (L1 beyond 0.3 in log price, i.e. ~35 % relative error) kept.
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
# (0.5 vs 1 USD is 0.29 apart in log1p, 0.69 in log) and under-weights their relative errors, the
# largest share of the SMAPE (items under 5 USD: ~87 SMAPE). On the sample's 5 grouped folds
# (3 seeds each): log1p 55.11 -> log 55.03 mean OOF SMAPE, same features. The API stays in log1p:
# the transform is internal to :func:`train_lightgbm_cv` / :func:`predict_lightgbm`.


def _to_log_price(y_log1p: np.ndarray) -> np.ndarray:
    return np.log(np.expm1(y_log1p))


def _to_log1p(log_price: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(log_price))


def _checked_log1p_prices(y_log, caller: str) -> np.ndarray:
    """``y_log`` as (n,) float64, or ValueError naming the first rows whose price is not finite and > 0."""
    y_log = np.asarray(y_log, dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(y_log) & (y_log > 0)))
    if bad.size:
        raise ValueError(f"{caller}: prices must be > 0 and finite (log1p(price) > 0); rows {bad[:5].tolist()}")
    return y_log


def inner_split(n: int, fraction: float, seed: int) -> np.ndarray:
    """(n,) bool mask of the early-stopping rows inside a training set of n rows: a seeded random
    ``fraction`` (at least 1 row). Shared by every K-fold trainer so that the held-out fold never
    chooses an iteration count or epoch."""
    m = np.zeros(n, dtype=bool)
    m[np.random.default_rng(seed).permutation(n)[: max(1, round(n * fraction))]] = True
    return m


#: Cross-validation defaults of every training asset (``CrossValidationResource``) and benchmark.
DEFAULT_N_FOLDS = 5
DEFAULT_SEED = 42


def assign_folds(sample_ids: pd.Series, groups: pd.Series, n_splits: int = DEFAULT_N_FOLDS, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Deterministic grouped K-fold assignment (scikit-learn ``GroupKFold`` with shuffling).

    Rows sharing a group (e.g. the same image link: product variants) land in the same fold, so
    neither kNN features nor models see a near-copy of a validation row. The result depends only on
    the set of (sample_id, group) pairs, not on row order.

    Args:
        sample_ids: (n,) str ids.
        groups: (n,) group labels (str); missing values become the row's own sample_id.
        n_splits: K.
        seed: shuffling seed.

    Returns:
        (n,) int64 fold ids in ``0..K-1``, aligned with the input order.

    Raises:
        ValueError: if there are fewer rows than folds.
    """
    from sklearn.model_selection import GroupKFold

    n = len(sample_ids)
    if n < n_splits:
        raise ValueError(f"assign_folds: {n} labeled rows < {n_splits} folds")
    ids = pd.Series(sample_ids, dtype=str).reset_index(drop=True)
    grp = pd.Series(groups).reset_index(drop=True).astype(object)
    grp = grp.where(grp.notna() & (grp.astype(str).str.len() > 0), ids).astype(str)
    order = np.argsort(ids.to_numpy(), kind="stable")
    folds_sorted = np.empty(n, dtype=np.int64)
    splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for f, (_, val) in enumerate(splitter.split(np.zeros(n), groups=grp.to_numpy()[order])):
        folds_sorted[val] = f
    folds = np.empty(n, dtype=np.int64)
    folds[order] = folds_sorted
    return folds


@dataclass
class CvResult:
    """Out-of-fold result of a K-fold model.

    Attributes:
        oof_log: (n,) float64 OOF predictions of log1p(price) for the training rows.
        models: one fitted model per fold (predict by averaging them).
        best_iterations: per-fold early-stopping iteration (LightGBM) or epoch (MLP).
        fold_smape: per-fold SMAPE (percent) on price scale.
        seconds: wall time of the whole CV.
    """

    oof_log: np.ndarray
    models: list
    best_iterations: list[int] = field(default_factory=list)
    fold_smape: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def oof_smape(self, y_log: np.ndarray) -> float:
        """OOF SMAPE in percent against true ``log1p(price)`` (n,)."""
        return smape(np.expm1(y_log), np.expm1(self.oof_log))


def train_lightgbm_cv(
    X: pd.DataFrame,
    y_log: np.ndarray,
    folds: np.ndarray,
    params: dict | None = None,
    num_boost_round: int = 3000,
    early_stopping_rounds: int = 150,
    seed: int = 42,
    num_threads: int = 0,
    categorical: list[str] | None = None,
    log=None,
    inner_valid_fraction: float = 0.1,
    n_bags: int = 1,
) -> CvResult:
    """K-fold LightGBM price regression with early stopping on an inner split of the training folds.

    The boosters regress log price (see the note above :func:`_to_log_price`); ``y_log`` in and ``oof_log`` out
    are ``log1p(price)``, as for every model of the pipeline.

    Args:
        X: (n, p) features; float columns, plus ``categorical`` columns as pandas ``category``.
        y_log: (n,) float64 ``log1p(price USD)``.
        folds: (n,) int fold ids (from :func:`assign_folds`).
        params: LightGBM params merged over :data:`LGBM_PARAMS`.
        num_boost_round / early_stopping_rounds: boosting budget.
        seed: LightGBM seed (with ``deterministic=True`` the same inputs give the same model).
        num_threads: 0 = LightGBM default (all cores).
        log: optional ``callable(str)`` for progress lines.
        inner_valid_fraction: share of the training folds (seeded random rows) held back for early
            stopping, so the held-out fold never chooses the iteration count and OOF SMAPE stays an
            honest estimate; 0 = stop on the held-out fold itself (optimistic, for comparison only).
        n_bags: boosters per fold, bag b with seed ``seed + 1000 b`` (LightGBM row/feature sampling
            and the inner split), predictions averaged. Seed bagging reduces variance: on the sample,
            single seeds 42 / 7 / 123 scored 54.79 / 54.99 / 55.09 OOF SMAPE, their 3-bag 54.70
            (``bench_models.py --seed-spread``).

    Returns:
        :class:`CvResult` with ``models`` = list of ``lightgbm.Booster`` (``n_bags`` per fold,
        fold-major); ``best_iterations`` one per booster.

    Raises:
        ValueError: if a price is not finite and > 0 (names the rows).
    """
    import lightgbm as lgb

    t0 = time.perf_counter()
    p = {**LGBM_PARAMS, **(params or {}), "seed": seed, "num_threads": num_threads}
    oof = np.zeros(len(X), dtype=np.float64)
    y_log = _checked_log1p_prices(y_log, "train_lightgbm_cv")
    if n_bags < 1:
        raise ValueError(f"train_lightgbm_cv: n_bags must be >= 1, got {n_bags}")
    target = _to_log_price(y_log)
    models, iters, fold_scores = [], [], []
    for f in np.unique(folds):
        va = folds == f
        pred = np.zeros(int(va.sum()))
        for b in range(n_bags):
            bag_seed = seed + 1000 * b
            tr, es = folds != f, va
            if inner_valid_fraction > 0:
                tr_idx = np.flatnonzero(tr)
                inner = tr_idx[inner_split(len(tr_idx), inner_valid_fraction, bag_seed + int(f))]
                es = np.zeros(len(X), dtype=bool)
                es[inner] = True
                tr = tr & ~es
            dtr = lgb.Dataset(X[tr], target[tr], categorical_feature=categorical or "auto", free_raw_data=False)
            dva = lgb.Dataset(X[es], target[es], reference=dtr)
            booster = lgb.train(
                {**p, "seed": bag_seed},
                dtr,
                num_boost_round=num_boost_round,
                valid_sets=[dva],
                callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
            )
            pred += booster.predict(X[va], num_iteration=booster.best_iteration) / n_bags
            models.append(booster)
            iters.append(int(booster.best_iteration))
        oof[va] = _to_log1p(pred)
        fold_scores.append(smape(np.expm1(y_log[va]), np.expm1(oof[va])))
        if log:
            log(f"lightgbm fold {f}: best_iter={iters[-n_bags:]} smape={fold_scores[-1]:.2f}")
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
    y_log: np.ndarray,
    best_iterations: list[int],
    params: dict | None = None,
    seed: int = 42,
    num_threads: int = 0,
    categorical: list[str] | None = None,
    n_bags: int = 1,
    rounds_factor: float = REFIT_ROUNDS_FACTOR,
) -> list:
    """Final LightGBM boosters refit on *all* labeled rows, for rows without a price.

    The K-fold boosters of :func:`train_lightgbm_cv` give honest OOF predictions and the number of
    boosting rounds; each saw only (K-1)/K of the rows. Refitting on every labeled row with
    ``round(rounds_factor * mean(best_iterations))`` rounds (no early stopping: there is no held-out
    row left) uses the remaining rows too. Measured on the sample by ``bench_models.py --refit``
    (each of the 5 grouped folds held out in turn as "new products", 4-fold CV on the rest; measured
    while ``feature_matrix`` still carried embedding PCA columns): fold-average 54.59 / 54.60 vs refit
    54.46 / 54.42 SMAPE on the held-out rows for seeds 42 / 7, refit better on 9 of the 10 fold x seed
    pairs.

    Args:
        X: (n, p) features of the labeled rows (as for :func:`train_lightgbm_cv`).
        y_log: (n,) float64 ``log1p(price USD)``.
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

    y_log = _checked_log1p_prices(y_log, "refit_lightgbm")
    if not len(best_iterations):
        raise ValueError("refit_lightgbm: no CV best_iterations to size the refit")
    if n_bags < 1:
        raise ValueError(f"refit_lightgbm: n_bags must be >= 1, got {n_bags}")
    rounds = max(1, round(rounds_factor * float(np.mean(best_iterations))))
    p = {**LGBM_PARAMS, **(params or {}), "num_threads": num_threads}
    data = lgb.Dataset(X, _to_log_price(y_log), categorical_feature=categorical or "auto", free_raw_data=False)
    return [lgb.train({**p, "seed": seed + 1000 * b}, data, num_boost_round=rounds) for b in range(n_bags)]


def model_input(fm: pd.DataFrame) -> pd.DataFrame:
    """Feature columns of the ``feature_matrix`` (drops ids/labels; ``category`` as pandas category)."""
    X = fm.drop(columns=["sample_id", "fold", "price"])
    if "category" in X:
        X["category"] = X["category"].astype("category")
    return X


def predictions_frame(fm: pd.DataFrame, oof_log: np.ndarray, test_log: np.ndarray) -> pd.DataFrame:
    """The ``ModelPredictions`` frame: OOF for labeled rows, ``test_log`` for unlabeled rows.

    Args:
        fm: feature matrix (sample_id, fold, price, ...), n rows.
        oof_log: (n_labeled,) OOF ``log1p`` predictions in the order of labeled rows of ``fm``.
        test_log: (n_unlabeled,) ``log1p`` predictions for the unlabeled rows.

    Returns:
        DataFrame sample_id, fold, price, pred_price (USD, clipped to >= 0.01).
    """
    lab = (fm["fold"] >= 0).to_numpy()
    pred = np.empty(len(fm), dtype=np.float64)
    pred[lab] = oof_log
    pred[~lab] = test_log
    return pd.DataFrame(
        {
            "sample_id": fm["sample_id"].to_numpy(),
            "fold": fm["fold"].to_numpy(),
            "price": fm["price"].to_numpy(),
            "pred_price": np.clip(np.expm1(pred), 0.01, None),
        }
    )


class BlendFitError(RuntimeError):
    """SLSQP could not fit the blend weights and its result is worse than equal weights.

    Attributes:
        message: the optimizer's own message (``OptimizeResult.message``).
        status: the optimizer's exit status (``OptimizeResult.status``).
        loss_start: OOF SMAPE (percent) of equal weights.
        loss_end: OOF SMAPE (percent) of the optimizer's last point (projected onto the simplex).
    """

    def __init__(self, text: str, *, message: str, status: int, loss_start: float, loss_end: float) -> None:
        super().__init__(text)
        self.message = message
        self.status = status
        self.loss_start = loss_start
        self.loss_end = loss_end


def fit_blend_weights(oof_prices: np.ndarray, y_price: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Convex blend weights minimising OOF SMAPE of a weighted geometric mean of model predictions.

    The blend is ``exp(sum_j w_j * log(p_j))`` with ``w >= 0, sum w = 1`` (geometric mean suits a
    relative-error metric). Fitted with SciPy SLSQP from equal weights.

    When SLSQP reports failure (``success`` False: e.g. "Iteration limit reached", "Positive
    directional derivative for linesearch", which SMAPE's kinks can provoke near an optimum) its
    last point, clipped and renormalised onto the simplex, is still accepted when its OOF SMAPE is
    not worse than equal weights' (the start point): the blend is then at least as good as the
    plain average and the weights are a valid convex combination. Otherwise the fit has gone wrong
    and :class:`BlendFitError` is raised.

    Args:
        oof_prices: (n, m) OOF predicted prices (USD) of m models; every value finite.
        y_price: (n,) true prices (USD); every value finite.
        names: optional m model names, used in error messages (default ``column <j>``).

    Returns:
        (m,) float64 weights, >= 0, summing to 1.

    Raises:
        ValueError: shapes do not match (n rows, m names), n == 0 or m == 0, or a value is not
            finite (the message names the model column and the first bad rows).
        BlendFitError: SLSQP failed and its point is worse than equal weights (message names
            the optimizer's message and both losses).
    """
    from scipy.optimize import minimize

    prices = np.asarray(oof_prices, dtype=np.float64)
    y = np.asarray(y_price, dtype=np.float64)
    if prices.ndim != 2 or prices.shape[0] != y.shape[0] or y.ndim != 1:
        raise ValueError(f"fit_blend_weights: oof_prices must be (n, m) and y_price (n,), got {prices.shape} and {y.shape}")
    n, m = prices.shape
    if n == 0 or m == 0:
        raise ValueError(f"fit_blend_weights: needs at least one row and one model, got {prices.shape}")
    cols = list(names) if names is not None else [f"column {j}" for j in range(m)]
    if len(cols) != m:
        raise ValueError(f"fit_blend_weights: {len(cols)} names for {m} model columns")
    for j in range(m):
        bad = np.flatnonzero(~np.isfinite(prices[:, j]))
        if bad.size:
            raise ValueError(f"fit_blend_weights: model {cols[j]!r} has {bad.size} non-finite OOF prediction(s), "
                             f"first rows {bad[:5].tolist()}")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(f"fit_blend_weights: y_price has {bad.size} non-finite value(s), first rows {bad[:5].tolist()}")

    logs = np.log(np.clip(prices, 1e-6, None))
    if m == 1:
        return np.ones(1)

    def loss(w):
        return smape(y, np.exp(logs @ w))

    w0 = np.full(m, 1.0 / m)
    res = minimize(
        loss,
        w0,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
    )
    x = np.asarray(res.x, dtype=np.float64)
    w = np.clip(x, 0, None) if np.isfinite(x).all() else np.full(m, np.nan)
    w = w / w.sum() if np.isfinite(w).all() and w.sum() > 0 else np.full(m, np.nan)
    finite = bool(np.isfinite(w).all())
    if not res.success or not finite:
        loss_start = loss(w0)
        loss_end = loss(w) if finite else float("inf")
        if not loss_end <= loss_start:
            raise BlendFitError(
                f"fit_blend_weights: SLSQP failed ({res.message!r}, status {res.status}) on {n} rows x {m} models "
                f"{cols}; its point has OOF SMAPE {loss_end:.4f} vs {loss_start:.4f} for equal weights",
                message=str(res.message), status=int(res.status), loss_start=float(loss_start), loss_end=float(loss_end),
            )
    return w


def align_predictions(preds: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, np.ndarray]:
    """The blend's input: the models' ``ModelPredictions`` frames aligned on the first one's rows.

    Args:
        preds: model name -> frame with ``sample_id``, ``fold``, ``price``, ``pred_price`` (USD);
            taken in sorted-name order.

    Returns:
        ``(base, mats)``: base (n rows: ``sample_id``, ``fold``, ``price``) and (n, m) float64 predicted
        prices, column j = ``sorted(preds)[j]``.

    Raises:
        ValueError: when a model lacks a row of the first one (names the model and five ids).
    """
    names = sorted(preds)
    base = preds[names[0]][["sample_id", "fold", "price"]].reset_index(drop=True)
    cols = []
    for n in names:
        col = preds[n].set_index("sample_id")["pred_price"].reindex(base["sample_id"])
        if col.isna().any():
            raise ValueError(f"align_predictions: {n} lacks sample_ids {col[col.isna()].index[:5].tolist()}")
        cols.append(col.to_numpy(dtype=np.float64))
    return base, np.column_stack(cols)


def apply_blend(prices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted geometric mean of (n, m) predicted prices with (m,) weights: (n,) USD."""
    return np.exp(np.log(np.clip(prices, 1e-6, None)) @ weights)


def product_text(items: pd.DataFrame) -> pd.Series:
    """One text per product for bag-of-words models: item name, bullets, description and the
    ``Value``/``Unit`` line, newline-joined (the parsed parts of ``catalog_content``).

    Args:
        items: frame with ``item_name`` and optionally ``bullets`` (str or list of str),
            ``description``, ``ipq_value``, ``ipq_unit``, ``ocr_text``.

    Returns:
        (n,) str Series aligned with ``items`` (index reset).

    Raises:
        KeyError: if ``item_name`` is missing.
    """
    if "item_name" not in items:
        raise KeyError("product_text: items lack column 'item_name'")

    def _s(v) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if isinstance(v, (list, tuple, np.ndarray)):
            return "\n".join(str(x) for x in v)
        return str(v)

    cols = [c for c in ("item_name", "bullets", "description") if c in items]
    parts = [items[c].map(_s) for c in cols]
    if "ipq_value" in items and "ipq_unit" in items:
        parts.append("value " + items["ipq_value"].map(_s) + " " + items["ipq_unit"].map(_s))
    text = parts[0]
    for p in parts[1:]:
        text = text + "\n" + p
    return text.reset_index(drop=True)


#: TF-IDF + ridge settings: word 1-2-grams and char 2-5-grams (within word boundaries), sublinear tf.
#: Chosen on the 5 grouped folds of the bundled 7.2k labeled rows (OOF SMAPE, ``bench_models.py
#: --ridge-grid``): word+char alpha 1/2/4/8 -> 61.3/61.5/62.2/63.5; word only alpha 1 -> 61.8;
#: the raw-text word baseline scores 61.9.
TFIDF_RIDGE_PARAMS: dict = {"alpha": 1.0, "word_ngrams": (1, 2), "char_ngrams": (2, 5), "max_features": 200_000, "min_df": 2}


def tfidf_vectorizer(params: dict | None = None):
    """Unfitted word + char TF-IDF ``FeatureUnion`` (scikit-learn), params over :data:`TFIDF_RIDGE_PARAMS`.

    ``fit_transform(texts) -> (n, <= 2 * max_features) float64 sparse``, rows L2-normalised per part.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    p = {**TFIDF_RIDGE_PARAMS, **(params or {})}
    parts = [("word", TfidfVectorizer(ngram_range=p["word_ngrams"], min_df=p["min_df"], max_features=p["max_features"], sublinear_tf=True, strip_accents="unicode"))]
    if p["char_ngrams"]:
        parts.append(("char", TfidfVectorizer(analyzer="char_wb", ngram_range=p["char_ngrams"], min_df=p["min_df"], max_features=p["max_features"], sublinear_tf=True)))
    return FeatureUnion(parts)


def train_tfidf_ridge_cv(
    texts: pd.Series,
    y_log: np.ndarray,
    folds: np.ndarray,
    params: dict | None = None,
    unlabeled_texts: pd.Series | None = None,
    log=None,
) -> CvResult:
    """K-fold TF-IDF + ridge on ``log1p(price)``.

    The TF-IDF vocabulary / IDF weights are fitted once on every text given (labeled and
    ``unlabeled_texts``): unsupervised, no price enters, so it is not a leak (as with the embedding
    PCA); only the ridge is refitted per fold, on the training folds.

    Args:
        texts: (n,) str product texts of the labeled rows (:func:`product_text`).
        y_log: (n,) float64 ``log1p(price USD)``.
        folds: (n,) int fold ids (>= 2 distinct).
        params: overrides of :data:`TFIDF_RIDGE_PARAMS`.
        unlabeled_texts: optional (m,) str texts to include in the vocabulary fit.

    Returns:
        :class:`CvResult` whose ``models`` are fitted sklearn pipelines (vectoriser -> ridge), one
        per fold; deterministic (no randomness).

    Raises:
        ValueError: on length mismatch or fewer than 2 folds.
    """
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    texts = pd.Series(texts).fillna("").astype(str).reset_index(drop=True)
    y_log = np.asarray(y_log, dtype=np.float64)
    folds = np.asarray(folds)
    if not (len(texts) == len(y_log) == len(folds)):
        raise ValueError(f"train_tfidf_ridge_cv: length mismatch {len(texts)}, {len(y_log)}, {len(folds)}")
    uniq = np.unique(folds)
    if len(uniq) < 2:
        raise ValueError(f"train_tfidf_ridge_cv: needs >= 2 folds, got {uniq.tolist()}")
    t0 = time.perf_counter()
    p = {**TFIDF_RIDGE_PARAMS, **(params or {})}
    corpus = texts if unlabeled_texts is None else pd.concat([texts, pd.Series(unlabeled_texts).fillna("").astype(str)], ignore_index=True)
    vec = tfidf_vectorizer(p).fit(corpus)
    X = vec.transform(texts)
    oof = np.zeros(len(y_log))
    models, scores = [], []
    for f in uniq:
        tr, va = folds != f, folds == f
        ridge = Ridge(alpha=p["alpha"]).fit(X[tr], y_log[tr])
        oof[va] = ridge.predict(X[va])
        models.append(make_pipeline(vec, ridge))
        scores.append(smape(np.expm1(y_log[va]), np.clip(np.expm1(oof[va]), 0.01, None)))
        if log:
            log(f"tfidf_ridge fold {f}: smape={scores[-1]:.2f}")
    return CvResult(oof, models, [], scores, time.perf_counter() - t0)


def predict_tfidf_ridge(models: list, texts: pd.Series) -> np.ndarray:
    """Average of the fold pipelines' ``log1p(price)`` predictions for (n,) str texts: (n,) float64.

    Pipelines sharing one fitted vectoriser (as :func:`train_tfidf_ridge_cv` makes them) transform
    the texts once.

    Raises:
        ValueError: if ``models`` is empty.
    """
    if not models:
        raise ValueError("predict_tfidf_ridge: no models")
    texts = pd.Series(texts).fillna("").astype(str)
    vec = models[0][0]
    if all(m[0] is vec for m in models):
        X = vec.transform(texts)
        return np.mean([m[-1].predict(X) for m in models], axis=0)
    return np.mean([m.predict(texts) for m in models], axis=0)


def tfidf_ridge_every_row(
    texts: pd.Series, log_price: np.ndarray, folds: np.ndarray, params: dict | None = None, log=None
) -> tuple[np.ndarray, CvResult]:
    """TF-IDF + ridge predictions for every row in which no row sees its own price.

    Labeled rows (``fold >= 0`` and a finite ``log_price``) get their out-of-fold prediction from
    :func:`train_tfidf_ridge_cv` (the ridge of the other folds); unlabeled rows get the average of the
    fold ridges (:func:`predict_tfidf_ridge`), exactly as the kNN features and target encodings treat
    them. The vocabulary is fitted on the labeled rows' texts only, so an unlabeled row gets what a
    new product gets from the stored fold models (no transductive step).

    Two users: the ``tfidf_ridge`` model asset (full product text) and ``feature_matrix``, which stacks
    it on the item names alone (``stack_title_ridge``): the full text dilutes the title with bullets
    many products share. On the sample's 5 grouped folds the title ridge alone scores 61.2 OOF SMAPE
    (full text 61.8) and adding it to the feature matrix lowered single-seed LightGBM
    54.79 / 54.99 / 55.09 -> 54.47 / 54.53 / 54.62 (seeds 42 / 7 / 123, ``bench_models.py --seed-spread``).

    Args:
        texts: (n,) str texts (NaN -> "").
        log_price: (n,) float64 ``log1p(price USD)``, NaN for unlabeled rows.
        folds: (n,) int fold ids, -1 for unlabeled rows; >= 2 distinct folds among labeled rows.
        params: overrides of :data:`TFIDF_RIDGE_PARAMS`.
        log: optional callable taking a progress line (per-fold SMAPE).

    Returns:
        ``(pred, cv)``: pred (n,) float64 predicted ``log1p(price USD)`` in the input order; cv the
        :class:`CvResult` of the labeled rows (fold pipelines, per-fold SMAPE).

    Raises:
        ValueError: on length mismatch or fewer than 2 labeled folds (from :func:`train_tfidf_ridge_cv`).
    """
    texts = pd.Series(texts).fillna("").astype(str).reset_index(drop=True)
    log_price = np.asarray(log_price, dtype=np.float64)
    folds = np.asarray(folds)
    if not (len(texts) == len(log_price) == len(folds)):
        raise ValueError(f"tfidf_ridge_every_row: length mismatch {len(texts)}, {len(log_price)}, {len(folds)}")
    lab = (folds >= 0) & np.isfinite(log_price)
    cv = train_tfidf_ridge_cv(texts[lab].reset_index(drop=True), log_price[lab], folds[lab], params=params, log=log)
    out = np.empty(len(texts), dtype=np.float64)
    out[lab] = cv.oof_log
    if (~lab).any():
        out[~lab] = predict_tfidf_ridge(cv.models, texts[~lab])
    return out, cv
