"""Realized accuracy (``lib.serving.accuracy``), hand-computed."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.serving.accuracy import accuracy_by_model_version, served_accuracy, served_rows


def _served():
    return pd.DataFrame(
        {
            "sample_id": ["a", "b", "c", "a", "b"],
            "batch": ["b1", "b1", "b1", "b1", "b1"],
            "price": [10.0, 20.0, 5.0, 12.0, 30.0],
            "model_version": ["v1", "v1", "v1", "v2", "v2"],
            "served_at": "2026-12-06T10:00:00+00:00",
        }
    )


def test_served_accuracy_per_model_version_and_batch():
    labels = pd.DataFrame({"sample_id": ["a", "b", "z"], "price": [10.0, 10.0, 1.0]})  # c: no true price yet
    acc = served_accuracy(_served(), labels)
    assert acc[["model_version", "batch", "rows"]].values.tolist() == [["v1", "b1", 2], ["v2", "b1", 2]]
    # v1: a exact (0), b 20 vs 10: |10| / 15 -> 66.667 %; SMAPE mean 33.333; APE 0 and 100 -> median 50
    assert acc.loc[0, "smape"] == pytest.approx(33.333, abs=1e-3) and acc.loc[0, "median_ape"] == pytest.approx(50.0)
    # v2: a 12 vs 10 -> 2/11 = 18.182 %, b 30 vs 10 -> 20/20 = 100 %; mean 59.091; APE 20 and 200 -> 110
    assert acc.loc[1, "smape"] == pytest.approx(59.091, abs=1e-3) and acc.loc[1, "median_ape"] == pytest.approx(110.0)
    assert acc["interval_coverage"].isna().all()


def test_interval_coverage_and_the_per_version_summary():
    served = _served().assign(price_low=[9.0, 5.0, 1.0, 11.0, 25.0], price_high=[11.0, 15.0, 9.0, 13.0, 35.0])
    labels = pd.DataFrame({"sample_id": ["a", "b"], "price": [10.0, 10.0]})
    acc = served_accuracy(served, labels)
    assert acc["interval_coverage"].tolist() == [1.0, 0.0]  # v2: a's 10 is below 11, b's below 25
    summary = accuracy_by_model_version(served, labels)
    assert [s["model_version"] for s in summary] == ["v1", "v2"] and summary[0]["rows"] == 2
    assert isinstance(summary[0]["rows"], int) and summary[1]["interval_coverage"] == 0.0


def test_no_labels_no_rows_and_served_rows():
    assert len(served_accuracy(_served(), pd.DataFrame({"sample_id": ["q"], "price": [np.nan]}))) == 0
    bp = pd.DataFrame({"sample_id": [1, 2], "price": [3.0, 4.0], "model_version": "v9", "pred_lightgbm": [3.0, 4.0]})
    rows = served_rows(bp, "b7", "2026-12-06T11:00:00+00:00")
    assert list(rows.columns) == ["sample_id", "batch", "price", "model_version", "served_at"]
    assert rows["sample_id"].tolist() == ["1", "2"] and (rows["batch"] == "b7").all()


def test_the_served_log_io_manager_keeps_every_model_version(tmp_path):
    """Stored twice for one batch by two model versions (and once more by the first): the partition
    holds both versions' rows, the re-stored version replaced, not duplicated."""
    import dagster as dg

    from pricing_assets.io_managers import PricingIOManager

    frames = {"v1": _served().query("model_version == 'v1'"), "v2": _served().query("model_version == 'v2'")}
    parts = dg.StaticPartitionsDefinition(["b1"])

    @dg.asset(partitions_def=parts, io_manager_key="log", config_schema={"v": str})
    def served_prices(context) -> pd.DataFrame:
        return frames[context.op_config["v"]]

    io = {"log": PricingIOManager(base_path=str(tmp_path), kind="served_log")}
    for v in ("v1", "v2", "v1"):
        run_config = {"ops": {"served_prices": {"config": {"v": v}}}}
        assert dg.materialize([served_prices], partition_key="b1", resources=io, run_config=run_config).success
    stored = pd.read_parquet(tmp_path / "served_prices" / "b1.parquet")
    assert sorted(stored["model_version"].tolist()) == ["v1", "v1", "v1", "v2", "v2"]
    assert sorted(p.name for p in (tmp_path / "served_prices" / "b1.versions").iterdir()) == [
        "v1.parquet",
        "v2.parquet",
    ]
