"""Shared fixtures: small slices of the bundled real sample (Amazon ML Challenge 2025 rows)."""

import os

import pytest

from pricing_tests.helpers import run_pricing, run_pricing_here, sample_slice

os.environ.setdefault("OMP_NUM_THREADS", "2")

#: Test modules that materialise the graph (encoders load, LightGBM trains): marked ``slow``, as is
#: every test that uses the ``materialized_home`` fixture. ``make test-fast`` = ``pytest -m "not slow"``.
SLOW_MODULES = {
    "test_behaviour",
    "test_pipeline",
    "test_incremental",
    "test_encoder_switch",
    "test_model_gate",
    "test_automation",
    "test_resume",
    "test_postgres",
    "test_s3",
    "test_served_accuracy",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES or "materialized_home" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def slice_files(tmp_path_factory) -> dict:
    """The default slice written as two CSV batch files: {"labeled": path, "unlabeled": path, ...}."""
    d = tmp_path_factory.mktemp("slice")
    lab, unl = sample_slice()
    lab.to_csv(d / "labeled.csv", index=False)
    unl.to_csv(d / "unlabeled.csv", index=False)
    return {
        "labeled": str(d / "labeled.csv"),
        "unlabeled": str(d / "unlabeled.csv"),
        "n_labeled": len(lab),
        "n_unlabeled": len(unl),
        "n_images": 8,
    }


@pytest.fixture(scope="session")
def materialized_home(tmp_path_factory, slice_files):
    """A fresh DAGSTER_HOME where the `pricing` CLI ingested the slice as two batches, materialised
    everything and exported predictions (shared by the CLI and pipeline tests)."""
    home = tmp_path_factory.mktemp("cli_home")
    env = {**os.environ, "DAGSTER_HOME": str(home), "PRICING_IMAGES_OFFLINE": "1"}
    env.pop("PRICING_STORAGE", None)
    out = {"home": home, "env": env}
    out["ingest1"] = run_pricing(["ingest", slice_files["labeled"], "--batch", "lab"], env)
    out["ingest2"] = run_pricing_here(["ingest", slice_files["unlabeled"]], env)  # batch name from the file stem
    out["batches_before"] = run_pricing_here(["batches"], env)
    out["materialize"] = run_pricing(["materialize"], env)  # the console script itself, in a new interpreter
    out["batches_after"] = run_pricing_here(["batches"], env)
    out["csv"] = home / "preds.csv"
    out["predictions"] = run_pricing_here(["predictions", "--out", str(out["csv"])], env)
    return out
