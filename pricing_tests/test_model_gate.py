"""The model gate: a retrain whose blend is worse than the promoted one is stored but not promoted.

Unit tests of ``lib.models.model_gate`` and a Dagster run of the real ``price_blend`` / ``serving_model``
assets fed by stand-in model assets (real sample prices, controlled errors), so a deliberately
degraded retrain can be made; ``price_predictions`` over stand-in scored batches.
"""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pricing_assets.checks import MODEL_GATE_CHECK
from pricing_assets.defs.models import build_blend_asset, model_gate_check
from pricing_assets.defs.serving import build_evaluation_asset, build_serving_model_asset, price_predictions
from pricing_assets.instance_state import gated_retrain, predictions_export_verdict
from pricing_assets.lib.models.metrics import smape
from pricing_assets.lib.models.model_gate import compare_with_champion
from pricing_assets.lib.models.registry import PRICE_MODELS
from pricing_assets.resources import CrossValidationResource, ModelGateResource, StorageResource
from pricing_assets.settings import current_registry
from pricing_tests.helpers import LABELED_CSV

N_LAB, N_UNL = 200, 40


def _frame(noise: float, seed: int, n_lab: int = N_LAB, n_unl: int = N_UNL) -> pd.DataFrame:
    """ModelPredictions-shaped frame: real prices of the sample, predictions off by lognormal noise;
    ``n_unl`` rows without a price (fold -1: a champion stored by an older release may hold them)."""
    price = pd.read_csv(LABELED_CSV, usecols=["price"])["price"].to_numpy(float)[: n_lab + n_unl]
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n_lab + n_unl)],
            "fold": np.r_[np.arange(n_lab) % 5, -np.ones(n_unl, dtype=int)],
            "price": np.r_[price[:n_lab], np.full(n_unl, np.nan)],
            "pred_price": price * np.exp(rng.normal(0, noise, n_lab + n_unl)),
        }
    )


# ------------------------------------------------------------------------------------------------
# lib.models.model_gate
# ------------------------------------------------------------------------------------------------


def test_first_promotion_passes():
    g = compare_with_champion(_frame(0.3, 0), None)
    assert g.passed and g.rows_compared == 0 and "first promotion" in g.reason


def test_worse_by_more_than_the_tolerance_fails_with_both_figures():
    champ, cand = _frame(0.2, 0), _frame(0.8, 1)
    g = compare_with_champion(cand, champ, tolerance_smape=1.0)
    lab = champ["fold"] >= 0
    assert not g.passed and g.rows_compared == N_LAB
    assert g.champion_smape == pytest.approx(smape(champ.loc[lab, "price"], champ.loc[lab, "pred_price"]))
    assert g.candidate_smape == pytest.approx(smape(cand.loc[lab, "price"], cand.loc[lab, "pred_price"]))
    assert g.candidate_smape > g.champion_smape + 1.0
    assert "NOT promoted" in g.reason
    assert compare_with_champion(cand, champ, tolerance_smape=g.candidate_smape - g.champion_smape + 0.01).passed


def test_only_rows_both_scored_with_the_same_price_count():
    champ = _frame(0.2, 0, n_lab=100)
    cand = _frame(0.2, 0, n_lab=N_LAB)  # 100 more labeled rows, new to the candidate
    cand.loc[:9, "price"] *= 2  # ten relabelled rows
    g = compare_with_champion(cand, champ)
    assert g.rows_compared == 90


def test_too_few_common_rows_passes_and_says_so():
    g = compare_with_champion(_frame(0.9, 1), _frame(0.1, 0).head(10))
    assert g.passed and g.rows_compared == 10 and "not compared" in g.reason


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="tolerance"):
        compare_with_champion(_frame(0.2, 0), None, tolerance_smape=-1)
    with pytest.raises(KeyError, match="pred_price"):
        compare_with_champion(_frame(0.2, 0), _frame(0.2, 0).drop(columns="pred_price"))


def test_the_champion_is_the_stored_promoted_blend(tmp_path):
    """``promoted_blend`` reads the stored ``promoted_blend`` asset (no side file): None before any
    promotion, else the frame as stored."""
    from pricing_assets.defs.models import promoted_blend
    from pricing_assets.io_managers import PricingIOManager

    io = PricingIOManager(base_path=str(tmp_path), kind="parquet").create_io_manager(None)
    assert promoted_blend(io) is None
    f = _frame(0.2, 0)
    f.to_parquet(tmp_path / "promoted_blend.parquet", index=False)
    pd.testing.assert_frame_equal(promoted_blend(io), f)


