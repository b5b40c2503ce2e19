"""Realized accuracy end to end through the ``pricing`` CLI: products are priced, their true prices
arrive later in a labeled file, and ``pricing status`` reports the served SMAPE per model version,
equal to the SMAPE of the exported prices against the arrived ones."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.models.metrics import smape
from pricing_tests.helpers import run_pricing_here, sample_slice

N_HIDDEN = 30


@pytest.fixture(scope="module")
def arrived(tmp_path_factory):
    """A home where 120 labeled rows trained the model, 30 more real rows were priced with their price
    hidden, their predictions exported, then the 30 true prices arrived and the pipeline ran again."""
    d = tmp_path_factory.mktemp("served")
    lab, _ = sample_slice(n_labeled=120 + N_HIDDEN)
    train, hidden = lab.iloc[:120], lab.iloc[120:]
    train.to_csv(d / "train.csv", index=False)
    hidden.drop(columns="price").to_csv(d / "new_products.csv", index=False)  # an unlabeled file
    hidden.to_csv(d / "their_prices.csv", index=False)
    env = {**os.environ, "DAGSTER_HOME": str(d / "home"), "PRICING_IMAGES_OFFLINE": "1"}
    env.pop("PRICING_STORAGE", None)
    run_pricing_here(["ingest", d / "train.csv"], env)
    run_pricing_here(["ingest", d / "new_products.csv"], env)
    run_pricing_here(["materialize"], env)
    run_pricing_here(["predictions", "--out", d / "served.csv", "--intervals"], env)
    before = json.loads(run_pricing_here(["status", "--json"], env).stdout)
    run_pricing_here(["ingest", d / "their_prices.csv"], env)
    run_pricing_here(["materialize"], env)
    after = run_pricing_here(["status", "--json"], env).stdout
    text = run_pricing_here(["status"], env).stdout
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(d / "home"))
    key = dg.AssetCheckKey(dg.AssetKey("batch_predictions"), "drift_photo_share")
    drift = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
    return {
        "drift": drift,
        "hidden": hidden,
        "served": pd.read_csv(d / "served.csv", dtype={"sample_id": str}),
        "before": before,
        "after": json.loads(after),
        "text": text,
    }


def test_no_served_accuracy_before_the_prices_arrive(arrived):
    assert arrived["before"]["served_accuracy"] == []


def test_status_reports_the_served_smape_of_the_exported_prices(arrived):
    acc = arrived["after"]["served_accuracy"]
    served = arrived["served"].merge(
        arrived["hidden"][["sample_id", "price"]].astype({"sample_id": str}),
        on="sample_id",
        suffixes=("_served", "_true"),
    )
    assert len(served) == N_HIDDEN
    expected = smape(served["price_true"].to_numpy(), served["price_served"].to_numpy())
    first_version = arrived["before"]["predictions"]["model_version"]
    assert [a["model_version"] for a in acc] == [first_version]  # the retrained model served none of them
    assert acc[0]["rows"] == N_HIDDEN and acc[0]["smape"] == pytest.approx(expected, abs=1e-3)
    ape = np.abs(served["price_served"] - served["price_true"]) / served["price_true"] * 100
    assert acc[0]["median_ape"] == pytest.approx(float(np.median(ape)), abs=1e-3)
    inside = (served["price_low"] <= served["price_true"]) & (served["price_true"] <= served["price_high"])
    assert acc[0]["interval_coverage"] == pytest.approx(float(inside.mean()))  # the served intervals' realized coverage
    assert f"model {first_version}: {N_HIDDEN} products, SMAPE {expected:.2f}" in arrived["text"]
    assert arrived["after"]["model"]["serving_version"] != first_version  # the arrived labels retrained


def test_pricing_materialize_runs_the_drift_checks_with_the_scoring(arrived):
    assert arrived["drift"] is not None and arrived["drift"].status.value == "SUCCEEDED"
