"""Scale benchmark of the global assets: wall time and peak RSS of every global asset at several
catalog sizes, the fitted growth exponent of each, and the largest size that fits in the memory given.

    .venv/bin/python benchmarks/bench_scale.py --rows 12000 25000 50000 150000 --json artifacts/scale.json

What it runs, per size N (each size in a fresh interpreter, in a fresh temporary ``DAGSTER_HOME``):

1. A catalog of N rows built from the bundled labeled sample (:func:`scaled_catalog`): new ids;
   copies of a listing are other listings of the product, not near-copies: bullets reordered, a fifth
   of the words dropped, a bullet of another listing appended, the ``Value`` (pack quantity) scaled by
   a factor and the price moved by ``factor ** 0.8`` (bigger packs cost more, less than
   proportionally) times a log-normal seller factor (sigma 0.3), so neighbours are informative but
   not exact; half of the rows keep their price (labeled), half are unlabeled.
2. The catalog is ingested as two batches, ``scale_labeled`` (the rows with a price) and
   ``scale_unlabeled`` (a file without a price column), with ``pricing_assets.cli.ingest``; their cheap
   per-row assets run for real (``raw_catalog``, ``catalog_quarantine``, ``catalog_items``; a
   quarantined row stops the benchmark, else the size measured would not be N).
3. The expensive per-row assets are *fed*, not computed (their cost per row is measured on their own:
   ``benchmarks/bench_embeddings.py`` and the rows/s metadata of each asset): ``product_images`` (rows whose
   photo is bundled: ``ok`` with its real size and sha256; the rest ``missing``), ``ocr_text``
   (empty), and the embedding assets: vectors of the registry's shapes, a seeded random unit vector
   per listing plus noise per copy (so neighbours exist as in real data), photos share their vector.
   They pass their data contracts and are stored through the real IO managers.
4. Three runs, each in a fresh interpreter (the run launcher starts one process per run and the code
   location's executor is in-process, so a run's memory is its own): ``nightly_retrain_job`` (every
   global training asset), ``scoring_job`` for the unlabeled batch (``batch_predictions``: the
   unlabeled half priced by the promoted model) and ``price_predictions``. Per asset: wall time from
   the step events, peak RSS of the run's process while the step ran (sampled every 50 ms from
   ``/proc/self/statm``; it includes what earlier steps of the same run still hold).

Output: one table on stdout and, with ``--json PATH``, a list with one object per size::

    {"rows": N, "global_wall_s": ..., "global_peak_rss_mb": ..., "assets": {name: {"wall_s": ..., "peak_rss_mb": ...}}}

``global_wall_s`` is the sum of the three runs' wall times and ``global_peak_rss_mb`` the largest run's
peak; ``runs`` gives each run's own. The summary (after every size) adds per asset the growth exponent
b of ``wall = a * rows ** b`` (least squares on log-log over the sizes run) and, for the whole run, the
largest N whose extrapolated peak RSS fits in ``--memory-gb`` (default 24). Figures measured with it: docs/deployment.md ("Sizing").
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LABELED_CSV = REPO / "data" / "sample" / "amazon_pricing_sample.csv"
IMAGES_DIR = REPO / "data" / "sample" / "images"
#: Pack-quantity factors of the copies of a listing (copy k uses FACTORS[k % len]); the price moves by
#: ``factor ** PRICE_ELASTICITY`` (a bigger pack costs more, less than proportionally).
FACTORS = (1.0, 2.0, 3.0, 0.5, 4.0, 6.0, 1.5, 12.0, 0.25, 8.0)
PRICE_ELASTICITY = 0.8
#: Copies k > 0 of a listing are other sellers' / editions' listings, not near-copies: each non-header
#: word is dropped with this probability, one bullet of another (random) listing is appended, and the
#: price gets a log-normal factor of this sigma (sellers price the same product differently; about the
#: spread of the sample's prices around their 10 nearest text neighbours, 0.3-0.6 in log price).
WORD_DROPOUT = 0.2
PRICE_NOISE_SIGMA = 0.3
#: The two ingested batches: the labeled half (a file with prices) and the unlabeled half (no price
#: column), as a retailer delivers them; a labeled file's row without a price would be quarantined.
BATCHES = {"labeled": "scale_labeled", "unlabeled": "scale_unlabeled"}
#: Run config: only warnings from Dagster's console logger (the step events are read from the instance).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
PAGE = 4096


# ------------------------------------------------------------------------------------------ data


def _vary(text: str, copy: int, rng: np.random.Generator, donor: str = "") -> tuple[str, float]:
    """Copy ``copy`` of one listing: bullets reordered, words dropped (:data:`WORD_DROPOUT`), one bullet
    of ``donor`` (another listing) appended, Value scaled; (text, pack factor). Copy 0 is the listing."""
    if copy == 0:
        return text, 1.0
    lines = text.split("\n")
    bullets = [i for i, line in enumerate(lines) if line.lower().startswith("bullet point")]
    if len(bullets) > 1:
        order = rng.permutation(len(bullets))
        moved = [lines[bullets[j]] for j in order]
        for i, line in zip(bullets, moved):
            lines[i] = line
    for i, line in enumerate(lines):
        head, sep, body = line.partition(":")
        if not sep or head in ("Value", "Unit") or not body.strip():
            continue
        words = body.split()
        kept = [w for w in words if rng.random() >= WORD_DROPOUT] or words[:1]
        lines[i] = f"{head}: {' '.join(kept)}"
    borrowed = [ln for ln in donor.split("\n") if ln.lower().startswith("bullet point")]
    if borrowed:
        lines.append(f"Bullet Point {len(bullets) + 1}: {borrowed[0].partition(':')[2].strip()}")
    factor = FACTORS[copy % len(FACTORS)]
    scaled = False
    for i, line in enumerate(lines):
        if line.startswith("Value:"):
            try:
                lines[i] = f"Value: {float(line.split(':', 1)[1]) * factor:g}"
                scaled = True
            except ValueError:
                pass
            break
    if not scaled:
        factor = 1.0
    # the copy number makes every text unique even when nothing above changed it
    lines[0] = f"{lines[0]} (edition {copy})"
    return "\n".join(lines), factor


def scaled_catalog(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """``n_rows`` catalog rows (``sample_id, catalog_content, image_link, price``) from the bundled
    labeled sample: row i copies listing ``i % 7216``, copy ``i // 7216`` varied by :func:`_vary`
    (another seeded listing as donor) and priced ``price * factor ** PRICE_ELASTICITY * seller
    factor``; price NaN for a seeded half (unlabeled). Also returns column ``template`` (the listing's row).

    Raises:
        ValueError: n_rows < 100.
    """
    from pricing_assets.lib.catalog.parsing import MAX_PRICE_USD

    if n_rows < 100:
        raise ValueError(f"scaled_catalog: n_rows must be >= 100, got {n_rows}")
    base = pd.read_csv(LABELED_CSV, dtype={"sample_id": str})
    rng = np.random.default_rng(seed)
    tmpl = np.arange(n_rows) % len(base)
    copy = np.arange(n_rows) // len(base)
    texts, prices = [], []
    donors = rng.integers(0, len(base), n_rows)
    noise = np.exp(rng.normal(0.0, PRICE_NOISE_SIGMA, n_rows))
    for i, (t, c) in enumerate(zip(tmpl, copy)):
        text, factor = _vary(base.at[t, "catalog_content"], int(c), rng, base.at[donors[i], "catalog_content"])
        texts.append(text)
        price = float(base.at[t, "price"]) * factor**PRICE_ELASTICITY * (noise[i] if c else 1.0)
        prices.append(round(price, 2))
    out = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n_rows)],
            "catalog_content": texts,
            "image_link": base["image_link"].to_numpy()[tmpl],
            # a big pack of a dear listing may cross the catalog's plausible-price bound: kept at the bound
            "price": np.clip(prices, 0.01, MAX_PRICE_USD),
            "template": tmpl,
        }
    )
    out.loc[rng.random(n_rows) < 0.5, "price"] = np.nan
    dups = int(out["catalog_content"].duplicated().sum())
    if dups:
        raise AssertionError(f"scaled_catalog: {dups} duplicate texts")
    return out


def fed_per_row_frames(catalog: pd.DataFrame, registry: dict, seed: int = 0, n_templates: int | None = None) -> dict:
    """The per-row assets that are fed (see the module docstring): ``{"product_images": df,
    "ocr_text": df, embedding asset key path (tuple): df}``, each validated by its data contract.
    ``n_templates``: listings the catalog was built from (default: the largest ``template`` + 1); give
    the whole catalog's when feeding one batch of it, so a listing keeps its base vector across batches."""
    import hashlib

    from PIL import Image

    from data_contracts import contract_for
    from data_contracts.embeddings import embedding_schema
    from pricing_assets.defs.embeddings import embedding_key
    from pricing_assets.lib.embeddings.registry import enabled_models

    rng = np.random.default_rng(seed)
    n = len(catalog)
    ids = catalog["sample_id"].to_numpy()
    names = catalog["image_link"].str.rsplit("/", n=1).str[-1]
    bundled = {p.name: p for p in IMAGES_DIR.glob("*.jpg")}
    facts = {}
    for name, path in bundled.items():
        data = path.read_bytes()
        with Image.open(path) as im:
            facts[name] = (str(path), hashlib.sha256(data).hexdigest(), im.width, im.height, len(data))
    ok = names.isin(list(facts)).to_numpy()
    info = [facts.get(nm) for nm in names]
    images = pd.DataFrame(
        {
            "sample_id": ids,
            "image_link": catalog["image_link"].to_numpy(),
            "status": np.where(ok, "ok", "missing"),
            "reason": np.where(ok, "", "bench: photo not bundled"),
            "source": "bench",
            "sha256": [f[1] if f else None for f in info],
            "image_uri": [f[0] if f else None for f in info],
            "width": pd.array([f[2] if f else None for f in info], dtype="Int64"),
            "height": pd.array([f[3] if f else None for f in info], dtype="Int64"),
            "aspect_ratio": [f[2] / f[3] if f else np.nan for f in info],
            "n_bytes": pd.array([f[4] if f else None for f in info], dtype="Int64"),
            "format": [("JPEG" if f else None) for f in info],
            "mode": [("RGB" if f else None) for f in info],
            "has_alpha": pd.array([False if f else None for f in info], dtype="boolean"),
        }
    )
    ocr = pd.DataFrame(
        {
            "sample_id": ids,
            "ocr_status": np.where(ok, "ok", "no_image"),
            "ocr_text": "",
            "n_lines": 0,
            "mean_conf": np.nan,
            "seconds": 0.0,
            "ocr_reason": np.where(ok, "bench: not run", "bench: no image"),
        }
    )
    out = {
        "product_images": contract_for("product_images").validate(images),
        "ocr_text": contract_for("ocr_text").validate(ocr),
    }
    tmpl = catalog["template"].to_numpy()
    for spec in enabled_models(registry):
        if spec.modality == "text":
            n_base = n_templates or int(tmpl.max()) + 1
            base = np.random.default_rng(seed + 1).standard_normal((n_base, spec.dim)).astype(np.float32)
            vec = base[tmpl] + 0.35 * rng.standard_normal((n, spec.dim)).astype(np.float32)
            keep = np.ones(n, dtype=bool)
        else:
            shas = images["sha256"].to_numpy()
            keep = ok
            uniq = {s: i for i, s in enumerate(sorted({s for s in shas[keep]}))}
            base = np.random.default_rng(seed + 2).standard_normal((max(len(uniq), 1), spec.dim)).astype(np.float32)
            vec = base[[uniq[s] for s in shas[keep]]] if keep.any() else np.zeros((0, spec.dim), np.float32)
        vec = vec / np.linalg.norm(vec, axis=1, keepdims=True)
        frame = pd.DataFrame(
            {"sample_id": ids[keep], "cache_key": [f"bench{i}" for i in np.flatnonzero(keep)], "embedding": list(vec)}
        )
        out[tuple(embedding_key(spec).path)] = embedding_schema(spec.dim).validate(frame)
    return out


# ------------------------------------------------------------------------------------ measuring


class RssSampler:
    """Resident set size of this process every ``interval_s`` seconds (``/proc/self/statm``), kept
    as (monotonic time, MB) pairs; :meth:`peak_mb` over a time window."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def _run(self, interval_s: float) -> None:
        with open("/proc/self/statm") as fh:
            while not self._stop.is_set():
                fh.seek(0)
                self.samples.append((time.time(), int(fh.read().split()[1]) * PAGE / 2**20))
                time.sleep(interval_s)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, start: float = 0.0, end: float = float("inf")) -> float:
        vals = [mb for t, mb in self.samples if start <= t <= end]
        return round(max(vals), 1) if vals else float("nan")


def _step_windows(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """{step key: (start, end) unix time} of a finished run, from its STEP_START / STEP_SUCCESS events."""
    import dagster as dg

    start, end = {}, {}
    for rec in instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    ).records:
        ev = rec.event_log_entry
        (start if ev.dagster_event.event_type == dg.DagsterEventType.STEP_START else end)[ev.step_key] = ev.timestamp
    return {k: (start[k], end[k]) for k in start if k in end}


def _prepare(n_rows: int, workdir: Path) -> dict:
    """Steps 1-3 of the module docstring in this process: the catalog, its two ingested batches,
    their catalog assets and the fed per-row assets, in the instance under ``workdir / "home"``."""
    import dagster as dg

    from pricing_assets import cli
    from pricing_assets.definitions import build_defs
    from pricing_assets.lib.embeddings.registry import load_registry
    from pricing_assets.settings import load_settings

    t0 = time.perf_counter()
    catalog = scaled_catalog(n_rows)
    instance = cli.get_instance()
    defs = build_defs(load_settings())
    per_row = defs.resolve_job_def("catalog_batch_job")
    io = build_io_managers(defs)
    registry = load_registry()
    for half, batch in BATCHES.items():
        part = catalog[catalog["price"].notna() == (half == "labeled")].reset_index(drop=True)
        path = workdir / f"{batch}.csv"
        part.drop(columns=["template"] + ([] if half == "labeled" else ["price"])).to_csv(path, index=False)
        cli.ingest(instance, str(path), batch)
        res = per_row.execute_in_process(
            instance=instance,
            partition_key=batch,
            run_config=QUIET,
            asset_selection=[dg.AssetKey(k) for k in ("raw_catalog", "catalog_quarantine", "catalog_items")],
        )
        if not res.success:
            raise RuntimeError(f"bench_scale: the catalog assets failed on batch {batch}")
        n_items = len(res.output_for_node("catalog_items"))
        if n_items != len(part):  # every row must reach the global assets, else the size measured is not N
            raise RuntimeError(f"bench_scale: batch {batch}: {len(part) - n_items} of {len(part)} rows quarantined")
        for key, frame in fed_per_row_frames(part, registry, n_templates=int(catalog["template"].max()) + 1).items():
            asset_key = dg.AssetKey(list(key) if isinstance(key, tuple) else [key])
            manager = io[defs.get_assets_def(asset_key).get_io_manager_key_for_asset_key(asset_key)]
            ctx = dg.build_output_context(asset_key=asset_key, partition_key=batch)
            manager.handle_output(ctx, frame)
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset_key, partition=batch))
    return {"labeled_rows": int(catalog["price"].notna().sum()), "prepare_s": round(time.perf_counter() - t0, 2)}


def _run_job(job: str) -> dict:
    """One run of ``job`` (one of :data:`RUNS`) in this process, on the instance of ``DAGSTER_HOME``:
    ``{"wall_s", "peak_rss_mb", "assets": {step: {"wall_s", "peak_rss_mb"}}}``."""
    import dagster as dg

    from pricing_assets import cli
    from pricing_assets.definitions import build_defs
    from pricing_assets.defs.schedules import NIGHTLY_RUN_CONFIG
    from pricing_assets.settings import load_settings

    instance = cli.get_instance()
    defs = build_defs(load_settings())
    assets: dict[str, dict] = {}
    with RssSampler() as rss:
        g0 = time.time()
        if job == "price_predictions":
            r = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance, asset_selection=[dg.AssetKey("price_predictions")], run_config=QUIET
            )
        elif job == "scoring_job":
            r = defs.resolve_job_def(job).execute_in_process(
                instance=instance, partition_key=BATCHES["unlabeled"], run_config=QUIET
            )
        else:  # the nightly job's own config (retrain even on unchanged labels) plus the quiet logger
            r = defs.resolve_job_def(job).execute_in_process(
                instance=instance, run_config={**NIGHTLY_RUN_CONFIG, **QUIET}
            )
        g1 = time.time()
        if not r.success:
            raise RuntimeError(f"bench_scale: {job} failed")
        for step, (s, e) in _step_windows(instance, r.run_id).items():
            assets[step] = {"wall_s": round(e - s, 2), "peak_rss_mb": rss.peak_mb(s, e)}
    return {"wall_s": round(g1 - g0, 2), "peak_rss_mb": rss.peak_mb(g0, g1), "assets": assets}


#: The runs measured, in order, each in a fresh interpreter as the run launcher starts one process per
#: run (the code location's executor is in-process): the nightly retrain, scoring the unlabeled batch,
#: and the merge of every batch's predictions.
RUNS = ("nightly_retrain_job", "scoring_job", "price_predictions")


def _stage(stage: str, n_rows: int, workdir: Path) -> dict:
    """Run one stage (``prepare`` or a job of :data:`RUNS`) in a fresh interpreter; its result object."""
    out = workdir / f"{stage}.json"
    t = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--stage",
            stage,
            "--rows",
            str(n_rows),
            "--workdir",
            str(workdir),
            "--json",
            str(out),
        ],
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"bench_scale: {stage} at {n_rows} rows failed (exit {proc.returncode}) after {time.perf_counter() - t:.0f} s"
        )
    return json.loads(out.read_text())


def run_one(n_rows: int, workdir: Path) -> dict:
    """Build, feed and run one size (see the module docstring), each stage in its own interpreter; the
    result object. ``global_wall_s`` sums the runs' wall times, ``global_peak_rss_mb`` is the largest
    run's peak (the runs are separate processes); ``runs`` has each run's own figures."""
    prep = _stage("prepare", n_rows, workdir)
    runs = {job: _stage(job, n_rows, workdir) for job in RUNS}
    return {
        "rows": n_rows,
        "labeled_rows": prep["labeled_rows"],
        "global_wall_s": round(sum(r["wall_s"] for r in runs.values()), 2),
        "global_peak_rss_mb": max(r["peak_rss_mb"] for r in runs.values()),
        "prepare_s": prep["prepare_s"],
        "runs": {job: {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]} for job, r in runs.items()},
        "assets": {step: a for r in runs.values() for step, a in r["assets"].items()},
    }


def build_io_managers(defs) -> dict:
    """{IO manager key: the initialised IO manager} of ``defs`` (to store the fed per-row assets)."""
    import dagster as dg

    out = {}
    for key, res in defs.resources.items():
        if isinstance(res, dg.ConfigurableIOManagerFactory):
            out[key] = res.create_io_manager(dg.build_init_resource_context())
        elif isinstance(res, dg.IOManager):
            out[key] = res
    return out


# ------------------------------------------------------------------------------------- summary


def growth_exponent(rows: list[int], values: list[float]) -> float | None:
    """b of ``value = a * rows ** b`` by least squares on log-log (None with < 2 usable sizes)."""
    pts = [(r, v) for r, v in zip(rows, values) if v and v > 0 and np.isfinite(v)]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return round(float(np.polyfit(x, y, 1)[0]), 2)


def largest_fitting(rows: list[int], peak_mb: list[float], memory_gb: float) -> int | None:
    """Largest N whose peak RSS, extrapolated with the fitted power law, stays under ``memory_gb``."""
    b = growth_exponent(rows, peak_mb)
    if b is None or b <= 0:
        return None
    a = peak_mb[-1] / rows[-1] ** b
    return int((memory_gb * 1024 / a) ** (1 / b))


def summary(results: list[dict], memory_gb: float) -> str:
    """The table printed after the runs: per asset, wall s and peak MB per size, and the exponent."""
    rows = [r["rows"] for r in results]
    names = sorted(
        {a for r in results for a in r["assets"]},
        key=lambda a: -max(r["assets"].get(a, {}).get("wall_s", 0) for r in results),
    )
    head = f"{'asset':<34}" + "".join(f"{n:>20,}" for n in rows) + f"{'exp(wall)':>11}{'exp(rss)':>10}"
    lines = [head, " " * 34 + "".join(f"{'wall s / peak MB':>20}" for _ in rows)]
    for a in ["(global)", *names]:
        if a == "(global)":
            vals = [(r["global_wall_s"], r["global_peak_rss_mb"]) for r in results]
        else:
            vals = [
                (
                    r["assets"].get(a, {}).get("wall_s", float("nan")),
                    r["assets"].get(a, {}).get("peak_rss_mb", float("nan")),
                )
                for r in results
            ]
        ew = growth_exponent(rows, [v[0] for v in vals])
        er = growth_exponent(rows, [v[1] for v in vals])
        lines.append(
            f"{a:<34}"
            + "".join(f"{w:>11.1f} / {m:>6.0f}" for w, m in vals)
            + f"{'' if ew is None else ew:>11}{'' if er is None else er:>10}"
        )
    fit = largest_fitting(rows, [r["global_peak_rss_mb"] for r in results], memory_gb)
    lines.append(
        f"largest catalog whose global peak RSS fits in {memory_gb:g} GB (power-law extrapolation): {fit if fit else 'n/a (need 2+ sizes)'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, nargs="+", required=True, help="catalog sizes (rows, half labeled)")
    p.add_argument("--json", type=Path, help="write the result list here")
    p.add_argument(
        "--memory-gb", type=float, default=24.0, help="memory of the machine for the 'largest size that fits' line"
    )
    p.add_argument("--workdir", type=Path, help="keep the temporary instances here (default: a deleted temp folder)")
    p.add_argument("--stage", choices=("prepare", *RUNS), help=argparse.SUPPRESS)  # internal: one stage in this process
    args = p.parse_args(argv)
    if args.stage:
        os.environ["DAGSTER_HOME"] = str(args.workdir / "home")
        os.environ["PRICING_IMAGES_OFFLINE"] = "1"
        os.environ.pop("PRICING_STORAGE", None)
        result = _prepare(args.rows[0], args.workdir) if args.stage == "prepare" else _run_job(args.stage)
        args.json.write_text(json.dumps(result))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        base = args.workdir or Path(tmp)
        for n in args.rows:
            wd = base / f"rows_{n}"
            wd.mkdir(parents=True, exist_ok=True)
            try:
                results.append(run_one(n, wd))
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                return 1
            runs = ", ".join(
                f"{job} {r['wall_s']:.0f} s / {r['peak_rss_mb']:.0f} MB" for job, r in results[-1]["runs"].items()
            )
            print(
                f"rows {n:,}: global {results[-1]['global_wall_s']:.0f} s, peak {results[-1]['global_peak_rss_mb']:.0f} MB ({runs})",
                flush=True,
            )
    print(summary(results, args.memory_gb))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