# ------------------------------------------------------------------------------------------------
# in Dagster: a degraded retrain is blocked
# ------------------------------------------------------------------------------------------------


#: Every registry model (the opt-in fusion MLP too).
SPECS = list(PRICE_MODELS.values())


def _stand_in_models(state: dict) -> list:
    """One asset per model prediction input of the blend, returning ``state[name]``; stand-ins for
    the other inputs of ``serving_model`` (its fitted artifacts: opaque objects here)."""

    def make(name):
        @dg.asset(name=name, io_manager_key="parquet_io_manager", group_name="models")
        def _a() -> pd.DataFrame:
            return state[name]

        return _a

    def make_object(name):
        @dg.asset(name=name, group_name="models")
        def _o():
            return f"fitted {name}"

        return _o

    @dg.asset(name="products", io_manager_key="parquet_io_manager", group_name="training")
    def _products():
        return state["lightgbm_predictions"][["sample_id", "fold", "price"]].assign(item_name="a product")

    objects = ["knn_reference", "product_index", "feature_space", *(s.model_asset for s in SPECS)]
    return [make(s.predictions_asset) for s in SPECS] + [make_object(n) for n in objects] + [_products]


@pytest.fixture()
def gated(tmp_path):
    from pricing_assets.io_managers import PricingIOManager

    state = {}
    assets = [
        *_stand_in_models(state),
        build_blend_asset(SPECS),
        build_serving_model_asset(current_registry(), SPECS),
        build_evaluation_asset(SPECS),
        model_gate_check,
    ]
    storage = StorageResource(base_path=str(tmp_path / "storage"))
    resources = {
        "parquet_io_manager": PricingIOManager(base_path=str(tmp_path / "storage" / "assets"), kind="parquet"),
        "io_manager": PricingIOManager(base_path=str(tmp_path / "storage" / "assets"), kind="pickle"),
        "storage": storage,
        "model_gate": ModelGateResource(),
        "cv": CrossValidationResource(),
    }
    instance = dg.DagsterInstance.ephemeral()

    def run(noise: float, **gate):
        for i, spec in enumerate(SPECS):
            state[spec.predictions_asset] = _frame(noise, seed=10 + i, n_unl=0)
        res = dict(resources, model_gate=ModelGateResource(**gate)) if gate else resources
        return dg.materialize(assets, instance=instance, resources=res, raise_on_error=False)

    return run, instance, storage


def _promoted_run_ids(instance) -> list[str]:
    return [r.run_id for r in instance.fetch_materializations(dg.AssetKey("serving_model"), limit=10).records]


def test_degraded_retrain_is_not_promoted(gated):
    run, instance, storage = gated
    good = run(0.2)
    assert good.success
    model = good.output_for_node("serving_model", "serving_model")
    assert model.blend and abs(sum(model.blend.values()) - 1) < 1e-9 and model.labeled_rows == N_LAB
    assert set(model.blend) == set(model.models) == set(PRICE_MODELS)  # one entry per registry model
    assert model.models["lightgbm"] == "fitted lightgbm_model"  # packaged as stored, not refitted
    weights = good.output_for_node("price_blend", "blend_weights")
    assert dict(zip(weights["model"], weights["weight"])) == model.blend
    champion = good.output_for_node("serving_model", "promoted_blend")  # stored with the serving model
    assert champion is not None and len(champion) == N_LAB
    assert gated_retrain(instance) is None

    bad = run(1.0)  # every model much worse: the retrained blend loses > 1 point of OOF SMAPE
    assert not bad.success
    gate = [e for e in bad.get_asset_check_evaluations() if e.check_name == MODEL_GATE_CHECK]
    assert len(gate) == 1 and not gate[0].passed
    assert gate[0].metadata["candidate_oof_smape"].value > gate[0].metadata["champion_oof_smape"].value + 1.0
    assert "NOT promoted" in gate[0].description
    # price_blend was stored (a failed blocking check doesn't undo that), the serving model was not
    stored = {e.asset_key.to_user_string() for e in bad.get_asset_materialization_events()}
    assert "price_blend" in stored and "serving_model" not in stored
    # the gate blocks promotion, not evaluation: the rejected retrain has its report, with its blend
    assert "evaluation_report" in stored
    report = {e.asset_key.to_user_string(): e for e in bad.get_asset_materialization_events()}["evaluation_report"]
    assert report.materialization.metadata["blend_oof_smape"].value == pytest.approx(
        gate[0].metadata["candidate_oof_smape"].value, abs=1e-3
    )
    assert _promoted_run_ids(instance) == [good.run_id]
    stored = pd.read_parquet(Path(storage.base_path) / "assets" / "promoted_blend.parquet")
    pd.testing.assert_frame_equal(stored, champion)  # still the first one
    held = gated_retrain(instance)
    assert held is not None and "model gate" in held and bad.run_id in held


