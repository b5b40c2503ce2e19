"""Model stage: ``lightgbm_model``, ``lightgbm_dist_model``, ``fusion_mlp_model`` and ``tfidf_ridge_model`` (each with its
``*_predictions``: OOF for labeled rows; for unlabeled ones the fold models' average, or for LightGBM
its boosters refit on all labeled rows) and ``price_blend`` (convex weights fitted on OOF)."""

import time

import dagster as dg
import numpy as np
import pandas as pd

from data_contracts import ModelPredictions
from pricing_assets.checks import contract_spec, enforce_contract
from pricing_assets.configs import config_from_dataclass
from pricing_assets.defs.common import preview
from pricing_assets.lib.distributional import DIST_NUM_BOOST_ROUND, DIST_PARAMS, N_BINS
from pricing_assets.lib.lightgbm_regression import LGBM_PARAMS
from pricing_assets.lib.metrics import smape
from pricing_assets.lib.mlp import MLPConfig
from pricing_assets.lib.progress import fold_counter
from pricing_assets.resources import DeviceResource, ModelGateResource, StorageResource
from pricing_assets.settings import current_registry, current_settings

GROUP = "models"

#: Model prediction assets that the blend combines (each a ``ModelPredictions`` frame).
#: Every model's OOF prediction asset the blend can hold; the fusion MLP is opt-in
#: (``PRICING_FUSION_MLP=1``, :func:`model_prediction_assets`).
MODEL_PREDICTION_ASSETS = ["lightgbm_predictions", "lightgbm_dist_predictions", "fusion_mlp_predictions", "tfidf_ridge_predictions"]
OPT_IN_PREDICTION_ASSETS = ("fusion_mlp_predictions",)


def model_prediction_assets(fusion_mlp: bool) -> list[str]:
    """The prediction assets the blend and ``serving_model`` read: every default model, plus the fusion
    MLP's when ``fusion_mlp`` (``Settings.fusion_mlp``)."""
    return [n for n in MODEL_PREDICTION_ASSETS if n not in OPT_IN_PREDICTION_ASSETS or fusion_mlp]


class LightGBMConfig(dg.Config):
    """LightGBM hyper-parameters (editable in the Launchpad); defaults are ``LGBM_PARAMS``'s values."""

    learning_rate: float = LGBM_PARAMS["learning_rate"]
    num_leaves: int = LGBM_PARAMS["num_leaves"]
    min_data_in_leaf: int = LGBM_PARAMS["min_data_in_leaf"]
    feature_fraction: float = LGBM_PARAMS["feature_fraction"]
    num_boost_round: int = 3000
    early_stopping_rounds: int = 150
    seed: int = 42
    n_bags: int = 3  # seed bagging: boosters per fold in the CV, and refit boosters (lib.lightgbm_regression)


def _oof_metadata(preds: pd.DataFrame) -> dict:
    lab = preds[preds["fold"] >= 0]
    return {"oof_smape": round(smape(lab["price"].to_numpy(), lab["pred_price"].to_numpy()), 3), "labeled_rows": len(lab), "unlabeled_rows": int((preds["fold"] < 0).sum())}


def _prediction_outputs(preds: pd.DataFrame, fold_smape: list[float], output_name: str) -> list:
    """The ``*_predictions`` output of a model asset (OOF SMAPE, per-fold SMAPE, preview) and its
    passing ``ModelPredictions`` contract result, validated *now*: call it before yielding the fitted
    model, so a model whose predictions break the contract stores neither.

    Raises:
        ContractViolation: when ``preds`` fails ``ModelPredictions``.
    """
    contract = enforce_contract(preds, ModelPredictions, output_name)
    return [
        dg.Output(preds, output_name=output_name, metadata={
            **_oof_metadata(preds),
            "fold_smape": dg.MetadataValue.json([round(x, 3) for x in fold_smape]),
            "preview": preview(preds),
        }),
        contract,
    ]


def _model_multi_asset(name: str, model_io_manager: str, model_description: str, predictions_description: str, **kwargs):
    """The ``@dg.multi_asset`` of one model: ``{name}_model`` (the fitted models — fold models, or
    LightGBM's refit boosters — stored by ``model_io_manager``) and ``{name}_predictions`` (a parquet ``ModelPredictions`` frame) with its
    blocking contract check; ``kwargs`` (``ins``, ``pool``) go to ``dg.multi_asset``."""
    return dg.multi_asset(
        outs={
            f"{name}_model": dg.AssetOut(io_manager_key=model_io_manager, group_name=GROUP, description=model_description),
            f"{name}_predictions": dg.AssetOut(io_manager_key="parquet_io_manager", group_name=GROUP, description=predictions_description),
        },
        check_specs=[contract_spec(f"{name}_predictions")],
        **kwargs,
    )


