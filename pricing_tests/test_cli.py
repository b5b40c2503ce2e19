"""The ``pricing`` console script end to end on a small real slice, in a fresh DAGSTER_HOME."""

import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pricing_tests.helpers import run_pricing
from pricing_tests.helpers import run_pricing_here as run


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
    inst = dg.DagsterInstance.from_config(str(materialized_home["home"]))
    blend = inst.get_latest_materialization_event(dg.AssetKey("price_blend")).asset_materialization.metadata
    assert smape == pytest.approx(blend["oof_smape"].value, abs=0.01)  # the CLI prints what the asset measured
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
    # two batch runs, products, the training run, two scoring runs (one per batch), price_predictions
    assert len(runs) == 7, [r.asset_selection for r in runs]
    assert all(r.is_success for r in runs)
    ev = inst.get_latest_materialization_event(dg.AssetKey("raw_catalog"))
    assert ev is not None


def test_second_materialize_has_nothing_to_do(materialized_home):
    res = run(["materialize"], materialized_home["env"])
    assert "materialised 0 batch(es) in" in res.stdout
    assert "training: up to date with the labeled rows" in res.stdout and "scoring" not in res.stdout


def _stored(materialized_home, key, partition=None):
    from pricing_assets.definitions import build_defs
    from pricing_assets.settings import load_settings

    defs = build_defs(load_settings({"DAGSTER_HOME": str(materialized_home["home"]), "PRICING_IMAGES_OFFLINE": "1"}))
    inst = dg.DagsterInstance.from_config(str(materialized_home["home"]))
    return defs.load_asset_value(key, instance=inst, partition_key=partition)


def test_explain_gives_the_served_price_with_its_comparables_and_drivers(materialized_home):
    import json

    preds = _stored(materialized_home, "price_predictions")
    row = preds.iloc[3]
    res = run(["explain", row["sample_id"], "--json"], materialized_home["env"])
    assert res.returncode == 0, res.stderr
    e = json.loads(res.stdout)
    assert {"sample_id", "price", "price_low", "price_high", "model_version", "comparables", "drivers"} <= set(e)
    # the same price as price_predictions, from the same model
    assert e["price"] == pytest.approx(row["price"], abs=0.006) and e["model_version"] == row["model_version"]
    assert e["price_low"] <= e["price"] <= e["price_high"]
    comps = _stored(materialized_home, "price_explanations", row["batch"])
    mine = comps[comps["sample_id"] == row["sample_id"]].sort_values("rank")
    assert [c["sample_id"] for c in e["comparables"]] == mine["comparable_id"].tolist() and len(mine) == 5
    assert set(e["comparables"][0]) == {"sample_id", "item_name", "price", "similarity", "view"}
    drivers = _stored(materialized_home, "price_drivers", row["batch"])
    mine = drivers[drivers["sample_id"] == row["sample_id"]].sort_values("rank")
    assert [d["feature"] for d in e["drivers"]] == mine["feature"].tolist() and len(mine) == 5
    assert all(set(d) == {"feature", "value", "effect"} and d["effect"] > 0 for d in e["drivers"])
    assert e["notes"] == []
    text = run(["explain", row["sample_id"]], materialized_home["env"]).stdout
    assert f"sample_id {row['sample_id']}: {row['price']:.2f} USD" in text
    assert "comparables" in text and "drivers" in text and e["drivers"][0]["feature"] in text


def test_explain_of_an_unknown_id_is_one_line(materialized_home):
    res = run(["explain", "no-such-product"], materialized_home["env"], check=False)
    _one_line_error(res, "no served price for sample_id 'no-such-product'")


