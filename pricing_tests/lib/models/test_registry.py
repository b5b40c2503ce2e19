"""The price-model registry (``lib.models.registry``): one entry makes a model a trained asset, an input
of the blend, a part of the serving model and of the evaluation report, and a figure of the CLI."""

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.models import registry as price_models
from pricing_assets.lib.models.cross_validation import CvResult
from pricing_assets.lib.models.registry import (
    PRICE_MODELS,
    PriceModelSpec,
    TrainedModel,
    enabled_price_models,
    oof_predictions_frame,
    training_inputs,
)


@dataclass(frozen=True)
class MedianConfig:
    """The dummy model's one setting."""

    shrink: float = 1.0


def _train_median(inputs, y_log1p, folds, config: MedianConfig, device="cpu", log=None) -> TrainedModel:
    """Per fold: the median log1p price of the other folds (OOF); fitted: the median of every row."""
    oof = np.empty(len(y_log1p))
    for f in np.unique(folds):
        oof[folds == f] = config.shrink * np.median(y_log1p[folds != f])
    return TrainedModel(
        float(config.shrink * np.median(y_log1p)),
        CvResult(oof, models=[]),
        {"median_usd": float(np.expm1(np.median(y_log1p)))},
    )


def _predict_median(fitted, inputs, device="cpu") -> np.ndarray:
    return np.full(len(inputs.sample_ids), fitted)


DUMMY = PriceModelSpec(
    "median_price", "The labeled rows' median log price.", ("text",), MedianConfig, _train_median, _predict_median
)


def test_default_models_and_the_opt_in_one():
    assert [s.name for s in enabled_price_models()] == ["lightgbm", "lightgbm_distributional", "tfidf_ridge"]
    assert [s.name for s in enabled_price_models(["fusion_mlp"])] == [
        "fusion_mlp",
        "lightgbm",
        "lightgbm_distributional",
        "tfidf_ridge",
    ]
    with pytest.raises(KeyError, match="unknown price models \\['nope'\\]"):
        enabled_price_models(["nope"])
    assert price_models.stacked_model().name == "tfidf_ridge"
    assert {s.model_asset for s in PRICE_MODELS.values()} >= {"lightgbm_model", "tfidf_ridge_model"}


def test_one_registry_entry_adds_a_model_everywhere(monkeypatch):
    """A dummy model added with one entry: its assets exist, the blend, the serving model and the
    evaluation report read them, and the CLI's OOF figures list it."""
    from pricing_assets.definitions import build_defs
    from pricing_assets.instance_state import oof_smape_assets
    from pricing_assets.settings import load_settings

    before = build_defs(load_settings({})).resolve_asset_graph()
    monkeypatch.setitem(PRICE_MODELS, DUMMY.name, DUMMY)
    graph = build_defs(load_settings({})).resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys - {k.to_user_string() for k in before.get_all_asset_keys()} == {
        "median_price_model",
        "median_price_predictions",
    }

    def parents(key):
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert parents("median_price_model") == {"products"}  # it reads text only
    assert "median_price_predictions" in parents("price_blend") and "median_price_predictions" in parents(
        "evaluation_report"
    )
    assert "median_price_model" in parents("serving_model")
    assert "median_price_predictions" in oof_smape_assets()


def test_the_dummy_models_asset_trains_and_reports(monkeypatch, tmp_path):
    from pricing_assets.defs.models import build_price_model_asset
    from pricing_assets.io_managers import PricingIOManager
    from pricing_assets.resources import DeviceResource

    products = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(20)],
            "fold": np.arange(20) % 4,
            "price": np.arange(1.0, 21.0),
            "item_name": "x",
            "bullets": "",
            "description": "",
        }
    )

    @dg.asset(name="products")
    def _products() -> pd.DataFrame:
        return products

    res = dg.materialize(
        [_products, build_price_model_asset(DUMMY)],
        resources={
            "io_manager": PricingIOManager(base_path=str(tmp_path), kind="pickle"),
            "parquet_io_manager": PricingIOManager(base_path=str(tmp_path), kind="parquet"),
            "device": DeviceResource(),
        },
        run_config={"ops": {"median_price_model": {"config": {"shrink": 1.0}}}},
    )
    assert res.success
    preds = res.output_for_node("median_price_model", "median_price_predictions")
    expected = [np.expm1(np.median(np.log1p(products.loc[products["fold"] != f, "price"]))) for f in products["fold"]]
    np.testing.assert_allclose(preds["pred_price"], expected)
    assert res.output_for_node("median_price_model", "median_price_model") == pytest.approx(
        np.median(np.log1p(products["price"]))
    )
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in res.get_asset_materialization_events()}
    assert meta["median_price_model"]["median_usd"].value == pytest.approx(
        np.sqrt(11 * 12) - 1
    )  # expm1 of the mean of log(11), log(12)
    assert meta["median_price_predictions"]["labeled_rows"].value == 20


def test_training_inputs_refuse_unlabeled_rows_and_align_text():
    products = pd.DataFrame(
        {"sample_id": ["a", "b", "c"], "fold": [0, 1, 1], "price": [1.0, 2.0, 3.0], "item_name": ["A", "B", "C"]}
    )
    fm = pd.DataFrame({"sample_id": ["c", "a", "b"], "fold": [1, 0, 1], "price": [3.0, 1.0, 2.0], "f": [0.3, 0.1, 0.2]})
    rows, inputs, y, folds = training_inputs(("features", "text"), feature_matrix=fm, products=products)
    assert (
        rows["sample_id"].tolist() == ["c", "a", "b"]
        and inputs.text.str.startswith(("C", "A", "B")).tolist() == [True] * 3
    )
    assert (
        inputs.text.tolist()[0].startswith("C")
        and np.allclose(y, np.log1p([3.0, 1.0, 2.0]))
        and folds.tolist() == [1, 0, 1]
    )
    with pytest.raises(ValueError, match="without a price or fold"):
        training_inputs(("text",), products=products.assign(price=[1.0, np.nan, 3.0]))
    with pytest.raises(ValueError, match="without a price or fold"):
        training_inputs(("text",), products=products.assign(fold=[0, -1, 1]))
    with pytest.raises(ValueError, match="no input for \\['embeddings'\\]"):
        training_inputs(("text", "embeddings"), products=products)


def test_oof_predictions_frame():
    rows = pd.DataFrame({"sample_id": ["a", "b"], "fold": [0, 1], "price": [5.0, 7.0]})
    out = oof_predictions_frame(rows, np.log1p([4.0, -1.0]))
    assert out.columns.tolist() == ["sample_id", "fold", "price", "pred_price"]
    np.testing.assert_allclose(out["pred_price"], [4.0, 0.01])  # clipped to a positive price
    with pytest.raises(ValueError, match="1 predictions for 2 rows"):
        oof_predictions_frame(rows, np.zeros(1))
