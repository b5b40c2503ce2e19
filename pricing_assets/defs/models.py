"""Model stage, driven by the price-model registry (``lib.models.registry``): per model a multi-asset
``{name}_model`` (the fitted model) + ``{name}_predictions`` (OOF predictions of the labeled rows), and
``price_blend`` + ``blend_weights`` (convex weights fitted on the OOF predictions, gated by ``model_gate``)."""

import dagster as dg
import pandas as pd

from data_contracts import BlendWeights, ModelPredictions
from pricing_assets.checks import MODEL_GATE_CHECK, contract_spec, enforce_contract
from pricing_assets.configs import config_from_dataclass
from pricing_assets.defs.common import preview
from pricing_assets.lib.models.metrics import smape
from pricing_assets.lib.models.registry import PriceModelSpec, enabled_price_models
from pricing_assets.lib.runtime.progress import fold_counter
from pricing_assets.resources import DeviceResource
from pricing_assets.settings import Settings, current_settings

GROUP = "models"

#: The asset each of ``lib.models.registry.READS`` is loaded from.
READS_ASSET = {"features": "feature_matrix", "text": "products", "embeddings": "product_embeddings"}
#: IO manager of each ``PriceModelSpec.storage``.
MODEL_IO_MANAGER = {"pickle": "io_manager", "lightgbm": "lightgbm_io_manager"}


def price_models(settings: Settings) -> list[PriceModelSpec]:
    """The registry's models this deployment trains and blends (opt-in ones per ``settings``)."""
    return enabled_price_models(settings.opt_in_price_models)


def _metadata_value(value):
    """A ``TrainedModel.metadata`` value as Dagster metadata: a DataFrame as a markdown table,
    lists and dicts as JSON, anything else as is."""
    if isinstance(value, pd.DataFrame):
        return dg.MetadataValue.md(value.to_markdown(index=False))
    if isinstance(value, list | dict):
        return dg.MetadataValue.json(value)
    return value


def _oof_metadata(preds: pd.DataFrame) -> dict:
    return {
        "oof_smape": round(smape(preds["price"].to_numpy(), preds["pred_price"].to_numpy()), 3),
        "labeled_rows": len(preds),
    }


def build_price_model_asset(spec: PriceModelSpec) -> dg.AssetsDefinition:
    """The multi-asset of one registry model: ``{name}_model`` (stored by its ``storage``'s IO manager)
    and ``{name}_predictions`` (parquet ``ModelPredictions``, with its blocking contract check). The
    predictions are validated before either output is stored; the hyper-parameters are the run config
    (``spec.config``'s fields and defaults)."""
    Config = config_from_dataclass(
        f"{spec.name.title().replace('_', '')}Config",
        spec.config,
        exclude=spec.config_exclude,
        doc=f"{spec.name} hyper-parameters: fields and defaults of {spec.config.__module__}.{spec.config.__name__}.",
    )

    @dg.multi_asset(
        name=spec.model_asset,
        outs={
            spec.model_asset: dg.AssetOut(
                io_manager_key=MODEL_IO_MANAGER[spec.storage], group_name=GROUP, description=spec.description
            ),
            spec.predictions_asset: dg.AssetOut(
                io_manager_key="parquet_io_manager",
                group_name=GROUP,
                description=f"{spec.name}: out-of-fold predictions of the labeled rows (USD).",
            ),
        },
        ins={READS_ASSET[r]: dg.AssetIn(READS_ASSET[r]) for r in spec.reads},
        check_specs=[contract_spec(spec.predictions_asset)],
        pool=spec.pool,
    )
    def price_model(context: dg.AssetExecutionContext, config: Config, device: DeviceResource, **inputs):
        """K-fold training of one registry model on the labeled rows' ``log1p(price)`` (grouped folds of
        ``products``): OOF predictions, per-fold SMAPE, and the fitted model serving uses."""
        from pricing_assets.lib.models.registry import oof_predictions_frame, training_inputs

        rows, model_in, y, folds = training_inputs(spec.reads, **inputs)
        dev = device.resolve() if spec.pool == "gpu" else "cpu"
        log = fold_counter(spec.model_asset, len(set(folds.tolist())), context.log.info)
        trained = spec.train(model_in, y, folds, config.to_dataclass(), device=dev, log=log)
        preds = oof_predictions_frame(rows, trained.cv.oof_log)
        contract = enforce_contract(preds, ModelPredictions, spec.predictions_asset)  # before either output is stored
        yield dg.Output(
            trained.fitted,
            output_name=spec.model_asset,
            metadata={
                "folds": len(trained.cv.fold_smape),
                **{k: _metadata_value(v) for k, v in trained.metadata.items()},
                "train_seconds": round(trained.cv.seconds, 2),
            },
        )
        yield dg.Output(
            preds,
            output_name=spec.predictions_asset,
            metadata={
                **_oof_metadata(preds),
                "fold_smape": dg.MetadataValue.json([round(x, 3) for x in trained.cv.fold_smape]),
                "preview": preview(preds),
            },
        )
        yield contract

    return price_model


