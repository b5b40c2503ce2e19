"""The ``pricing`` console script end to end on a small real slice, in a fresh DAGSTER_HOME."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from pricing_tests.helpers import run_pricing as run


def test_ingest_stores_file_and_registers_partition(materialized_home, slice_files):
    assert "as batch 'lab'" in materialized_home["ingest1"].stdout
    assert "as batch 'unlabeled'" in materialized_home["ingest2"].stdout
    stored = materialized_home["home"] / "storage" / "batches" / "lab" / "labeled.csv"
    assert stored.read_bytes() == Path(slice_files["labeled"]).read_bytes()
    assert materialized_home["batches_before"].stdout.split() == ["lab", "incomplete", "unlabeled", "incomplete"]


def test_materialize_completes_every_batch_and_reports_smape(materialized_home):
    assert materialized_home["batches_after"].stdout.split() == ["lab", "complete", "unlabeled", "complete"]
    out = materialized_home["materialize"].stdout
    assert "[1/2] batch lab" in out and "[2/2] batch unlabeled" in out
    line = [ln for ln in out.splitlines() if ln.startswith("OOF SMAPE price_blend:")]
    assert line, out
    smape = float(line[0].split(":")[1])
    assert 0 < smape < 200
    peak_mb = float(out.split("peak memory (max RSS of this process): ")[1].split()[0])
    assert 100 < peak_mb < 24_000


def test_predictions_csv_has_every_unlabeled_id_once(materialized_home, slice_files):
    preds = pd.read_csv(materialized_home["csv"], dtype={"sample_id": str})
    unl = pd.read_csv(slice_files["unlabeled"], dtype={"sample_id": str})
    assert list(preds.columns) == ["sample_id", "price"]
    assert sorted(preds["sample_id"]) == sorted(unl["sample_id"])
    assert np.isfinite(preds["price"]).all() and (preds["price"] > 0).all()
    assert f"wrote {len(unl)} predictions" in materialized_home["predictions"].stdout


def test_runs_are_recorded_in_the_instance(materialized_home):
    inst = dg.DagsterInstance.from_config(str(materialized_home["home"]))
    runs = inst.get_runs()
    assert len(runs) == 3  # two batch runs + one global run
    assert all(r.is_success for r in runs)
    ev = inst.get_latest_materialization_event(dg.AssetKey("raw_catalog"))
    assert ev is not None


def test_second_materialize_has_nothing_to_do(materialized_home):
    res = run(["materialize"], materialized_home["env"])
    assert "materialised 0 batch(es) in" in res.stdout
    assert "global assets are up to date" in res.stdout


def test_bad_file_is_a_clear_error(materialized_home, tmp_path):
    env = {**materialized_home["env"], "DAGSTER_HOME": str(tmp_path / "home")}
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,text\n1,hello\n")
    run(["ingest", str(bad), "--batch", "bad"], env)
    res = run(["materialize", "--batch", "bad"], env, check=False)
    assert res.returncode == 1
    assert "bad.csv" in res.stderr and "catalog_content" in res.stderr
