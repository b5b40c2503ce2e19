"""Pricing new products without retraining (issue #18), measured end to end with the `pricing` CLI.

    PRICING_IMAGES_OFFLINE=1 python benchmarks/bench_new_products.py [--new-rows 500] [--out DIR]

1. The labeled sample rows are shuffled (seed 0); the last ``--new-rows`` (500) are held out as *new
   products* (their prices known to this script only). Fresh instance: ingest the other labeled rows
   and every unlabeled row as two batches, ``pricing materialize`` — **from scratch** (the work of
   ``make demo``'s materialisation, on 500 fewer labeled rows).
2. **Unlabeled batch**: the 500 held-out rows *without* their price, ingested as a batch, then
   ``pricing materialize`` and ``pricing predictions`` — ingest → images → OCR → embeddings →
   scoring by the current ``serving_model`` → export, end to end. No retrain is expected
   (``products`` stores nothing). Their served SMAPE (against the prices held back) is what a new
   product gets; beside it the model's OOF SMAPE on the labeled rows.
3. **Labeled batch**: the same 500 rows *with* their prices as another batch: ``pricing
   materialize`` retrains (labels changed), promotes a new model and re-scores every batch. The
   retrain's OOF SMAPE on those 500 rows is beside their served SMAPE of step 2 (``--skip-labeled-step``
   leaves this step out).

Step 2 also measures what a new product's price comes with: the realized coverage and median width
(``price_high / price_low``) of the served 80 % intervals on the held-out prices, overall and per
true-price quintile; the scoring time of the batch without its explanations (``batch_predictions``)
and with them (+ ``price_explanations`` + ``price_drivers``), from the assets' metadata; a ``pricing
explain`` transcript of one new product and its wall time in a fresh process; the review list's size.

Prints one table; writes ``<out>/bench_new_products.json``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ["PRICING_IMAGES_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SAMPLE = REPO / "data" / "sample"


def _timed(args: list[str]) -> float:
    from pricing_assets.cli import main

    t0 = time.perf_counter()
    rc = main(args)
    seconds = time.perf_counter() - t0
    print(f"pricing {' '.join(args)}: exit {rc}, {seconds:.1f} s", flush=True)
    if rc != 0:
        raise SystemExit(f"pricing {' '.join(args)} exited {rc}")
    return round(seconds, 1)


def _meta(instance, key: str, partition: str | None = None) -> dict:
    import dagster as dg

    flt = (
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition])
        if partition
        else dg.AssetKey(key)
    )
    rec = instance.fetch_materializations(flt, limit=1).records[0]
    return {k: v.value for k, v in rec.asset_materialization.metadata.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--new-rows", type=int, default=500)
    ap.add_argument("--out", default="/tmp/bench_new_products")
    ap.add_argument("--skip-labeled-step", action="store_true", help="stop after the unlabeled batch (step 2)")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "files").mkdir(parents=True)
    os.environ["DAGSTER_HOME"] = str(out / "home")
    os.environ.pop("PRICING_STORAGE", None)

    import dagster as dg

    from pricing_assets.lib.models.metrics import smape

    lab = pd.read_csv(SAMPLE / "amazon_pricing_sample.csv", dtype={"sample_id": str}).sample(frac=1.0, random_state=0)
    new, known = lab.tail(args.new_rows), lab.head(len(lab) - args.new_rows)
    files = {
        "known": known,
        "unlabeled": pd.read_csv(SAMPLE / "amazon_pricing_unlabeled.csv", dtype={"sample_id": str}),
        "new_products": new.drop(columns=["price"]),
        "new_labels": new,
    }
    for name, df in files.items():
        df.to_csv(out / "files" / f"{name}.csv", index=False)

    report = {"new_rows": len(new), "known_labeled_rows": len(known)}
    _timed(["ingest", str(out / "files" / "known.csv")])
    _timed(["ingest", str(out / "files" / "unlabeled.csv")])
    report["from_scratch_materialize_s"] = _timed(["materialize", "--no-progress"])
    instance = dg.DagsterInstance.get()
    first = _meta(instance, "serving_model")

    t0 = time.perf_counter()
    _timed(["ingest", str(out / "files" / "new_products.csv")])
    report["unlabeled_batch_materialize_s"] = _timed(["materialize", "--no-progress"])
    _timed(["predictions", "--out", str(out / "predictions.csv")])
    report["unlabeled_batch_end_to_end_s"] = round(time.perf_counter() - t0, 1)
    report["ratio_to_from_scratch"] = round(
        report["unlabeled_batch_end_to_end_s"] / report["from_scratch_materialize_s"], 3
    )
    report["retrained_on_unlabeled_batch"] = _meta(instance, "serving_model")["model_version"] != first["model_version"]
    served = (
        pd.read_csv(out / "predictions.csv", dtype={"sample_id": str})
        .set_index("sample_id")["price"]
        .reindex(new["sample_id"])
    )
    truth = new.set_index("sample_id")["price"]
    report["served_rows"] = int(served.notna().sum())
    report["served_smape_new_products"] = round(smape(truth.to_numpy(), served.to_numpy()), 2)
    report["model_oof_smape_blend"] = first["oof_smape"]["blend"]
    report["model_oof_smape"] = first["oof_smape"]
    report["model_version_served"] = first["model_version"]
    report.update(_explanations(instance, out, new, truth))
    rows = [
        ("from scratch: pricing materialize", f"{report['from_scratch_materialize_s']} s"),
        (
            f"{len(new)}-row unlabeled batch, ingest → predictions",
            f"{report['unlabeled_batch_end_to_end_s']} s ({100 * report['ratio_to_from_scratch']:.1f} %)",
        ),
        ("served SMAPE of the new products (model of step 1)", report["served_smape_new_products"]),
        ("OOF SMAPE of that model's blend (labeled rows)", report["model_oof_smape_blend"]),
        ("80 % interval: coverage of the new products' true prices", report["interval_coverage_new_products"]),
        ("80 % interval: median width (high / low)", report["interval_median_width_new_products"]),
        (f"scoring the {len(new)}-row batch without explanations", f"{report['scoring_s_without_explanations']} s"),
        (
            "with comparables + drivers",
            f"{report['scoring_s_with_explanations']} s (comparables {report['price_explanations_s']} s, "
            f"drivers {report['price_drivers_s']} s)",
        ),
        ("pricing explain, fresh process", f"{report['explain_wall_s']} s"),
        ("prices flagged by --needs-review (defaults)", report["needs_review_rows"]),
    ]
    if args.skip_labeled_step:
        return _print(out, report, rows)

    t0 = time.perf_counter()
    _timed(["ingest", str(out / "files" / "new_labels.csv")])
    report["labeled_batch_materialize_s"] = _timed(["materialize", "--no-progress"])
    report["labeled_batch_end_to_end_s"] = round(time.perf_counter() - t0, 1)
    second = _meta(instance, "serving_model")
    report["retrained_on_labeled_batch"] = second["model_version"] != first["model_version"]
    report["model_version_after_labels"] = second["model_version"]
    from pricing_assets.definitions import defs

    oof = (
        defs.load_asset_value("price_blend", instance=instance)
        .set_index("sample_id")["pred_price"]
        .reindex(new["sample_id"])
    )
    report["retrain_oof_smape_on_the_new_rows"] = round(smape(truth.to_numpy(), oof.to_numpy()), 2)
    report["retrain_oof_smape_blend"] = second["oof_smape"]["blend"]
    versions = _meta(instance, "price_predictions")["model_versions"]
    report["price_predictions_model_versions"] = versions
    rows += [
        (f"{len(new)}-row labeled batch (retrain + re-score), end to end", f"{report['labeled_batch_end_to_end_s']} s"),
        ("OOF SMAPE on the same rows after their labels arrived", report["retrain_oof_smape_on_the_new_rows"]),
        (
            "retrained on the unlabeled batch / on the labeled batch",
            f"{report['retrained_on_unlabeled_batch']} / {report['retrained_on_labeled_batch']}",
        ),
    ]
    return _print(out, report, rows)


def _explanations(instance, out: Path, new: pd.DataFrame, truth: pd.Series) -> dict:
    """Step 2's intervals, explanation timings, one ``pricing explain`` and the review list."""
    from pricing_assets.lib.serving.intervals import coverage_by_quintile

    batch = "new_products"
    _timed(["predictions", "--out", str(out / "intervals.csv"), "--intervals"])
    iv = pd.read_csv(out / "intervals.csv", dtype={"sample_id": str}).set_index("sample_id").reindex(new["sample_id"])
    table = coverage_by_quintile(truth.to_numpy(), iv["price_low"].to_numpy(), iv["price_high"].to_numpy())
    seconds = {
        k: float(_meta(instance, k, batch)["seconds"])
        for k in ("batch_predictions", "price_explanations", "price_drivers")
    }
    sid = str(new["sample_id"].iloc[0])
    t0 = time.perf_counter()
    res = subprocess.run(
        [str(Path(sys.executable).with_name("pricing")), "explain", sid], capture_output=True, text=True, check=True
    )
    explain_s = round(time.perf_counter() - t0, 2)
    transcript = f"$ pricing explain {sid}\n{res.stdout}(true price {truth.loc[sid]:.2f} USD)\n"
    (out / "explain.txt").write_text(transcript)
    print(transcript)
    _timed(["predictions", "--out", str(out / "review.csv"), "--needs-review"])
    review = pd.read_csv(out / "review.csv", dtype={"sample_id": str})
    return {
        "interval_coverage_new_products": float(table["coverage"].iloc[-1]),
        "interval_median_width_new_products": float(table["median_width"].iloc[-1]),
        "interval_by_true_price_quintile": table.to_dict(orient="records"),
        "scoring_s_without_explanations": round(seconds["batch_predictions"], 2),
        "scoring_s_with_explanations": round(sum(seconds.values()), 2),
        "price_explanations_s": seconds["price_explanations"],
        "price_drivers_s": seconds["price_drivers"],
        "explain_wall_s": explain_s,
        "explain_transcript": transcript,
        "needs_review_rows": int(review["sample_id"].isin(set(new["sample_id"])).sum()),
    }


def _print(out: Path, report: dict, rows: list) -> int:
    print()
    print(pd.DataFrame(rows, columns=["measure", "value"]).to_markdown(index=False))
    (out / "bench_new_products.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))
    return 0 if np.isfinite(report["served_smape_new_products"]) else 1


if __name__ == "__main__":
    sys.exit(main())