def _tabular_training_inputs(feature_matrix: pd.DataFrame):
    """What the LightGBM assets train on: (labeled-row mask (n,) bool, features ``X`` of all n rows,
    ``log1p(price)`` (n_labeled,) float64, folds (n_labeled,) int, categorical column names or None)."""
    from pricing_assets.lib.lightgbm_regression import model_input

    lab = (feature_matrix["fold"] >= 0).to_numpy()
    X = model_input(feature_matrix)
    y = np.log1p(feature_matrix.loc[lab, "price"].to_numpy(dtype=float))
    return lab, X, y, feature_matrix.loc[lab, "fold"].to_numpy(), (["category"] if "category" in X else None)


@_model_multi_asset(
    "lightgbm",
    "lightgbm_io_manager",
    "LightGBM boosters regressing log(price), refit on all labeled rows (one per seed bag) with the rounds the CV chose.",
    "OOF predictions of the CV fold boosters (labeled rows) and the refit boosters' predictions (unlabeled rows).",
)
def lightgbm_model(context: dg.AssetExecutionContext, config: LightGBMConfig, feature_matrix: pd.DataFrame):
    """K-fold LightGBM regression of log price over all labeled rows of all batches (OOF SMAPE in
    metadata, boosting rounds), then the final boosters refit on all labeled rows for the unlabeled ones."""
    from pricing_assets.lib.lightgbm_regression import predict_lightgbm, refit_lightgbm, train_lightgbm_cv
    from pricing_assets.lib.model_predictions import predictions_frame

    lab, X, y, folds, categorical = _tabular_training_inputs(feature_matrix)
    params = {k: getattr(config, k) for k in ("learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction")}
    cv = train_lightgbm_cv(
        X[lab], y, folds, params=params,
        num_boost_round=config.num_boost_round, early_stopping_rounds=config.early_stopping_rounds,
        seed=config.seed, categorical=categorical, log=fold_counter("lightgbm_model", int(np.unique(folds).size), context.log.info), n_bags=config.n_bags,
    )
    t_refit = time.perf_counter()
    final = refit_lightgbm(X[lab], y, cv.best_iterations, params=params, seed=config.seed, categorical=categorical, n_bags=config.n_bags)
    refit_seconds = time.perf_counter() - t_refit
    test_log = predict_lightgbm(final, X[~lab]) if (~lab).any() else np.zeros(0)
    preds = predictions_frame(feature_matrix, cv.oof_log, test_log)
    gain = pd.Series(np.mean([m.feature_importance("gain") for m in final], axis=0), index=X.columns).sort_values(ascending=False)
    top = gain.head(15)
    outputs = _prediction_outputs(preds, cv.fold_smape, "lightgbm_predictions")  # validated before the model is stored
    yield dg.Output(final, output_name="lightgbm_model", metadata={
        "folds": len(cv.fold_smape),
        "boosters": len(final),
        "refit_rounds": final[0].num_trees(),
        "cv_best_iterations": dg.MetadataValue.json(cv.best_iterations),
        "features": X.shape[1],
        "top_features_by_gain": dg.MetadataValue.md(pd.DataFrame({"feature": top.index, "gain_share": (top / gain.sum()).round(4).to_numpy()}).to_markdown(index=False)),
        "train_seconds": round(cv.seconds, 2),
        "refit_seconds": round(refit_seconds, 2),
    })
    yield from outputs


class LightGBMDistConfig(dg.Config):
    """Distributional LightGBM settings (editable in the Launchpad); defaults from ``lib.distributional``."""

    n_bins: int = N_BINS
    learning_rate: float = DIST_PARAMS["learning_rate"]
    num_leaves: int = DIST_PARAMS["num_leaves"]
    num_boost_round: int = DIST_NUM_BOOST_ROUND
    early_stopping_rounds: int = 50
    seed: int = 42