def test_a_looser_tolerance_promotes_the_same_retrain(gated):
    run, instance, _ = gated
    assert run(0.2).success
    res = run(1.0, tolerance_smape=200.0)
    assert res.success
    assert _promoted_run_ids(instance)[0] == res.run_id
    assert gated_retrain(instance) is None


@pytest.fixture()
def published(tmp_path):
    """Stand-in ``batch_predictions`` of two batches and ``products``, and the real ``price_predictions``."""
    from pricing_assets.io_managers import PricingIOManager
    from pricing_assets.partitions import CATALOG_BATCHES, catalog_batches

    scored = {
        "b1": pd.DataFrame({"sample_id": ["1", "2", "3"], "price": [5.0, 6.0, 7.0], "model_version": "v1"}),
        "b2": pd.DataFrame({"sample_id": ["3", "4"], "price": [8.0, 9.0], "model_version": "v1"}),
    }

    @dg.asset(
        name="batch_predictions",
        partitions_def=catalog_batches,
        io_manager_key="parquet_io_manager",
        group_name="scoring",
    )
    def _scored(context) -> pd.DataFrame:
        return scored[context.partition_key]

    @dg.asset(name="products", io_manager_key="parquet_io_manager", group_name="training")
    def _products() -> pd.DataFrame:
        return pd.DataFrame({"sample_id": ["2", "9"], "price": [3.0, 4.0]})  # "2" got a price since

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CATALOG_BATCHES, ["b1", "b2"])
    resources = {"parquet_io_manager": PricingIOManager(base_path=str(tmp_path / "assets"), kind="parquet")}
    for b in ("b1", "b2"):
        assert dg.materialize([_scored], instance=instance, resources=resources, partition_key=b).success
    assert dg.materialize([_products], instance=instance, resources=resources).success
    return [_scored, _products, price_predictions], instance, resources


def test_price_predictions_are_each_unlabeled_rows_latest_price(published):
    assets, instance, resources = published
    res = dg.materialize(
        assets, instance=instance, resources=resources, selection=dg.AssetSelection.assets("price_predictions")
    )
    out = res.output_for_node("price_predictions").sort_values("sample_id").reset_index(drop=True)
    assert out["sample_id"].tolist() == ["1", "3", "4"]  # "2" labeled since; "3" once
    assert out["price"].tolist() == [5.0, 8.0, 9.0] and out["batch"].tolist() == ["b1", "b2", "b2"]  # latest batch wins
    assert set(out["model_version"]) == {"v1"}
    assert predictions_export_verdict(instance).ok


def test_predictions_failing_their_contract_are_not_stored_nor_exported(published, monkeypatch, tmp_path):
    import pandera.pandas as pa

    from pricing_assets.cli import ExportRefused, write_predictions
    from pricing_assets.defs import serving

    assets, instance, resources = published
    select = dg.AssetSelection.assets("price_predictions")
    good = dg.materialize(assets, instance=instance, resources=resources, selection=select)

    class NoPriceAbove1(pa.DataFrameModel):  # a contract the real predictions break
        sample_id: pa.typing.Series[str]
        price: pa.typing.Series[float] = pa.Field(le=1.0)

    monkeypatch.setattr(serving, "PricePredictions", NoPriceAbove1)
    bad = dg.materialize(assets, instance=instance, resources=resources, selection=select, raise_on_error=False)
    assert not bad.success
    (failure,) = [e for e in bad.all_events if e.is_step_failure]
    assert failure.step_key == "price_predictions" and "nothing stored" in failure.event_specific_data.error.message
    assert [r.run_id for r in instance.fetch_materializations(dg.AssetKey("price_predictions"), limit=10).records] == [
        good.run_id
    ]
    verdict = predictions_export_verdict(instance)
    assert not verdict.ok and bad.run_id in verdict.problem and "failed" in verdict.problem
    defs = dg.Definitions(assets=assets, resources=resources)
    with pytest.raises(ExportRefused, match=bad.run_id):
        write_predictions(instance, defs, str(tmp_path / "p.csv"))
    assert not (tmp_path / "p.csv").exists()
