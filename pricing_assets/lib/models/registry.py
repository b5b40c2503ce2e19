"""The price-model registry: one :class:`PriceModelSpec` per model the blend combines.

One entry drives everything that names a model: its training asset (``{name}_model`` and
``{name}_predictions``, ``defs/models.py``), ``price_blend``'s inputs, the fitted models
``serving_model`` packages, :func:`~pricing_assets.lib.serving.scoring.score_new_rows`, the evaluation report,
the CLI and ``pricing status``. Adding a model is one entry in :data:`PRICE_MODELS` with its two adapter
functions (train, predict) over its own ``lib/`` module.

Every model predicts ``log1p(price USD)``; trained on the labeled rows with the same grouped CV folds,
its out-of-fold predictions are what the blend weights are fitted on.

Pure and Dagster-free; the models' libraries (LightGBM, torch, scikit-learn) are imported inside the
adapters, so reading the registry is cheap.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pricing_assets.lib.models.cross_validation import DEFAULT_SEED, CvResult
from pricing_assets.lib.models.distributional import DIST_NUM_BOOST_ROUND, DIST_PARAMS, N_BINS
from pricing_assets.lib.models.lightgbm_regression import LGBM_PARAMS
from pricing_assets.lib.models.mlp import MLPConfig

#: What a model can read; the training asset loads the matching asset (``defs.models.READS_ASSET``).
READS = ("features", "text", "embeddings")


@dataclass
class ModelInputs:
    """What a price model sees of n products, rows aligned.

    Attributes:
        sample_ids: (n,) str.
        features: ``feature_matrix`` rows (n; ``sample_id``, ``fold``, ``price`` then the feature
            columns of ``lib.features.training_data.FeatureSpace.columns``), or None when not read.
        text: (n,) str catalog text (``lib.models.tfidf_ridge.product_text``), or None.
        embeddings: ``(name, modality, vectors (n, d) float32, has (n,) bool)`` per enabled
            embedding model in registry order, or None.
    """

    sample_ids: np.ndarray
    features: pd.DataFrame | None = None
    text: pd.Series | None = None
    embeddings: list | None = None


@dataclass
class TrainedModel:
    """What a model's ``train`` returns.

    Attributes:
        fitted: what ``serving_model`` keeps and ``predict`` takes (boosters, fold models, ...).
        cv: the K-fold result: ``oof_log`` (n,) float64 ``log1p`` OOF predictions, ``fold_smape``, ``seconds``.
        metadata: name -> value for the model asset's metadata (str, number, list, dict or a
            ``pandas.DataFrame`` shown as a table).
    """

    fitted: object
    cv: CvResult
    metadata: dict = field(default_factory=dict)


#: ``train(inputs, y_log1p (n,) float64, folds (n,) int, config, device, log) -> TrainedModel``.
TrainFn = Callable[..., TrainedModel]
#: ``predict(fitted, inputs, device) -> (n,) float64 log1p(price USD)``.
PredictFn = Callable[..., np.ndarray]
#: ``contributions(fitted, inputs, method) -> (X (n, p) frame, contributions (n, p) float64, bias (n,) float64)``:
#: per-row feature contributions on the natural-log price scale (``bias + sum`` = the model's log price);
#: ``method`` one of ``lib.serving.drivers.CONTRIBUTION_METHODS``.
ContributionsFn = Callable[..., tuple]


@dataclass(frozen=True)
class PriceModelSpec:
    """One price model of the registry.

    Attributes:
        name: asset prefix (``{name}_model``, ``{name}_predictions``) and blend-weight key.
        description: what the fitted object is (the ``{name}_model`` asset's description).
        reads: subset of :data:`READS` the model trains and predicts on.
        config: dataclass of its hyper-parameters (defaults are the pipeline's; editable in the
            Launchpad as the asset's run config).
        train, predict: the adapters over the model's ``lib/`` module (:data:`TrainFn`, :data:`PredictFn`).
        storage: how ``{name}_model`` is stored: ``pickle`` or ``lightgbm`` (a list of boosters as text).
        opt_in: trained and blended only when switched on (``Settings.opt_in_price_models``).
        pool: Dagster pool of its training step (``gpu`` for torch models), or None.
        stacked: its OOF predictions are also a feature of ``feature_matrix`` (it reads only text,
            so it trains before the feature matrix and serving predicts it first).
        config_exclude: fields of ``config`` kept at their defaults (not in the Launchpad).
        contributions: :data:`ContributionsFn` when the model attributes its prices to its features
            (the price drivers, ``lib.serving.drivers``), else None.
    """

    name: str
    description: str
    reads: tuple[str, ...]
    config: type
    train: TrainFn
    predict: PredictFn
    storage: str = "pickle"
    opt_in: bool = False
    pool: str | None = None
    stacked: bool = False
    config_exclude: tuple[str, ...] = ()
    contributions: ContributionsFn | None = None

    @property
    def model_asset(self) -> str:
        """``{name}_model``: the fitted model(s)."""
        return f"{self.name}_model"

    @property
    def predictions_asset(self) -> str:
        """``{name}_predictions``: its OOF ``ModelPredictions`` frame."""
        return f"{self.name}_predictions"


# --- LightGBM regression --------------------------------------------------------------------------


@dataclass(frozen=True)
class LightGBMConfig:
    """LightGBM regression hyper-parameters; defaults from ``lib.models.lightgbm_regression.LGBM_PARAMS``.
    ``n_bags``: boosters per fold (seed bagging) and refit boosters."""

    learning_rate: float = LGBM_PARAMS["learning_rate"]
    num_leaves: int = LGBM_PARAMS["num_leaves"]
    min_data_in_leaf: int = LGBM_PARAMS["min_data_in_leaf"]
    feature_fraction: float = LGBM_PARAMS["feature_fraction"]
    num_boost_round: int = 3000
    early_stopping_rounds: int = 150
    seed: int = DEFAULT_SEED
    n_bags: int = 3


def _tabular(inputs: ModelInputs) -> tuple[pd.DataFrame, list[str] | None]:
    """(LightGBM input frame of ``inputs.features``, categorical column names or None)."""
    from pricing_assets.lib.models.lightgbm_regression import model_input

    X = model_input(inputs.features)
    return X, (["category"] if "category" in X else None)


def _train_lightgbm(inputs, y_log1p, folds, config: LightGBMConfig, device="cpu", log=None) -> TrainedModel:
    """K-fold LightGBM (OOF), then boosters refit on every labeled row with the rounds the CV chose."""
    import time

    from pricing_assets.lib.models.lightgbm_regression import refit_lightgbm, train_lightgbm_cv

    X, categorical = _tabular(inputs)
    params = {k: getattr(config, k) for k in ("learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction")}
    cv = train_lightgbm_cv(
        X,
        y_log1p,
        folds,
        params=params,
        num_boost_round=config.num_boost_round,
        early_stopping_rounds=config.early_stopping_rounds,
        seed=config.seed,
        categorical=categorical,
        log=log,
        n_bags=config.n_bags,
    )
    t = time.perf_counter()
    final = refit_lightgbm(
        X, y_log1p, cv.best_iterations, params=params, seed=config.seed, categorical=categorical, n_bags=config.n_bags
    )
    refit_seconds = time.perf_counter() - t
    gain = pd.Series(np.mean([m.feature_importance("gain") for m in final], axis=0), index=X.columns).sort_values(
        ascending=False
    )
    top = gain.head(15)
    return TrainedModel(
        final,
        cv,
        {
            "boosters": len(final),
            "refit_rounds": final[0].num_trees(),
            "cv_best_iterations": cv.best_iterations,
            "features": X.shape[1],
            "top_features_by_gain": pd.DataFrame(
                {"feature": top.index, "gain_share": (top / gain.sum()).round(4).to_numpy()}
            ),
            "refit_seconds": round(refit_seconds, 2),
        },
    )


def _predict_lightgbm(fitted, inputs: ModelInputs, device="cpu") -> np.ndarray:
    from pricing_assets.lib.models.lightgbm_regression import predict_lightgbm

    return predict_lightgbm(fitted, _tabular(inputs)[0])


def _lightgbm_contributions(fitted, inputs: ModelInputs, method: str) -> tuple:
    """Contributions of the refit boosters by ``method`` (``lib.serving.drivers.booster_contributions``:
    decision paths or TreeSHAP)."""
    from pricing_assets.lib.serving.drivers import booster_contributions

    X = _tabular(inputs)[0]
    return (X, *booster_contributions(fitted, X, method))


# --- distributional LightGBM (price-bin classifier) ------------------------------------------------


@dataclass(frozen=True)
class DistributionalConfig:
    """Distributional LightGBM settings; defaults from ``lib.models.distributional``."""

    n_bins: int = N_BINS
    learning_rate: float = DIST_PARAMS["learning_rate"]
    num_leaves: int = DIST_PARAMS["num_leaves"]
    num_boost_round: int = DIST_NUM_BOOST_ROUND
    early_stopping_rounds: int = 50
    seed: int = DEFAULT_SEED


def _train_distributional(inputs, y_log1p, folds, config: DistributionalConfig, device="cpu", log=None) -> TrainedModel:
    """K-fold multiclass LightGBM over price bins; the price with the least expected SMAPE."""
    from pricing_assets.lib.models.distributional import train_lightgbm_dist_cv

    X, categorical = _tabular(inputs)
    cv = train_lightgbm_dist_cv(
        X,
        y_log1p,
        folds,
        n_bins=config.n_bins,
        params={"learning_rate": config.learning_rate, "num_leaves": config.num_leaves},
        num_boost_round=config.num_boost_round,
        early_stopping_rounds=config.early_stopping_rounds,
        seed=config.seed,
        categorical=categorical,
        log=log,
    )
    return TrainedModel(
        cv.models,
        cv,
        {
            "bins": [len(m["bin_log_prices"]) for m in cv.models],
            "best_iterations": cv.best_iterations,
            "features": X.shape[1],
        },
    )


def _predict_distributional(fitted, inputs: ModelInputs, device="cpu") -> np.ndarray:
    from pricing_assets.lib.models.distributional import predict_lightgbm_dist

    return predict_lightgbm_dist(fitted, _tabular(inputs)[0])


# --- fusion MLP (text + image + tabular branches) ---------------------------------------------------


def mlp_tab_exclude(embedding_names: Iterable[str]) -> tuple[str, ...]:
    """``feature_matrix`` columns the MLP's tabular branch skips: ids/labels, and the embedding PCA
    columns (the MLP sees the full embeddings in its own branches)."""
    return ("sample_id", "fold", "price", *(f"{name}_pc" for name in embedding_names))


def mlp_branches(
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fusion MLP's embedding branches of n rows: ``(text (n, sum d_text) float32, image
    (n, sum d_image) float32 — (n, 1) zeros without an image model — has_image (n,) bool)``.

    Raises:
        ValueError: without a text model.
    """
    text = [vec for _, modality, vec, _ in embeddings if modality == "text"]
    if not text:
        raise ValueError("fusion_mlp: no enabled text embedding model in the registry")
    n = len(text[0])
    image = [vec for _, modality, vec, _ in embeddings if modality == "image"]
    has_image = np.zeros(n, dtype=bool)
    for _, modality, _, has in embeddings:
        if modality == "image":
            has_image |= np.asarray(has, dtype=bool)
    image_m = np.hstack(image).astype(np.float32) if image else np.zeros((n, 1), dtype=np.float32)
    return np.hstack(text).astype(np.float32), image_m, has_image


def _mlp_inputs(inputs: ModelInputs, tab):
    from pricing_assets.lib.models.mlp import MLPInputs

    text, image, has_image = mlp_branches(inputs.embeddings)
    return MLPInputs(text, image, has_image, tab.transform(inputs.features), list(tab.names))


def _train_fusion_mlp(inputs, y_log1p, folds, config: MLPConfig, device="cpu", log=None) -> TrainedModel:
    """K-fold fusion MLP; the tabular transform is fitted on the training rows."""
    from pricing_assets.lib.models.mlp import TabularTransform, train_mlp_cv

    tab = TabularTransform.fit(
        inputs.features, exclude_prefixes=mlp_tab_exclude(name for name, *_ in inputs.embeddings)
    )
    mlp_in = _mlp_inputs(inputs, tab)
    cv = train_mlp_cv(mlp_in, y_log1p, folds, config, device=device, log=log)
    return TrainedModel(
        {"models": cv.models, "tab": tab},
        cv,
        {
            "best_epochs": cv.best_iterations,
            "dims": {"text": mlp_in.text.shape[1], "image": mlp_in.image.shape[1], "tabular": mlp_in.tab.shape[1]},
            "rows_with_image": int(mlp_in.has_image.sum()),
            "device": device,
        },
    )


def _predict_fusion_mlp(fitted, inputs: ModelInputs, device="cpu") -> np.ndarray:
    from pricing_assets.lib.models.mlp import predict_mlp

    return predict_mlp(fitted["models"], _mlp_inputs(inputs, fitted["tab"]), device=device)


# --- TF-IDF ridge on the catalog text ---------------------------------------------------------------


@dataclass(frozen=True)
class TfidfRidgeConfig:
    """The TF-IDF ridge has no run-time setting (its parameters: ``lib.models.tfidf_ridge.TFIDF_RIDGE_PARAMS``)."""


def _train_tfidf_ridge(inputs, y_log1p, folds, config: TfidfRidgeConfig, device="cpu", log=None) -> TrainedModel:
    """K-fold TF-IDF (word 1-2 + char 2-5 grams) + ridge over the catalog text."""
    from pricing_assets.lib.models.tfidf_ridge import TFIDF_RIDGE_PARAMS, train_tfidf_ridge_cv

    cv = train_tfidf_ridge_cv(inputs.text, y_log1p, folds, log=log)
    return TrainedModel(
        cv.models, cv, {"params": {k: list(v) if isinstance(v, tuple) else v for k, v in TFIDF_RIDGE_PARAMS.items()}}
    )


def _predict_tfidf_ridge(fitted, inputs: ModelInputs, device="cpu") -> np.ndarray:
    from pricing_assets.lib.models.tfidf_ridge import predict_tfidf_ridge

    return predict_tfidf_ridge(fitted, inputs.text)


#: Every price model, by name. Blend order is the sorted names.
PRICE_MODELS: dict[str, PriceModelSpec] = {
    s.name: s
    for s in (
        PriceModelSpec(
            "lightgbm",
            "LightGBM boosters regressing log(price), refit on all labeled rows (one per seed bag) with the rounds the CV chose.",
            ("features",),
            LightGBMConfig,
            _train_lightgbm,
            _predict_lightgbm,
            storage="lightgbm",
            contributions=_lightgbm_contributions,
        ),
        PriceModelSpec(
            "lightgbm_distributional",
            "Per CV fold: a multiclass LightGBM over price bins and the training prices of each bin, pickled.",
            ("features",),
            DistributionalConfig,
            _train_distributional,
            _predict_distributional,
        ),
        PriceModelSpec(
            "fusion_mlp",
            "One fusion-MLP state dict per CV fold (text + image + tabular branches) and the tabular transform fitted on "
            "the labeled rows, pickled.",
            ("features", "embeddings"),
            MLPConfig,
            _train_fusion_mlp,
            _predict_fusion_mlp,
            opt_in=True,
            pool="gpu",
            config_exclude=("inner_valid_fraction", "num_threads"),
        ),
        PriceModelSpec(
            "tfidf_ridge",
            "One word+char TF-IDF -> ridge pipeline per CV fold, pickled.",
            ("text",),
            TfidfRidgeConfig,
            _train_tfidf_ridge,
            _predict_tfidf_ridge,
            stacked=True,
        ),
    )
}


def enabled_price_models(opted_in: Iterable[str] = ()) -> list[PriceModelSpec]:
    """The models trained and blended: every default model, plus the opt-in ones named in
    ``opted_in`` (``Settings.opt_in_price_models``), in blend order (sorted by name).

    Raises:
        KeyError: ``opted_in`` names a model that is not in :data:`PRICE_MODELS`.
    """
    opted = set(opted_in)
    unknown = sorted(opted - set(PRICE_MODELS))
    if unknown:
        raise KeyError(f"unknown price models {unknown}; known: {sorted(PRICE_MODELS)}")
    return [PRICE_MODELS[n] for n in sorted(PRICE_MODELS) if not PRICE_MODELS[n].opt_in or n in opted]


def stacked_model() -> PriceModelSpec:
    """The model whose predictions are a feature of ``feature_matrix`` (it reads only text).

    Raises:
        ValueError: when the registry has not exactly one (the feature space needs one).
    """
    stacked = [s for s in PRICE_MODELS.values() if s.stacked]
    if len(stacked) != 1:
        raise ValueError(f"the price-model registry needs exactly one stacked model, has {[s.name for s in stacked]}")
    return stacked[0]


def training_inputs(
    reads: Iterable[str],
    feature_matrix: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
    product_embeddings=None,
) -> tuple[pd.DataFrame, ModelInputs, np.ndarray, np.ndarray]:
    """What a model reading ``reads`` trains on, from the training assets.

    The rows are ``feature_matrix``'s when the model reads features, else ``products``'; text and
    embeddings are aligned to them by ``sample_id``.

    Args:
        reads: subset of :data:`READS`.
        feature_matrix: the labeled rows' model input (needed for ``features``).
        products: the labeled training set (needed for ``text``, and as the rows without ``features``).
        product_embeddings: ``lib.features.training_data.ProductEmbeddings`` (needed for ``embeddings``).

    Returns:
        ``(rows, inputs, y_log1p, folds)``: rows (n; ``sample_id``, ``fold``, ``price`` USD), the
        :class:`ModelInputs`, (n,) float64 ``log1p(price)``, (n,) int folds.

    Raises:
        ValueError: an asset ``reads`` needs is missing, or a row has no price or a fold < 0 (the
            training rows are the labeled ones).
    """
    from pricing_assets.lib.models.tfidf_ridge import product_text

    reads = tuple(reads)
    needed = {"features": feature_matrix, "text": products, "embeddings": product_embeddings}
    missing = [r for r in reads if needed.get(r) is None]
    if missing or (feature_matrix is None and products is None):
        raise ValueError(f"training_inputs: no input for {missing or ['rows']}")
    rows = (feature_matrix if "features" in reads else products).reset_index(drop=True)
    price = rows["price"].to_numpy(dtype=float)
    folds = rows["fold"].to_numpy()
    bad = ~np.isfinite(price) | (folds < 0)
    if bad.any():
        raise ValueError(
            f"training_inputs: {int(bad.sum())} rows without a price or fold (e.g. sample_id {rows.loc[bad, 'sample_id'].iloc[0]!r}); "
            "a model trains on labeled rows only"
        )
    sid = rows["sample_id"].astype(str)
    text = None
    if "text" in reads:
        items = (
            products.assign(sample_id=products["sample_id"].astype(str)).set_index("sample_id").loc[sid].reset_index()
        )
        text = product_text(items).fillna("").astype(str).reset_index(drop=True)
    embeddings = product_embeddings.aligned_to(sid) if "embeddings" in reads else None
    inputs = ModelInputs(sid.to_numpy(), rows if "features" in reads else None, text, embeddings)
    return rows, inputs, np.log1p(price), folds


def oof_predictions_frame(rows: pd.DataFrame, oof_log1p: np.ndarray) -> pd.DataFrame:
    """The ``ModelPredictions`` frame of n labeled rows.

    Args:
        rows: n rows with ``sample_id``, ``fold`` (>= 0) and ``price`` (USD).
        oof_log1p: (n,) out-of-fold ``log1p`` predictions, rows' order.

    Returns:
        DataFrame ``sample_id``, ``fold``, ``price``, ``pred_price`` (USD, :func:`to_price`).

    Raises:
        ValueError: on a length mismatch.
    """
    if len(oof_log1p) != len(rows):
        raise ValueError(f"oof_predictions_frame: {len(oof_log1p)} predictions for {len(rows)} rows")
    return pd.DataFrame(
        {
            "sample_id": rows["sample_id"].to_numpy(),
            "fold": rows["fold"].to_numpy(),
            "price": rows["price"].to_numpy(),
            "pred_price": to_price(oof_log1p),
        }
    )


def to_price(log1p_price: np.ndarray) -> np.ndarray:
    """``log1p`` predictions -> USD (n,) float64, clipped to >= 0.01 (a price is positive; SMAPE
    is undefined at 0 for a 0 truth)."""
    return np.clip(np.expm1(np.asarray(log1p_price, dtype=np.float64)), 0.01, None)
