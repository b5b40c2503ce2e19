"""Model stage: ``lightgbm_model`` (+ its predictions) and ``price_blend`` (weights fitted on OOF)."""

import dagster as dg
import numpy as np
import pandas as pd

from data_contracts import ModelPredictions
from pricing_assets.assets.common import preview
from pricing_assets.checks import contract_result, contract_spec
from pricing_assets.lib.metrics import smape

GROUP = "models"

#: Model prediction assets that the blend combines (each a ``ModelPredictions`` frame).
MODEL_PREDICTION_ASSETS = ["lightgbm_predictions"]


class LightGBMConfig(dg.Config):
    """LightGBM hyper-parameters (editable in the Launchpad); defaults from ``LGBM_PARAMS``."""

    learning_rate: float = 0.03
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.7
    num_boost_round: int = 3000
    early_stopping_rounds: int = 150
    seed: int = 42


def _oof_metadata(preds: pd.DataFrame) -> dict:
    lab = preds[preds["fold"] >= 0]
    return {"oof_smape": round(smape(lab["price"].to_numpy(), lab["pred_price"].to_numpy()), 3), "labeled_rows": len(lab), "unlabeled_rows": int((preds["fold"] < 0).sum())}


@dg.multi_asset(
    outs={
        "lightgbm_model": dg.AssetOut(io_manager_key="lightgbm_io_manager", group_name=GROUP, description="One LightGBM booster per CV fold, on log1p(price)."),
        "lightgbm_predictions": dg.AssetOut(io_manager_key="parquet_io_manager", group_name=GROUP, description="OOF predictions (labeled rows) and fold-average predictions (unlabeled rows)."),
    },
    check_specs=[contract_spec("lightgbm_predictions")],
)
def lightgbm_model(context: dg.AssetExecutionContext, config: LightGBMConfig, feature_matrix: pd.DataFrame):
    """K-fold LightGBM on ``log1p(price)`` over all labeled rows of all batches; OOF SMAPE in metadata."""
    from pricing_assets.lib.modeling import model_input, predict_lightgbm, predictions_frame, train_lightgbm_cv

    lab = (feature_matrix["fold"] >= 0).to_numpy()
    X = model_input(feature_matrix)
    y = np.log1p(feature_matrix.loc[lab, "price"].to_numpy(dtype=float))
    params = {k: getattr(config, k) for k in ("learning_rate", "num_leaves", "min_data_in_leaf", "feature_fraction")}
    cv = train_lightgbm_cv(
        X[lab], y, feature_matrix.loc[lab, "fold"].to_numpy(), params=params,
        num_boost_round=config.num_boost_round, early_stopping_rounds=config.early_stopping_rounds,
        seed=config.seed, categorical=["category"] if "category" in X else None, log=context.log.info,
    )
    test_log = predict_lightgbm(cv.models, X[~lab]) if (~lab).any() else np.zeros(0)
    preds = predictions_frame(feature_matrix, cv.oof_log, test_log)
    gain = pd.Series(np.mean([m.feature_importance("gain") for m in cv.models], axis=0), index=X.columns).sort_values(ascending=False)
    top = gain.head(15)
    yield dg.Output(cv.models, output_name="lightgbm_model", metadata={
        "folds": len(cv.models),
        "best_iterations": dg.MetadataValue.json(cv.best_iterations),
        "features": X.shape[1],
        "top_features_by_gain": dg.MetadataValue.md(pd.DataFrame({"feature": top.index, "gain_share": (top / gain.sum()).round(4).to_numpy()}).to_markdown(index=False)),
        "train_seconds": round(cv.seconds, 2),
    })
    yield dg.Output(preds, output_name="lightgbm_predictions", metadata={
        **_oof_metadata(preds),
        "fold_smape": dg.MetadataValue.json([round(s, 3) for s in cv.fold_smape]),
        "preview": preview(preds),
    })
    yield contract_result(preds, ModelPredictions, "lightgbm_predictions")


def build_blend_asset(prediction_assets: list[str]) -> dg.AssetsDefinition:
    """``price_blend``: convex weights over the models' OOF predictions, applied to every row."""

    @dg.asset(
        group_name=GROUP,
        io_manager_key="parquet_io_manager",
        ins={name: dg.AssetIn(name) for name in prediction_assets},
        check_specs=[contract_spec("price_blend")],
    )
    def price_blend(context: dg.AssetExecutionContext, **preds):
        """Blend of the model predictions (weighted geometric mean, weights fitted on OOF SMAPE)."""
        from pricing_assets.lib.modeling import apply_blend, fit_blend_weights

        names = sorted(preds)
        base = preds[names[0]][["sample_id", "fold", "price"]].reset_index(drop=True)
        mats = np.column_stack([preds[n].set_index("sample_id")["pred_price"].reindex(base["sample_id"]).to_numpy() for n in names])
        lab = (base["fold"] >= 0).to_numpy()
        w = fit_blend_weights(mats[lab], base.loc[lab, "price"].to_numpy())
        out = base.assign(pred_price=apply_blend(mats, w))
        per_model = {n: round(smape(base.loc[lab, "price"], mats[lab, i]), 3) for i, n in enumerate(names)}
        yield dg.Output(out, metadata={
            **_oof_metadata(out),
            "weights": dg.MetadataValue.json({n: round(float(x), 4) for n, x in zip(names, w)}),
            "model_oof_smape": dg.MetadataValue.json(per_model),
        })
        yield contract_result(out, ModelPredictions, "price_blend")

    return price_blend
