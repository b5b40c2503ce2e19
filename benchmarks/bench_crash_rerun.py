"""Kill ``pricing materialize`` mid-step, run it again, and compare with a run that was never killed.

Two fresh instances (``DAGSTER_HOME`` under a temp folder, infra/dagster.yaml, gpu pool limit 1) get
the same two batches (the first ``--labeled`` rows of the bundled labeled sample, the first
``--unlabeled`` unlabeled rows):

* **uncrashed**: ``pricing materialize`` then ``pricing predictions``;
* **crashed**: ``pricing materialize`` is SIGKILLed once the text encoder has stored
  ``--kill-after-shards`` cache shards of the labeled batch (the step holds the ``gpu`` slot);
  ``pricing status`` is shown (stale run, held slot); then ``pricing materialize`` again (it marks the
  dead run failed, frees the slot, and reuses the stored shards) and ``pricing predictions``.

Prints the transcript's key lines, the re-run's wall time against the uncrashed run's, and the
largest absolute difference between the two runs' prices (USD). Real models, offline photos.

    PRICING_IMAGES_OFFLINE=1 .venv/bin/python benchmarks/bench_crash_rerun.py [--labeled 1500] [--unlabeled 300]
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pricing_tests.helpers import LABELED_CSV, UNLABELED_CSV  # noqa: E402

PRICING = str(Path(sys.executable).parent / "pricing")


def _env(home: Path) -> dict:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PRICING_IMAGES_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }


def pricing(home: Path, *args: str, check: bool = True) -> tuple[str, float]:
    """Run ``pricing ARGS`` on instance ``home``; (output, wall s)."""
    t0 = time.perf_counter()
    res = subprocess.run([PRICING, *args], env=_env(home), capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if check and res.returncode != 0:
        raise RuntimeError(
            f"pricing {' '.join(args)} exited {res.returncode}:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        )
    return res.stdout + res.stderr, wall


def setup(home: Path, files: dict[str, Path]) -> None:
    home.mkdir(parents=True)
    shutil.copy(REPO / "infra" / "dagster.yaml", home / "dagster.yaml")
    for batch, path in files.items():
        pricing(home, "ingest", str(path), "--batch", batch)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labeled", type=int, default=1500)
    ap.add_argument("--unlabeled", type=int, default=300)
    ap.add_argument("--kill-after-shards", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pricing_crash_"))
    files = {"labeled": tmp / "labeled.csv", "unlabeled": tmp / "unlabeled.csv"}
    pd.read_csv(LABELED_CSV, dtype=str, keep_default_na=False).head(args.labeled).to_csv(files["labeled"], index=False)
    pd.read_csv(UNLABELED_CSV, dtype=str, keep_default_na=False).head(args.unlabeled).to_csv(
        files["unlabeled"], index=False
    )

    print(f"== uncrashed: {args.labeled} labeled + {args.unlabeled} unlabeled rows")
    clean = tmp / "clean"
    setup(clean, files)
    _, t_clean = pricing(clean, "materialize", "--no-progress")
    pricing(clean, "predictions", "--out", str(tmp / "clean.csv"))
    print(f"pricing materialize: {t_clean:.1f} s")

    print("== crashed")
    crash = tmp / "crash"
    setup(crash, files)
    shards_dir = crash / "storage" / "embedding_cache" / "minilm_l6"
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [PRICING, "materialize", "--no-progress"],
        env=_env(crash),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    while len(list(shards_dir.glob("shard-*.parquet"))) < args.kill_after_shards:
        if child.poll() is not None:
            raise RuntimeError(f"materialize ended before the kill:\n{child.stdout.read()[-2000:]}")
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    t_killed = time.perf_counter() - t0
    print(
        f"$ pricing materialize   # SIGKILLed after {t_killed:.1f} s, {args.kill_after_shards} text-embedding shards stored"
    )
    status, _ = pricing(crash, "status")
    print("$ pricing status   (excerpt)")
    section = None
    for line in status.splitlines():
        section = line if line and not line.startswith(" ") else section
        if section and section.startswith(("BATCHES", "STALE", "POOL")):
            print("  " + line)
    out, t_rerun = pricing(crash, "materialize", "--no-progress")
    print("$ pricing materialize   (excerpt)")
    for line in out.splitlines():
        if line.startswith(("recovered", "materialised", "OOF SMAPE")):
            print("  " + line)
    pricing(crash, "predictions", "--out", str(tmp / "crash.csv"))
    a = pd.read_csv(tmp / "clean.csv").set_index("sample_id")["price"]
    b = pd.read_csv(tmp / "crash.csv").set_index("sample_id")["price"]
    common = a.index.intersection(b.index)
    diff = (a[common] - b[common]).abs()
    print("== result")
    print(f"uncrashed materialize {t_clean:.1f} s; killed run {t_killed:.1f} s + re-run {t_rerun:.1f} s")
    print(
        f"prices: {len(a)} uncrashed, {len(b)} after the crash, {len(common)} in both; max |diff| {diff.max():.6f} USD, identical rows {int((diff == 0).sum())}"
    )
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if len(common) == len(a) == len(b) else 1


if __name__ == "__main__":
    sys.exit(main())