def test_needs_review_lists_flagged_prices_with_their_reasons(materialized_home, tmp_path):
    preds = _stored(materialized_home, "price_predictions")
    out = tmp_path / "review.csv"
    res = run(["predictions", "--out", out, "--needs-review", "--max-width-ratio", "1.0001"], materialized_home["env"])
    assert res.returncode == 0, res.stderr
    every = pd.read_csv(out, dtype={"sample_id": str})
    assert sorted(every["sample_id"]) == sorted(preds["sample_id"])  # every interval is wider than x1.0001
    assert every["reason"].str.contains("wide").all() and every["width_ratio"].is_monotonic_decreasing
    run(
        ["predictions", "--out", out, "--needs-review", "--max-width-ratio", "1e9", "--min-similarity", "0"],
        materialized_home["env"],
    )
    assert len(pd.read_csv(out)) == 0  # nothing is that wide, every product has a comparable
    res = run(
        ["predictions", "--out", out, "--needs-review", "--min-similarity", "2"], materialized_home["env"], check=False
    )
    _one_line_error(res, "--needs-review: min similarity must be in [0, 1]")


def _one_line_error(res, *needles) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture()
def fresh_env(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("PRICING_STORAGE", None)
    return env


def test_bad_batch_name_is_one_line(fresh_env, slice_files):
    _one_line_error(
        run(["ingest", slice_files["labeled"], "--batch", "../evil"], fresh_env, check=False),
        "invalid batch name '../evil'",
    )


def test_not_a_catalog_file_is_one_line(fresh_env):
    _one_line_error(run(["ingest", "/etc/passwd", "--batch", "pw"], fresh_env, check=False), "/etc/passwd", ".csv")


def test_missing_file_is_one_line(fresh_env, tmp_path):
    _one_line_error(run(["ingest", str(tmp_path / "absent.csv")], fresh_env, check=False), "not found", "absent.csv")


def test_malformed_file_is_refused_before_storing(fresh_env, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,text\n1,hello\n")
    _one_line_error(
        run(["ingest", str(bad), "--batch", "bad"], fresh_env, check=False),
        "missing required column",
        "catalog_content",
        "fix the file",
    )
    assert not (tmp_path / "home" / "storage" / "batches" / "bad").exists()
    binary = tmp_path / "utf16.csv"
    binary.write_bytes("sample_id,catalog_content,image_link\n".encode("utf-16"))
    _one_line_error(run(["ingest", str(binary)], fresh_env, check=False), "UTF-8")


def test_missing_instance_is_one_line(fresh_env, tmp_path):
    _one_line_error(run(["status"], fresh_env, check=False), "no Dagster instance at", "DAGSTER_HOME")


def test_missing_s3_credentials_is_one_line(fresh_env):
    env = {k: v for k, v in fresh_env.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent", AWS_EC2_METADATA_DISABLED="true"
    )
    _one_line_error(
        run(["ingest", "s3://bucket/drops/x.csv", "--endpoint-url", "http://127.0.0.1:9"], env, check=False),
        "AWS_ACCESS_KEY_ID",
    )


def test_debug_shows_the_traceback(fresh_env):
    res = run_pricing(["--debug", "ingest", "/etc/passwd", "--batch", "pw"], fresh_env, check=False)
    assert res.returncode == 1 and "Traceback" in res.stderr and "ValueError" in res.stderr


def test_help_is_plain_text_and_version_prints(fresh_env):
    res = run(["--help"], fresh_env)
    assert "``" not in res.stdout and "Examples:" in res.stdout and "status" in res.stdout
    assert run(["--version"], fresh_env).stdout.startswith("pricing-assets ")


def test_status_on_the_demo_instance(materialized_home, slice_files):
    import json

    st = json.loads(run(["status", "--json"], materialized_home["env"]).stdout)
    assert [(b["batch"], b["state"], b["rows"]) for b in st["batches"]] == [
        ("lab", "complete", slice_files["n_labeled"]),
        ("unlabeled", "complete", slice_files["n_unlabeled"]),
    ]
    assert st["model"]["labeled_rows"] == slice_files["n_labeled"]
    assert set(st["model"]["oof_smape"]) == {
        "lightgbm",
        "lightgbm_distributional",
        "tfidf_ridge",
        "price_blend",
    }  # fusion MLP: opt-in
    assert st["predictions"]["rows_priced"] == slice_files["n_unlabeled"] and st["predictions"]["exportable"] is True
    assert st["automation"]["catalog_inbox_sensor"] == "stopped (default)" and st["automation"]["daemon"].startswith(
        "not running"
    )
    text = run(["status"], materialized_home["env"]).stdout
    assert "BATCHES" in text and "lab" in text and "OOF SMAPE" in text and "exportable" in text


# ------------------------------------------------------------------------------------------------
# a malformed batch registered before two good ones (issue #15): nothing freezes
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_first(tmp_path_factory):
    from pricing_tests.helpers import sample_slice

    tmp = tmp_path_factory.mktemp("broken_first")
    env = {**os.environ, "DAGSTER_HOME": str(tmp / "home"), "PRICING_IMAGES_OFFLINE": "1"}
    env.pop("PRICING_STORAGE", None)
    lab, unl = sample_slice(n_labeled=60, n_with_image=2, n_unlabeled=12)
    # a malformed 3-row file whose header is right (the ingest checks headers), line 3 has extra fields
    (tmp / "broken.csv").write_text(
        "sample_id,catalog_content,image_link,price\n1,Item Name: a,,3.0\n2,Item Name: b,,4.0,x,y\n3,Item Name: c,,5.0\n"
    )
    lab.to_csv(tmp / "good_lab.csv", index=False)
    unl.to_csv(tmp / "good_unl.csv", index=False)
    out = {"env": env, "tmp": tmp, "n_unlabeled": len(unl)}
    for name in ("broken", "good_lab", "good_unl"):
        run(["ingest", str(tmp / f"{name}.csv")], env)
    out["materialize"] = run_pricing(["materialize"], env, check=False)  # the console script's own exit path
    out["batches"] = run(["batches"], env)
    out["status"] = run(["status", "--json"], env)
    out["predictions"] = run(["predictions", "--out", str(tmp / "preds.csv")], env, check=False)
    out["drop"] = run(["batches", "--drop", "broken"], env)
    out["materialize_again"] = run(["materialize"], env, check=False)
    out["drop_unknown"] = run(["batches", "--drop", "nope"], env, check=False)
    return out


def test_failed_batch_does_not_stop_the_good_ones(broken_first):
    res = broken_first["materialize"]
    assert res.returncode == 1
    assert "[1/3] batch broken" in res.stdout and "FAILED" in res.stdout
    assert "[2/3] batch good_lab" in res.stdout and "[3/3] batch good_unl" in res.stdout
    assert "materialised 2 batch(es) + global assets" in res.stdout
    assert "error: batch broken failed" in res.stderr and "broken.csv" in res.stderr and "line 3" in res.stderr
    assert "pricing batches --drop" in res.stderr


def test_good_batches_are_priced_despite_the_failed_one(broken_first):
    assert broken_first["predictions"].returncode == 0, broken_first["predictions"].stderr
    preds = pd.read_csv(broken_first["tmp"] / "preds.csv", dtype={"sample_id": str})
    assert len(preds) == broken_first["n_unlabeled"]


def test_batches_lists_the_failed_batch_with_its_cause(broken_first):
    lines = [ln.split("\t") for ln in broken_first["batches"].stdout.splitlines()]
    assert [ln[:2] for ln in lines] == [["broken", "failed"], ["good_lab", "complete"], ["good_unl", "complete"]]
    assert "raw_catalog" in lines[0][2] and "line 3" in lines[0][2]


def test_a_dropped_batch_is_unregistered_and_its_file_kept(broken_first):
    out = broken_first["drop"].stdout
    assert "set aside batch 'broken'" in out
    assert [ln.split("\t")[0] for ln in out.splitlines()[1:]] == ["good_lab", "good_unl"]
    kept = broken_first["tmp"] / "home" / "storage" / "set_aside" / "broken" / "broken.csv"
    assert kept.read_text().startswith("sample_id,catalog_content")
    again = broken_first["materialize_again"]
    assert again.returncode == 0 and "materialised 0 batch(es)" in again.stdout
    assert (
        broken_first["drop_unknown"].returncode == 2
        and "no registered batch 'nope'" in broken_first["drop_unknown"].stderr
    )
    assert "Traceback" not in broken_first["drop_unknown"].stderr


def test_predictions_are_refused_when_none_exist(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()  # an instance without predictions, not a missing instance
    res = run(["predictions", "--out", str(tmp_path / "p.csv")], env, check=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no price_predictions yet" in res.stderr
    assert not (tmp_path / "p.csv").exists()


def test_status_after_a_failed_batch(broken_first):
    import json

    st = json.loads(broken_first["status"].stdout)
    assert [(b["batch"], b["state"]) for b in st["batches"]] == [
        ("broken", "failed"),
        ("good_lab", "complete"),
        ("good_unl", "complete"),
    ]
    assert "line 3" in st["batches"][0]["failure"]["cause"]
    assert st["predictions"]["exportable"] is True
    assert (
        st["failed_runs"]
        and st["failed_runs"][0]["partition"] == "broken"
        and "line 3" in st["failed_runs"][0]["cause"]
    )


def test_materialize_and_status_report_the_same_oof_figures_ridge_included(tmp_path):
    """``pricing materialize`` printed 3 of the 4 OOF SMAPE figures (no TF-IDF ridge) while ``pricing
    status`` printed 4: both read ``instance_state.oof_smapes`` now."""
    import dagster as dg

    from pricing_assets import cli
    from pricing_assets.instance_state import oof_smape_assets, oof_smapes
    from pricing_assets.status import _model

    instance = dg.DagsterInstance.ephemeral()
    figures = {
        "lightgbm_predictions": 54.7,
        "lightgbm_distributional_predictions": 56.5,
        "tfidf_ridge_predictions": 62.1,
        "price_blend": 54.6,
    }
    for key, value in figures.items():
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, metadata={"oof_smape": value}))
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="lightgbm_model", metadata={"rows": 3})
    )  # no OOF figure
    assert cli.oof_summary(instance) == oof_smapes(instance) == figures
    assert list(figures) == [k for k in oof_smape_assets() if k in figures]  # printed in the registry's order
    assert _model(instance)["oof_smape"] == {
        "lightgbm": 54.7,
        "lightgbm_distributional": 56.5,
        "tfidf_ridge": 62.1,
        "price_blend": 54.6,
    }


