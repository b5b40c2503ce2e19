"""The whole asset graph on a small real slice: every asset materialised, every contract check
passed, counts reconciled, and a second run of the embedding assets embeds nothing."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pricing_assets.definitions import build_defs
from pricing_assets.settings import load_settings
from pricing_tests.helpers import TEXT_MODEL


@pytest.fixture(scope="module")
def instance(materialized_home):
    return dg.DagsterInstance.from_config(str(materialized_home["home"]))


@pytest.fixture(scope="module")
def defs(materialized_home):
    return build_defs(load_settings({"DAGSTER_HOME": str(materialized_home["home"]), "PRICING_IMAGES_OFFLINE": "1"}))


def _meta(instance, key, partition=None):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey.from_coercible(key), asset_partitions=[partition] if partition else None
        ),
        limit=1,
    ).records
    assert records, f"{key} [{partition}] was never materialised"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _stored_oof_smape(instance, key) -> float:
    """SMAPE (0-200) recomputed from the stored OOF predictions of ``key`` (its parquet file)."""
    from pricing_assets.lib.models.metrics import smape

    path = instance.get_latest_materialization_event(dg.AssetKey(key)).asset_materialization.metadata["path"].value
    df = pd.read_parquet(path)
    assert len(df) > 0, key
    return float(smape(df["price"].to_numpy(), df["pred_price"].to_numpy()))


def test_every_asset_is_materialised(instance, defs):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        if graph.get(key).partitions_def is None:
            assert instance.get_latest_materialization_event(key) is not None, key.to_user_string()
        else:
            assert set(instance.get_materialized_partitions(key)) == {"lab", "unlabeled"}, key.to_user_string()


def test_every_contract_check_passed(instance, defs):
    check_keys = list(defs.resolve_asset_graph().asset_check_keys)
    assert len(check_keys) >= 15
    for ck in check_keys:
        evals = instance.event_log_storage.get_asset_check_execution_history(ck, limit=5)
        assert evals, f"{ck.to_user_string()} never ran"
        assert all(e.status.value == "SUCCEEDED" for e in evals), ck.to_user_string()


def test_counts_reconcile_per_batch(instance, slice_files):
    for batch, n in (("lab", slice_files["n_labeled"]), ("unlabeled", slice_files["n_unlabeled"])):
        raw = _meta(instance, "raw_catalog", batch)
        assert raw["rows_in"] == n == raw["rows"] + raw["quarantined_rows"]
        assert _meta(instance, "catalog_items", batch)["rows"] == raw["rows"]
        assert _meta(instance, "product_images", batch)["rows"] == raw["rows"]
        assert _meta(instance, "ocr_text", batch)["rows"] == raw["rows"]
        assert _meta(instance, ["embeddings", "text", TEXT_MODEL], batch)["rows"] == raw["rows"]
    assert _meta(instance, "raw_catalog", "lab")["labeled_rows"] == slice_files["n_labeled"]
    assert _meta(instance, "raw_catalog", "unlabeled")["labeled_rows"] == 0


def test_bundled_photos_are_found_and_embedded(instance, slice_files):
    imgs = _meta(instance, "product_images", "lab")
    counts = imgs["status_counts"]
    assert counts["ok"] + counts.get("corrupt", 0) == slice_files["n_images"]
    assert counts["missing"] == slice_files["n_labeled"] - slice_files["n_images"]
    assert _meta(instance, ["embeddings", "image", "effnet_lite0"], "lab")["rows"] == counts["ok"]
    assert _meta(instance, "ocr_text", "lab")["images_read"] == counts["ok"]


def test_global_assets_report_model_figures(instance, slice_files):
    products = _meta(instance, "products")  # the training set: labeled rows only
    assert products["rows"] == products["labeled_rows"] == slice_files["n_labeled"]
    assert products["unlabeled_rows_left_to_batch_predictions"] == slice_files["n_unlabeled"]
    assert products["retrain_reason"] == "first training set" and len(products["labeled_fingerprint"]) == 64
    lgb = _meta(instance, "lightgbm_predictions")
    assert lgb["oof_smape"] == pytest.approx(_stored_oof_smape(instance, "lightgbm_predictions"), abs=1e-3)
    assert lgb["labeled_rows"] == slice_files["n_labeled"]
    dist = _meta(instance, "lightgbm_distributional_predictions")
    assert dist["oof_smape"] == pytest.approx(
        _stored_oof_smape(instance, "lightgbm_distributional_predictions"), abs=1e-3
    )
    assert dist["labeled_rows"] == slice_files["n_labeled"]
    blend = _meta(instance, "price_blend")
    assert abs(sum(blend["weights"].values()) - 1) < 1e-3  # weights are rounded to 4 decimals in metadata
    assert set(blend["weights"]) == {"lightgbm", "lightgbm_distributional", "tfidf_ridge"}  # fusion MLP: opt-in
    report = _meta(instance, "evaluation_report")
    assert report["blend_oof_smape"] == pytest.approx(blend["oof_smape"], abs=1e-3)
    assert "data:image/png;base64," in report["pred_vs_actual"]
    served = _meta(instance, "serving_model")
    assert (
        served["labeled_rows"] == slice_files["n_labeled"]
        and served["labeled_fingerprint"] == products["labeled_fingerprint"]
    )
    assert served["blend_weights"] == blend["weights"]  # serving packages the blend's weights as stored, not refitted
    assert {k: v for k, v in served["oof_smape"].items() if k != "blend"} == blend["model_oof_smape"]
    preds = _meta(instance, "price_predictions")
    assert preds["rows"] == slice_files["n_unlabeled"] and preds["model_version"] == served["model_version"]
    assert _meta(instance, "batch_predictions", "unlabeled")["dagster/row_count"] == slice_files["n_unlabeled"]
    assert _meta(instance, "batch_predictions", "lab")["dagster/row_count"] == 0
    signal = _meta(instance, "embedding_signal_report")
    assert signal["models"] == 2 and TEXT_MODEL in signal["signal_table"] and "effnet_lite0" in signal["signal_table"]


def test_stored_outputs_line_up(instance, defs, slice_files):
    fm = defs.load_asset_value("feature_matrix", instance=instance)
    assert len(fm) == (fm["fold"] >= 0).sum() == slice_files["n_labeled"]
    # both stacked ridges (full text, title) are present for every row, in log1p(USD) range
    for col in ("stack_tfidf_ridge", "stack_title_ridge"):
        assert fm[col].notna().all() and fm[col].between(0, np.log1p(1e5)).all(), col
    emb = defs.load_asset_value(["embeddings", "text", TEXT_MODEL], instance=instance, partition_key="lab")
    m = np.stack(emb["embedding"].to_numpy())
    assert m.shape == (slice_files["n_labeled"], 384)
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-4)
    index = defs.load_asset_value("product_index", instance=instance)
    assert index.ntotal == slice_files["n_labeled"] and index.d == 384
    # lightgbm_model is the refit on all labeled rows (3 seed bags, every tree used)
    from pricing_assets.lib.models.lightgbm_regression import REFIT_ROUNDS_FACTOR

    boosters = defs.load_asset_value("lightgbm_model", instance=instance)
    meta = _meta(instance, "lightgbm_model")
    assert len(boosters) == meta["boosters"] == 3 and all(b.best_iteration == 0 for b in boosters)
    assert [b.num_trees() for b in boosters] == [meta["refit_rounds"]] * 3
    assert meta["refit_rounds"] == round(REFIT_ROUNDS_FACTOR * np.mean(meta["cv_best_iterations"]))
    # the stored serving model holds those boosters; a batch's stored prices are what it gives them
    model = defs.load_asset_value("serving_model", instance=instance)
    assert [b.num_trees() for b in model.models["lightgbm"]] == [meta["refit_rounds"]] * 3
    scored = defs.load_asset_value("batch_predictions", instance=instance, partition_key="unlabeled")
    unl = pd.read_csv(slice_files["unlabeled"], dtype={"sample_id": str})
    assert sorted(scored["sample_id"]) == sorted(unl["sample_id"]) and (scored["model_version"] == model.version).all()
    blend = np.exp(sum(w * np.log(scored[f"pred_{n}"]) for n, w in model.blend.items()))
    np.testing.assert_allclose(scored["price"].to_numpy(), blend.to_numpy(), rtol=1e-9)


def test_second_run_embeds_nothing(instance, defs):
    res = dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=dict(defs.resources),
        partition_key="lab",
        selection=dg.AssetSelection.groups("embeddings"),
    )
    assert res.success
    for key in (["embeddings", "text", TEXT_MODEL], ["embeddings", "image", "effnet_lite0"]):
        m = _meta(instance, key, "lab")
        assert m["computed"] == 0 and m["cached"] >= 1, (key, m)


def test_a_failed_batch_does_not_block_the_global_assets(
    instance, defs, tmp_path, slice_files, materialized_home, monkeypatch
):
    """Run last: registers a batch whose file breaks the catalog contract, then rebuilds products."""
    from pricing_assets import cli

    monkeypatch.setenv("DAGSTER_HOME", str(materialized_home["home"]))

    bad = tmp_path / "broken.csv"
    bad.write_text(
        "sample_id,text\n1,hello\n"
    )  # `pricing ingest` refuses this header; store it as a sensor-less drop would
    from pricing_assets.lib.catalog.batches import store_batch
    from pricing_assets.partitions import CATALOG_BATCHES

    store_batch(str(bad), str(materialized_home["home"] / "storage" / "batches"), "broken")
    instance.add_dynamic_partitions(CATALOG_BATCHES, ["broken"])
    res = cli.materialize(instance, defs, batches=["broken"])
    assert list(res["failed"]) == ["batch broken"]
    assert "broken.csv" in res["failed"]["batch broken"] and "catalog_content" in res["failed"]["batch broken"]
    res = dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=dict(defs.resources),
        selection=dg.AssetSelection.assets("products"),
        run_config={"ops": {"products": {"config": {"retrain_unchanged": True}}}},
    )
    assert res.success
    assert _meta(instance, "products")["rows"] == slice_files["n_labeled"]


def test_every_served_price_has_its_interval(instance, defs, materialized_home, tmp_path):
    from pricing_tests.helpers import run_pricing_here

    preds = defs.load_asset_value("price_predictions", instance=instance)
    assert (
        len(preds) > 0
        and (preds["price_low"] <= preds["price"]).all()
        and (preds["price"] <= preds["price_high"]).all()
    )
    report = _meta(instance, "evaluation_report")
    assert report["interval_level"] == 0.8
    assert abs(report["interval_oof_coverage"] - 0.8) <= 0.1  # 120 labeled rows: cross-fitted, noisy
    assert (
        "q5" in report["intervals_by_price_quintile"] and "data:image/png;base64," in report["interval_coverage_plot"]
    )
    out = tmp_path / "with_intervals.csv"
    run_pricing_here(["predictions", "--out", out, "--intervals"], materialized_home["env"])
    df = pd.read_csv(out, dtype={"sample_id": str})
    assert list(df.columns) == ["sample_id", "price", "price_low", "price_high"] and len(df) == len(preds)
    np.testing.assert_allclose(df["price_high"].to_numpy(), preds["price_high"].to_numpy())
    plain = pd.read_csv(materialized_home["csv"])
    assert list(plain.columns) == ["sample_id", "price"]  # the default export stays the competition format


def test_every_priced_product_has_labeled_comparables_from_the_stored_index(instance, defs, slice_files):
    comps = defs.load_asset_value("price_explanations", instance=instance, partition_key="unlabeled")
    preds = defs.load_asset_value("batch_predictions", instance=instance, partition_key="unlabeled")
    products = defs.load_asset_value("products", instance=instance).set_index("sample_id")
    assert set(comps["sample_id"]) == set(preds["sample_id"].astype(str))
    assert (comps.groupby("sample_id").size() == 5).all()
    # every comparable is a labeled product carrying its stored price
    assert comps["comparable_id"].isin(products.index).all()
    np.testing.assert_allclose(
        comps["comparable_price"].to_numpy(), products.loc[comps["comparable_id"], "price"].to_numpy()
    )
    assert comps.groupby("sample_id")["similarity"].apply(lambda s: s.is_monotonic_decreasing).all()
    assert set(comps["view"]) <= {f"text:{TEXT_MODEL}", "tfidf"}


def test_every_priced_product_has_its_drivers_from_the_serving_model(instance, defs):
    drivers = defs.load_asset_value("price_drivers", instance=instance, partition_key="unlabeled")
    preds = defs.load_asset_value("batch_predictions", instance=instance, partition_key="unlabeled")
    assert set(drivers["sample_id"]) == set(preds["sample_id"].astype(str))
    assert (drivers.groupby("sample_id").size() == 5).all()
    assert set(drivers["model_version"]) == set(preds["model_version"]) and set(drivers["model"]) == {"lightgbm"}
    np.testing.assert_allclose(drivers["effect"], np.exp(drivers["contribution"]))
    assert drivers.groupby("sample_id")["contribution"].apply(lambda c: c.abs().is_monotonic_decreasing).all()
    assert not drivers["feature"].str.startswith(("knn_", "uknn_")).any()  # readable names, not columns
    lab = defs.load_asset_value("price_drivers", instance=instance, partition_key="lab")
    assert len(lab) == 0  # a batch of labeled products has no price to explain


def test_the_serving_model_searches_the_stored_product_index(instance, defs):
    model = defs.load_asset_value("serving_model", instance=instance)
    index = defs.load_asset_value("product_index", instance=instance)
    meta = _meta(instance, "product_index")
    assert set(model.indexes) == {meta["model"]} and model.indexes[meta["model"]].ntotal == index.ntotal == model.knn.n
    queries = model.knn.text[meta["model"]][:5]
    for a, b in zip(model.indexes[meta["model"]].search(queries, 3), index.search(queries, 3)):
        np.testing.assert_array_equal(a, b)  # the index promoted with the model is the stored one