@_model_multi_asset(
    "lightgbm_dist",
    "io_manager",
    "Per CV fold: a multiclass LightGBM over price bins and the training prices of each bin, pickled.",
    "Expected-SMAPE decisions of the price-bin classifier: OOF (labeled rows), fold ensemble (unlabeled rows).",
)
def lightgbm_dist_model(context: dg.AssetExecutionContext, config: LightGBMDistConfig, feature_matrix: pd.DataFrame):
    """K-fold multiclass LightGBM over quantile price bins; each row's prediction is the price with the
    least expected SMAPE under its predicted bin probabilities (``lib.distributional``)."""
    from pricing_assets.lib.distributional import predict_lightgbm_dist, train_lightgbm_dist_cv
    from pricing_assets.lib.model_predictions import predictions_frame

    lab, X, y, folds, categorical = _tabular_training_inputs(feature_matrix)
    cv = train_lightgbm_dist_cv(
        X[lab], y, folds, n_bins=config.n_bins,
        params={"learning_rate": config.learning_rate, "num_leaves": config.num_leaves},
        num_boost_round=config.num_boost_round, early_stopping_rounds=config.early_stopping_rounds, seed=config.seed,
        categorical=categorical, log=fold_counter("lightgbm_dist_model", int(np.unique(folds).size), context.log.info),
    )
    test_log = predict_lightgbm_dist(cv.models, X[~lab]) if (~lab).any() else np.zeros(0)
    preds = predictions_frame(feature_matrix, cv.oof_log, test_log)
    outputs = _prediction_outputs(preds, cv.fold_smape, "lightgbm_dist_predictions")  # validated before the model is stored
    yield dg.Output(cv.models, output_name="lightgbm_dist_model", metadata={
        "folds": len(cv.models),
        "bins": dg.MetadataValue.json([len(m["bin_log_prices"]) for m in cv.models]),
        "best_iterations": dg.MetadataValue.json(cv.best_iterations),
        "features": X.shape[1],
        "train_seconds": round(cv.seconds, 2),
    })
    yield from outputs


#: Fusion MLP hyper-parameters (Launchpad): the fields and defaults of ``lib.mlp.MLPConfig``, less the
#: inner validation share and the thread count.
FusionMLPConfig = config_from_dataclass(
    "FusionMLPConfig", MLPConfig, exclude=("inner_valid_fraction", "num_threads"), doc="Fusion MLP hyper-parameters; fields and defaults of lib.mlp.MLPConfig."
)


def build_model_assets(registry: dict, *, with_fusion_mlp: bool) -> list:
    """``tfidf_ridge``, and ``fusion_mlp`` (reading ``product_embeddings``) when ``with_fusion_mlp``."""
    specs = [s for s in registry.values() if s.enabled]

    @_model_multi_asset(
        "fusion_mlp",
        "io_manager",
        "One fusion-MLP state dict per CV fold (text + image + tabular branches) and the tabular transform fitted on the labeled rows, pickled.",
        "Fusion MLP: OOF predictions (labeled rows) and fold-average predictions (unlabeled rows).",
        ins={"feature_matrix": dg.AssetIn("feature_matrix"), "product_embeddings": dg.AssetIn("product_embeddings")},
        pool="gpu",
    )
    def fusion_mlp(context: dg.AssetExecutionContext, config: FusionMLPConfig, device: DeviceResource, feature_matrix: pd.DataFrame, product_embeddings):
        """K-fold fusion MLP on ``log1p(price)``, same folds as LightGBM; OOF SMAPE in metadata."""
        from pricing_assets.lib.mlp import MLPInputs, TabularTransform, predict_mlp, train_mlp_cv
        from pricing_assets.lib.model_predictions import predictions_frame
        from pricing_assets.lib.serving import mlp_branches, mlp_tab_exclude
        dev = device.resolve()
        embs = product_embeddings.aligned_to(feature_matrix["sample_id"])
        text, image_m, has_image = mlp_branches(embs)
        lab = (feature_matrix["fold"] >= 0).to_numpy()
        # fitted on the labeled (training) rows; a new product's row goes through the same transform
        tab_transform = TabularTransform.fit(feature_matrix[lab], exclude_prefixes=mlp_tab_exclude(s.name for s in specs))
        inputs = MLPInputs(text, image_m, has_image, tab_transform.transform(feature_matrix), list(tab_transform.names))
        y = np.log1p(feature_matrix.loc[lab, "price"].to_numpy(dtype=float))
        cfg = config.to_dataclass()
        cv = train_mlp_cv(inputs.take(lab), y, feature_matrix.loc[lab, "fold"].to_numpy(), cfg, device=dev, log=fold_counter("fusion_mlp", int(feature_matrix.loc[lab, "fold"].nunique()), context.log.info))
        test_log = predict_mlp(cv.models, inputs.take(~lab), device=dev) if (~lab).any() else np.zeros(0)
        preds = predictions_frame(feature_matrix, cv.oof_log, test_log)
        outputs = _prediction_outputs(preds, cv.fold_smape, "fusion_mlp_predictions")  # validated before the model is stored
        yield dg.Output({"models": cv.models, "tab": tab_transform}, output_name="fusion_mlp_model", metadata={
            "folds": len(cv.models),
            "best_epochs": dg.MetadataValue.json(cv.best_iterations),
            "dims": dg.MetadataValue.json({"text": inputs.text.shape[1], "image": inputs.image.shape[1], "tabular": inputs.tab.shape[1]}),
            "rows_with_image": int(has_image.sum()),
            "device": dev,
            "train_seconds": round(cv.seconds, 2),
        })
        yield from outputs

    @_model_multi_asset(
        "tfidf_ridge",
        "io_manager",
        "One word+char TF-IDF -> ridge pipeline per CV fold, pickled.",
        "TF-IDF + ridge: OOF predictions (labeled rows) and fold-average predictions (unlabeled rows).",
    )
    def tfidf_ridge(context: dg.AssetExecutionContext, products: pd.DataFrame):
        """K-fold TF-IDF (word 1-2 + char 2-5 grams) + ridge on ``log1p(price)`` over the catalog text,
        same folds as LightGBM; a cheap, strong text model for the blend."""
        from pricing_assets.lib.model_predictions import predictions_frame
        from pricing_assets.lib.tfidf_ridge import TFIDF_RIDGE_PARAMS, product_text, tfidf_ridge_every_row

        base = products.reset_index(drop=True)
        lab = (base["fold"] >= 0).to_numpy()
        pred, cv = tfidf_ridge_every_row(product_text(base), np.log1p(base["price"].to_numpy(dtype=float)), base["fold"].to_numpy(), log=fold_counter("tfidf_ridge", int(base.loc[lab, "fold"].nunique()), context.log.info))
        preds = predictions_frame(base, pred[lab], pred[~lab])
        outputs = _prediction_outputs(preds, cv.fold_smape, "tfidf_ridge_predictions")  # validated before the model is stored
        yield dg.Output(cv.models, output_name="tfidf_ridge_model", metadata={
            "folds": len(cv.models),
            "params": dg.MetadataValue.json({k: list(v) if isinstance(v, tuple) else v for k, v in TFIDF_RIDGE_PARAMS.items()}),
            "train_seconds": round(cv.seconds, 2),
        })
        yield from outputs

    return [fusion_mlp, tfidf_ridge] if with_fusion_mlp else [tfidf_ridge]