def build_blend_asset(specs: list[PriceModelSpec]) -> dg.AssetsDefinition:
    """``price_blend`` (the blended OOF predictions) and ``blend_weights`` (per model: convex weight and
    OOF SMAPE; what ``serving_model`` packages), each with its contract check. The model gate is its
    own check (:data:`model_gate_check`)."""
    inputs = {s.predictions_asset: s.name for s in specs}

    @dg.multi_asset(
        name="price_blend",
        outs={
            "price_blend": dg.AssetOut(
                group_name=GROUP,
                io_manager_key="parquet_io_manager",
                description="Blend of the models' OOF predictions (weighted geometric mean).",
            ),
            "blend_weights": dg.AssetOut(
                group_name=GROUP,
                io_manager_key="parquet_io_manager",
                description="Per blended model: its convex weight and OOF SMAPE (serving_model applies them).",
            ),
            "price_intervals": dg.AssetOut(
                group_name=GROUP,
                io_manager_key="io_manager",
                description="The interval model of served prices: normalized conformal regression on the blend's "
                "OOF log residuals (lib.serving.intervals.PriceIntervals), pickled.",
            ),
        },
        ins={asset: dg.AssetIn(asset) for asset in inputs},
        check_specs=[contract_spec("price_blend"), contract_spec("blend_weights")],
    )
    def price_blend(context: dg.AssetExecutionContext, **preds):
        """Blend of the model predictions (weighted geometric mean, weights fitted on OOF SMAPE)."""
        from pricing_assets.lib.models.blend import align_predictions, blend_oof_predictions
        from pricing_assets.lib.serving.intervals import DEFAULT_LEVEL, fit_intervals

        by_model = {inputs[a]: p for a, p in preds.items()}
        base, model_prices = align_predictions(by_model)  # columns: the sorted model names
        out, weights = blend_oof_predictions(base, model_prices, sorted(by_model))
        intervals = fit_intervals(
            out["price"].to_numpy(), out["pred_price"].to_numpy(), model_prices, sorted(by_model), DEFAULT_LEVEL
        )
        contracts = [
            enforce_contract(out, ModelPredictions, "price_blend"),
            enforce_contract(weights, BlendWeights, "blend_weights"),
        ]
        yield dg.Output(
            out,
            output_name="price_blend",
            metadata={
                **_oof_metadata(out),
                # unrounded: they sum to 1
                "weights": dg.MetadataValue.json(dict(zip(weights["model"], weights["weight"].astype(float)))),
                "model_oof_smape": dg.MetadataValue.json(
                    dict(zip(weights["model"], weights["oof_smape"].astype(float)))
                ),
            },
        )
        yield dg.Output(
            weights,
            output_name="blend_weights",
            metadata={"dagster/row_count": len(weights), "preview": preview(weights)},
        )
        yield dg.Output(
            intervals,
            output_name="price_intervals",
            metadata={"level": intervals.level, "beta": round(intervals.beta, 4), "calibration_rows": len(out)},
        )
        yield from contracts

    return price_blend


#: The promoted blend's OOF predictions, stored by ``serving_model`` when it promotes a retrain.
PROMOTED_BLEND = dg.AssetKey("promoted_blend")


def promoted_blend(io_manager) -> "pd.DataFrame | None":
    """The champion: ``promoted_blend`` as stored (a ``ModelPredictions`` frame), loaded through the
    ``parquet_io_manager`` that stores it; None before the first promotion. Read without a graph
    edge: ``promoted_blend`` is downstream of the check that reads it."""
    try:
        return io_manager.load_input(dg.build_input_context(asset_key=PROMOTED_BLEND))
    except FileNotFoundError:
        return None


@dg.asset_check(
    asset="price_blend",
    name=MODEL_GATE_CHECK,
    blocking=True,
    required_resource_keys={"parquet_io_manager", "model_gate"},
    description="OOF SMAPE on the labeled rows both scored is not worse than the promoted model's by more than "
    "ModelGateResource.tolerance_smape; else serving_model is not rebuilt and price_predictions keeps the "
    "previous predictions. Its own step: a rejected retrain still stores blend_weights and its evaluation_report.",
)
def model_gate_check(context: dg.AssetCheckExecutionContext, price_blend) -> dg.AssetCheckResult:
    """The retrained blend against the promoted one (``lib.models.model_gate``), on the labeled rows
    both scored with the same price (``model_gate``: ``ModelGateResource``)."""
    from pricing_assets.lib.models.model_gate import compare_with_champion

    model_gate = context.resources.model_gate
    gate = compare_with_champion(
        price_blend,
        promoted_blend(context.resources.parquet_io_manager),
        tolerance_smape=model_gate.tolerance_smape,
        min_rows=model_gate.min_rows,
    )
    (context.log.info if gate.passed else context.log.error)(f"model gate: {gate.reason}")
    return dg.AssetCheckResult(
        passed=gate.passed, severity=dg.AssetCheckSeverity.ERROR, description=gate.reason, metadata=gate.metadata()
    )


@dg.definitions
def models_defs() -> dg.Definitions:
    """Every enabled registry model with its out-of-fold predictions, and the blend (gated by ``model_gate``)."""
    specs = price_models(current_settings())
    return dg.Definitions(
        assets=[*(build_price_model_asset(s) for s in specs), build_blend_asset(specs)], asset_checks=[model_gate_check]
    )
