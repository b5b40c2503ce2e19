"""Incremental run vs from-scratch run on the bundled sample (issue 5).

    OMP_NUM_THREADS=1 PRICING_IMAGES_OFFLINE=1 python benchmarks/bench_incremental.py [--out DIR]

1. The labeled (7,216) and unlabeled (4,481) sample rows are shuffled (seed 0); the last
   ``--new-rows`` (500) labeled rows become the *new* batch (new training data: the harder case for
   "same predictions as from scratch"), the rest is split into ``--batches`` (10) files, labeled and
   unlabeled kept apart (see :func:`split_sample`).
2. **A, incremental**: fresh instance + storage; ingest the 10 batches and materialise them (per-row
   assets, then the global assets), then ingest the new batch and materialise what's missing: the new
   partition's per-row assets, then the global assets. That last step is *the incremental run*.
3. **B, from scratch**: fresh instance + empty storage/caches; ingest all 11 batches in the same order
   and materialise everything.
4. Report: rows embedded / images acquired in the incremental run, counted from the asset
   materialisation metadata of every partition materialised during it (``computed`` / ``cached`` of
   each embedding asset, ``downloaded`` / ``http_requests`` / ``from_mirror`` / ``from_store`` of
   ``product_images``); wall times; whether A's and B's predictions are equal.

Photos: ``PRICING_IMAGES_OFFLINE=1`` (set here) — only the 105 bundled photos (local mirror) exist, so
``downloaded`` is 0 by construction and ``from_mirror`` counts photos acquired. Both setups share
one ONNX export folder (model files, not data). Writes ``<out>/bench_incremental.json``.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["PRICING_IMAGES_OFFLINE"] = "1"

import dagster as dg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"


def split_sample(
    out: Path, n_batches: int, new_rows: int, seed: int = 0, limit: int | None = None
) -> tuple[list[Path], Path]:
    """Split the sample into ``n_batches`` files + one new file of ``new_rows`` labeled rows.

    Labeled and unlabeled rows go to separate files (a file with a price column quarantines rows
    whose price is empty: "price missing in a labeled file"). Rows are shuffled (``seed``); the
    labeled files come first, then the unlabeled ones, in proportion to the row counts. ``limit``
    (smoke tests) keeps that many rows of each file kind. Returns (old batch paths, new batch path).
    """
    lab = pd.read_csv(SAMPLE / "amazon_pricing_sample.csv", dtype={"sample_id": str}).sample(
        frac=1.0, random_state=seed
    )
    unl = pd.read_csv(SAMPLE / "amazon_pricing_unlabeled.csv", dtype={"sample_id": str}).sample(
        frac=1.0, random_state=seed
    )
    if limit:
        lab, unl = lab.head(limit), unl.head(limit)
    old_lab, new = lab.iloc[:-new_rows], lab.iloc[-new_rows:]
    n_lab = max(1, min(n_batches - 1, round(n_batches * len(old_lab) / (len(old_lab) + len(unl)))))
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for kind, frame, k in (("labeled", old_lab, n_lab), ("unlabeled", unl, n_batches - n_lab)):
        for part in np.array_split(np.arange(len(frame)), k):
            p = out / f"batch_{len(files) + 1:02d}_{kind}.csv"
            frame.iloc[part].to_csv(p, index=False)
            files.append(p)
    p = out / "batch_new.csv"
    new.to_csv(p, index=False)
    return files, p


class Setup:
    """One instance + storage (A or B), driven through ``pricing_assets.cli`` functions."""

    def __init__(self, root: Path, model_cache: Path):
        from pricing_assets.definitions import build_defs
        from pricing_assets.resources import StorageResource
        from pricing_assets.settings import load_settings

        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        self.env = {**os.environ, "DAGSTER_HOME": str(root / "home"), "PRICING_STORAGE": str(root / "storage")}
        self.env.pop("PRICING_S3_ENDPOINT", None)
        self.settings = load_settings(self.env)
        base = build_defs(self.settings)
        storage = StorageResource(base_path=self.settings.storage, model_cache_dir=str(model_cache))
        self.defs = dg.Definitions(
            assets=list(base.assets), resources={**base.resources, "storage": storage}, executor=dg.in_process_executor
        )
        self.instance = dg.DagsterInstance.ephemeral()

    def ingest(self, path: Path) -> str:
        from pricing_assets import cli

        old = dict(os.environ)
        os.environ.update({k: self.env[k] for k in ("DAGSTER_HOME", "PRICING_STORAGE")})
        try:
            return cli.ingest(self.instance, str(path), None)
        finally:
            os.environ.clear()
            os.environ.update(old)

    def materialize(self, batches: list[str] | None = None) -> dict:
        """Missing (or given) batches, then global assets. Returns timings and the run ids used."""
        from pricing_assets import cli

        before = {r.run_id for r in self.instance.get_runs()}
        t0 = time.perf_counter()
        res = cli.materialize(self.instance, self.defs, batches, log_level="ERROR")
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        res["run_ids"] = [r.run_id for r in self.instance.get_runs() if r.run_id not in before]
        return res

    def run_counts(self, run_ids: list[str]) -> dict:
        """Sum per-partition counters of the materialisations recorded by ``run_ids``."""
        totals: dict = {"partitions_materialised": {}}
        for rid in run_ids:
            for rec in self.instance.all_logs(rid, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
                mat = rec.dagster_event.event_specific_data.materialization
                key = mat.asset_key.to_user_string()
                if mat.partition:
                    totals["partitions_materialised"].setdefault(key, []).append(mat.partition)
                md = {k: v.value for k, v in mat.metadata.items()}
                if key.startswith("embeddings/"):
                    for f in ("rows", "computed", "cached"):
                        totals[f"{key}:{f}"] = totals.get(f"{key}:{f}", 0) + int(md.get(f, 0))
                if key == "product_images":
                    for f in ("rows", "downloaded", "http_requests", "from_mirror", "from_store"):
                        totals[f"{key}:{f}"] = totals.get(f"{key}:{f}", 0) + int(md.get(f, 0))
                if key == "ocr_text":
                    totals["ocr_text:images_read"] = totals.get("ocr_text:images_read", 0) + int(
                        md.get("images_read", 0)
                    )
        return totals

    def predictions(self) -> pd.DataFrame:
        return self.defs.load_asset_value("price_predictions", instance=self.instance)

    def oof(self) -> dict:
        from pricing_assets import cli

        return cli.oof_summary(self.instance)


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Equality of two ``sample_id,price`` frames (USD)."""
    m = a.merge(b, on="sample_id", how="outer", suffixes=("_a", "_b"), indicator=True)
    both = m[m["_merge"] == "both"]
    diff = (both["price_a"] - both["price_b"]).abs()
    rel = diff / both["price_b"].abs().clip(lower=1e-9)
    return {
        "rows_a": len(a),
        "rows_b": len(b),
        "ids_only_in_one": int((m["_merge"] != "both").sum()),
        "bitwise_equal_rows": int((both["price_a"].to_numpy() == both["price_b"].to_numpy()).sum()),
        "max_abs_diff_usd": float(diff.max()) if len(both) else 0.0,
        "max_rel_diff": float(rel.max()) if len(both) else 0.0,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "artifacts" / "bench_incremental"))
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--new-rows", type=int, default=500)
    ap.add_argument("--limit", type=int, help="smoke test: use only this many rows of the shuffled sample")
    ap.add_argument(
        "--skip-initial-global",
        action="store_true",
        help="A: don't materialise the global assets before the new batch arrives (they are recomputed in full by the incremental run either way)",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    files, new_file = split_sample(out / "input", args.batches, args.new_rows, limit=args.limit)
    model_cache = out / "model_cache"
    result: dict = {
        "rows_total": sum(len(pd.read_csv(f)) for f in files) + args.new_rows,
        "batches": args.batches,
        "new_rows": args.new_rows,
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
    }

    print(f"A: ingest {len(files)} batches, materialise them", flush=True)
    A = Setup(out / "A", model_cache)
    for f in files:
        A.ingest(f)
    if args.skip_initial_global:
        from pricing_assets import cli

        t0 = time.perf_counter()
        for b in cli.missing_batches(A.instance, A.defs):
            r = dg.materialize(
                list(A.defs.assets),
                instance=A.instance,
                resources=dict(A.defs.resources),
                partition_key=b,
                selection=dg.AssetSelection.groups(*cli.PER_ROW_GROUPS),
                run_config=cli._log_config("ERROR"),
            )
            assert r.success
        result["A_initial_wall_s"] = round(time.perf_counter() - t0, 1)
        result["A_initial_note"] = "per-row assets only (--skip-initial-global)"
    else:
        a0 = A.materialize()
        result["A_initial_wall_s"] = a0["wall_s"]
    print(f"   {result['A_initial_wall_s']} s", flush=True)

    print(f"A: new batch of {args.new_rows} rows — the incremental run", flush=True)
    new_batch = A.ingest(new_file)
    inc = A.materialize()
    assert inc["batches"] == [new_batch], inc["batches"]
    result["incremental"] = {"wall_s": inc["wall_s"], "steps_s": inc["seconds"], **A.run_counts(inc["run_ids"])}
    print(f"   {inc['wall_s']} s  {inc['seconds']}", flush=True)

    print("B: from scratch, all batches", flush=True)
    B = Setup(out / "B", model_cache)
    for f in [*files, new_file]:
        B.ingest(f)
    full = B.materialize()
    result["from_scratch"] = {
        "wall_s": full["wall_s"],
        "steps_s": full["seconds"],
        **{k: v for k, v in B.run_counts(full["run_ids"]).items() if k != "partitions_materialised"},
    }
    print(f"   {full['wall_s']} s", flush=True)

    result["incremental_over_scratch"] = round(inc["wall_s"] / full["wall_s"], 3)
    per_row_inc = sum(v for k, v in inc["seconds"].items() if k.startswith("batch:"))
    per_row_full = sum(v for k, v in full["seconds"].items() if k.startswith("batch:"))
    result["per_row_incremental_over_scratch"] = round(per_row_inc / per_row_full, 3)
    result["predictions_A_vs_B"] = compare(A.predictions(), B.predictions())
    result["oof_smape"] = {"A": A.oof(), "B": B.oof()}
    (out / "bench_incremental.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