#: Name of the blocking check on ``price_blend`` that keeps a worse retrain from being promoted.
MODEL_GATE_CHECK = "model_gate"


def build_blend_asset(prediction_assets: list[str]) -> dg.AssetsDefinition:
    """``price_blend``: convex weights over the models' OOF predictions, applied to every row; its
    blocking ``model_gate`` check compares it with the promoted model (``lib.model_gate``)."""

    @dg.asset(
        group_name=GROUP,
        io_manager_key="parquet_io_manager",
        ins={name: dg.AssetIn(name) for name in prediction_assets},
        check_specs=[
            contract_spec("price_blend"),
            dg.AssetCheckSpec(
                MODEL_GATE_CHECK, asset="price_blend", blocking=True,
                description="OOF SMAPE on the labeled rows both scored is not worse than the promoted model's by more than "
                "ModelGateResource.tolerance_smape; else price_predictions keeps the previous predictions.",
            ),
        ],
    )
    def price_blend(context: dg.AssetExecutionContext, storage: StorageResource, model_gate: ModelGateResource, **preds):
        """Blend of the model predictions (weighted geometric mean, weights fitted on OOF SMAPE)."""
        from pricing_assets.lib.blend import align_predictions, apply_blend, fit_blend_weights
        from pricing_assets.lib.model_gate import champion_path, compare_with_champion, read_champion

        names = sorted(preds)
        base, mats = align_predictions(preds)
        lab = (base["fold"] >= 0).to_numpy()
        w = fit_blend_weights(mats[lab], base.loc[lab, "price"].to_numpy(), names=names)
        out = base.assign(pred_price=apply_blend(mats, w))
        per_model = {n: round(smape(base.loc[lab, "price"], mats[lab, i]), 3) for i, n in enumerate(names)}
        _contract = enforce_contract(out, ModelPredictions, "price_blend")  # before storing: a violation raises, nothing is written
        gate = compare_with_champion(
            out, read_champion(champion_path(storage.models_dir()), storage.storage_options or None),
            tolerance_smape=model_gate.tolerance_smape, min_rows=model_gate.min_rows,
        )
        (context.log.info if gate.passed else context.log.error)(f"model gate: {gate.reason}")
        yield dg.Output(out, metadata={
            **_oof_metadata(out),
            "weights": dg.MetadataValue.json({n: float(x) for n, x in zip(names, w)}),  # unrounded: they sum to 1
            "model_oof_smape": dg.MetadataValue.json(per_model),
            "model_gate": gate.reason,
        })
        yield _contract
        yield dg.AssetCheckResult(
            check_name=MODEL_GATE_CHECK, asset_key="price_blend", passed=gate.passed,
            severity=dg.AssetCheckSeverity.ERROR, description=gate.reason, metadata=gate.metadata(),
        )

    return price_blend


@dg.definitions
def models_defs() -> dg.Definitions:
    """Every model with its out-of-fold predictions, and the blend (gated by ``model_gate``)."""
    on = current_settings().fusion_mlp
    return dg.Definitions(
        assets=[lightgbm_model, lightgbm_dist_model, *build_model_assets(current_registry(), with_fusion_mlp=on), build_blend_asset(model_prediction_assets(on))]
    )
