"""The TF-IDF + ridge price model: product text (:func:`product_text`), the vectoriser, K-fold CV on
the labeled rows (:func:`train_tfidf_ridge_cv`: out-of-fold predictions and the fold pipelines) and
prediction for products without a price (:func:`predict_tfidf_ridge`).
Pure functions, no Dagster; scikit-learn is imported inside them."""

import time

import numpy as np
import pandas as pd

from pricing_assets.lib.models.cross_validation import CvResult, require_labeled
from pricing_assets.lib.models.metrics import smape


def product_text(items: pd.DataFrame) -> pd.Series:
    """One text per product for bag-of-words models: item name, bullets, description and the
    ``Unit`` (not the ``Value``: the pack quantity reaches the models only as monotone features),
    newline-joined (the parsed parts of ``catalog_content``).

    Args:
        items: frame with ``item_name`` and optionally ``bullets`` (str or list of str),
            ``description``, ``ipq_unit``.

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
    if "ipq_unit" in items:  # the unit, not the Value: a pack-quantity number here would move the
        # price up or down at random (the ridge is a LightGBM input), see lib.features.listing.IPQ_INCREASING_FEATURES
        parts.append("unit " + items["ipq_unit"].map(_s))
    text = parts[0]
    for p in parts[1:]:
        text = text + "\n" + p
    return text.reset_index(drop=True)


#: TF-IDF + ridge settings: word 1-2-grams and char 2-5-grams (within word boundaries), sublinear tf.
#: Alpha 1 on word + char n-grams: the lowest OOF SMAPE of the alphas tried, and below word n-grams
#: alone (docs/experiments.md, "TF-IDF ridge: word + char n-grams, alpha 1").
#: Solver ``lsqr``: the same ridge solution as scikit-learn's default for sparse input
#: (``sparse_cg``), but its fit time grows about linearly with the rows instead of faster:
#: docs/experiments.md ("Scale: the ridge solver").
TFIDF_RIDGE_PARAMS: dict = {
    "alpha": 1.0,
    "solver": "lsqr",
    "word_ngrams": (1, 2),
    "char_ngrams": (2, 5),
    "max_features": 200_000,
    "min_df": 2,
}


def tfidf_vectorizer(params: dict | None = None):
    """Unfitted word + char TF-IDF ``FeatureUnion`` (scikit-learn), params over :data:`TFIDF_RIDGE_PARAMS`.

    ``fit_transform(texts) -> (n, <= 2 * max_features) float64 sparse``, rows L2-normalised per part.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    p = {**TFIDF_RIDGE_PARAMS, **(params or {})}
    parts = [
        (
            "word",
            TfidfVectorizer(
                ngram_range=p["word_ngrams"],
                min_df=p["min_df"],
                max_features=p["max_features"],
                sublinear_tf=True,
                strip_accents="unicode",
            ),
        )
    ]
    if p["char_ngrams"]:
        parts.append(
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=p["char_ngrams"],
                    min_df=p["min_df"],
                    max_features=p["max_features"],
                    sublinear_tf=True,
                ),
            )
        )
    return FeatureUnion(parts)


def train_tfidf_ridge_cv(
    texts: pd.Series,
    y_log: np.ndarray,
    folds: np.ndarray,
    params: dict | None = None,
    log=None,
) -> CvResult:
    """K-fold TF-IDF + ridge on ``log1p(price)``.

    The TF-IDF vocabulary / IDF weights are fitted once on the labeled texts given (unsupervised, no
    price enters; a new product never shapes the vocabulary it is scored with), in one tokenising pass
    (``fit_transform``); only the ridge is refitted per fold, on the training folds.

    Args:
        texts: (n,) str product texts of the labeled rows (:func:`product_text`; NaN -> "").
        y_log: (n,) float64 ``log1p(price USD)``, finite.
        folds: (n,) int fold ids >= 0 (>= 2 distinct).
        params: overrides of :data:`TFIDF_RIDGE_PARAMS`.
        log: optional callable taking a progress line (per-fold SMAPE).

    Returns:
        :class:`CvResult`: ``oof_log`` (n,) float64 out-of-fold ``log1p(price USD)`` in the input
        order, ``models`` fitted sklearn pipelines (vectoriser -> ridge) one per fold, per-fold
        SMAPE; deterministic (no randomness).

    Raises:
        ValueError: on length mismatch, a row without a finite price or with a fold < 0
            (:func:`~pricing_assets.lib.models.cross_validation.require_labeled`), or fewer than 2 folds.
    """
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    texts = pd.Series(texts).fillna("").astype(str).reset_index(drop=True)
    y_log = np.asarray(y_log, dtype=np.float64)
    folds = np.asarray(folds)
    if not (len(texts) == len(y_log) == len(folds)):
        raise ValueError(f"train_tfidf_ridge_cv: length mismatch {len(texts)}, {len(y_log)}, {len(folds)}")
    require_labeled(y_log, folds, "train_tfidf_ridge_cv")
    uniq = np.unique(folds)
    if len(uniq) < 2:
        raise ValueError(f"train_tfidf_ridge_cv: needs >= 2 folds, got {uniq.tolist()}")
    t0 = time.perf_counter()
    p = {**TFIDF_RIDGE_PARAMS, **(params or {})}
    vec = tfidf_vectorizer(p)
    X = vec.fit_transform(texts).tocsr()
    oof = np.zeros(len(y_log))
    models, scores = [], []
    for f in uniq:
        tr, va = folds != f, folds == f
        ridge = Ridge(alpha=p["alpha"], solver=p["solver"]).fit(X[tr], y_log[tr])
        oof[va] = ridge.predict(X[va])
        models.append(make_pipeline(vec, ridge))
        scores.append(smape(np.expm1(y_log[va]), np.clip(np.expm1(oof[va]), 0.01, None)))
        if log:
            log(f"tfidf_ridge fold {f}: smape={scores[-1]:.2f}")
    return CvResult(oof, models, [], scores, time.perf_counter() - t0)


def _shared_vectorizer_prediction(models: list, texts: pd.Series) -> np.ndarray:
    """Mean ``log1p(price)`` of fold pipelines sharing one fitted vectoriser: (n,) float64, the
    texts transformed once."""
    X = models[0][0].transform(texts)
    return np.mean([m[-1].predict(X) for m in models], axis=0)


def predict_tfidf_ridge(models: list, texts: pd.Series) -> np.ndarray:
    """Average of the fold pipelines' ``log1p(price)`` predictions for (n,) str texts: (n,) float64.

    Pipelines sharing one fitted vectoriser (as :func:`train_tfidf_ridge_cv` makes them) transform
    the texts once; a big batch is split over worker processes (``lib.runtime.text_transform``, same values).

    Raises:
        ValueError: if ``models`` is empty.
    """
    if not models:
        raise ValueError("predict_tfidf_ridge: no models")
    texts = pd.Series(texts).fillna("").astype(str)
    vec = models[0][0]
    if all(m[0] is vec for m in models):
        from pricing_assets.lib.runtime.text_transform import map_text_chunks

        return map_text_chunks(_shared_vectorizer_prediction, texts, models)
    return np.mean([m.predict(texts) for m in models], axis=0)