def test_status_says_which_fresh_assets_are_overdue():
    """``freshness_states`` judges the freshness policies' windows (WARN after 26 h, FAIL after 30 h)."""
    import time

    import dagster as dg

    from pricing_assets.instance_state import freshness_states
    from pricing_assets.status import render_status

    instance = dg.DagsterInstance.ephemeral()
    assert [f["state"] for f in freshness_states(instance)] == ["never", "never"]
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="serving_model"))
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="price_predictions"))
    now = time.time()
    assert [f["state"] for f in freshness_states(instance, now=now)] == ["fresh", "fresh"]
    assert [f["state"] for f in freshness_states(instance, now=now + 27 * 3600)] == ["warn", "warn"]
    states = freshness_states(instance, now=now + 31 * 3600)
    assert [f["state"] for f in states] == ["fail", "fail"] and states[0]["age_h"] == pytest.approx(31, abs=0.01)
    st = {
        "batches": [],
        "model": {"trained_run_id": None},
        "predictions": {"model_version": None},
        "served_accuracy": [],
        "freshness": states,
        "automation": {},
        "stale_runs": [],
        "pool_slots": [],
        "failed_runs": [],
    }
    text = render_status(st)
    assert (
        "serving_model        OVERDUE (fail): last materialised 31.0 h ago" in text
        and "nightly retrain was missed" in text
    )
