"""pricing: put catalog files into the pipeline, build what is missing, export the predictions.

Every command works on the Dagster instance in $DAGSTER_HOME (default ./.dagster_home), the same
one the web UI (`make ui`) shows, so runs started here appear there.

Examples:
  pricing ingest data/sample/amazon_pricing_sample.csv --batch sample_labeled
  pricing materialize                      # every batch not built yet, then features, models, predictions
  pricing status                           # batches, model, predictions and automation on one screen
  pricing predictions --out artifacts/predictions.csv
  pricing explain 217392                   # a served price: interval, comparable products, drivers
  pricing batches --drop bad_delivery      # set a broken batch aside (its file is kept)
  pricing recover                          # fail runs whose process died and free the pool slots they hold

Exit status: 0 done; 1 a run failed or the export was refused; 2 a usage error (bad path, batch name
or file; no instance or predictions yet). Add --debug (or PRICING_DEBUG=1) for tracebacks.
"""

import argparse
import json
import os
import resource
import sys
import time

import dagster as dg

from pricing_assets.automation import GLOBAL_GROUPS, PER_ROW_GROUPS, PUBLISHED_ASSETS, SCORING_GROUPS, TRAINING_SET
from pricing_assets.instance_state import (
    RECOVER_COMMAND,
    batch_selection,
    batch_states,
    batches_to_score,
    gated_retrain,
    is_registered_batch,
    missing_batches,
    oof_smapes,
    pool_waits,
    predictions_export_verdict,
    predictions_stale,
    recover_runs,
    register_batch,
    registered_batches,
    root_cause,
    serving_version,
    started_run_ids,
    training_pending,
    unregister_batch,
)
from pricing_assets.lib.serving.review import DEFAULT_MAX_WIDTH_RATIO, DEFAULT_MIN_SIMILARITY


def get_instance() -> dg.DagsterInstance:
    """The persistent instance at ``$DAGSTER_HOME`` (created with the bundled ``infra/dagster.yaml``
    settings when the folder is new)."""
    from pricing_assets.settings import REPO_ROOT, load_settings

    home = load_settings().home
    os.environ["DAGSTER_HOME"] = home
    os.makedirs(home, exist_ok=True)
    cfg = os.path.join(home, "dagster.yaml")
    bundled = REPO_ROOT / "infra" / "dagster.yaml"
    if not os.path.exists(cfg) and bundled.exists():
        with open(cfg, "w") as f:
            f.write(bundled.read_text())
    return dg.DagsterInstance.get()


def ingest(instance: dg.DagsterInstance, path: str, batch: str | None, storage_options: dict | None = None) -> str:
    """Store ``path`` (local or ``s3://``) as batch ``batch`` and register its dynamic partition.

    ``storage_options`` are the source's fsspec options; by default an ``s3://`` source uses
    ``PRICING_S3_ENDPOINT`` (credentials from the ``AWS_*`` environment variables).

    The file's header is checked first (format, UTF-8, required columns), so a malformed file is
    refused before it is stored or registered.

    Returns:
        the batch name (partition key).

    Raises:
        ValueError: bad batch name or suffix; FileNotFoundError / IsADirectoryError: bad path;
        pricing_assets.lib.catalog.inbox.InboxDefect: unreadable header or missing required columns.
    """
    import fsspec

    from pricing_assets.defs.resources import build_resources
    from pricing_assets.lib.catalog.batches import CATALOG_SUFFIXES, batch_name_for, store_batch, validate_batch_name
    from pricing_assets.lib.catalog.inbox import check_catalog_header
    from pricing_assets.resources import storage_options_for
    from pricing_assets.settings import load_settings

    batch = validate_batch_name(batch) if batch else batch_name_for(path)
    if not path.lower().endswith(CATALOG_SUFFIXES):
        raise ValueError(f"{path}: catalog files must end with one of {CATALOG_SUFFIXES}")
    settings = load_settings()
    storage = build_resources(settings)["storage"]
    src_options = storage_options if storage_options is not None else storage_options_for(path, settings.s3_endpoint)
    fs, src_path = fsspec.core.url_to_fs(path, **src_options)
    if not fs.exists(src_path):
        raise FileNotFoundError(f"catalog file not found: {path}")
    if fs.isdir(src_path):
        raise IsADirectoryError(21, "is a folder", path)
    check_catalog_header(path, int(fs.size(src_path)), src_options)  # InboxDefect before anything is stored
    dst = store_batch(path, storage.batches_dir(), batch, src_options=src_options, dst_options=storage.storage_options)
    register_batch(instance, batch)
    print(f"ingested {path} -> {dst} as batch {batch!r}")
    return batch


def _log_config(level: str) -> dict:
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def _report(what: str, res, timings: dict, key: str, failed: dict) -> bool:
    if res.success:
        print(f"      done in {timings[key]} s", flush=True)
        return True
    failed[what] = _failure_detail(res)
    print(f"      FAILED in {timings[key]} s (run {res.run_id}): {failed[what]}", flush=True)
    return False


def materialize(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    batches: list[str] | None = None,
    log_level: str = "WARNING",
    force_global: bool = False,
) -> dict:
    """Materialise, all in process: the per-row assets of ``batches`` (default: every batch missing
    something); then training (``products`` → features → models → ``price_blend`` →
    ``serving_model``), which ``products`` stops at once when the labeled rows did not change (or
    always retrains with ``force_global``); then ``batch_predictions`` of every complete batch not
    yet scored by the current ``serving_model``; then ``price_predictions``.

    A batch whose run fails does not stop the others: every batch is tried, training reads the
    batches that are complete, and the failures are returned. Set a bad batch aside with
    ``pricing batches --drop NAME``.

    Returns:
        ``{"batches": [...], "failed": {what: message}, "global": retrained (bool), "scored": [...],
        "model_version": str | None, "seconds": {step: s}}``; ``failed`` is keyed by ``"batch NAME"``,
        ``"global assets"``, ``"scoring NAME"`` or ``"price_predictions"``.
    """
    from pricing_assets.defs.schedules import NIGHTLY_RUN_CONFIG, TRAINING_SELECTION
    from pricing_assets.lib.runtime.run_workers import worker_tags

    # runs of a dead `pricing materialize` (their worker tags name this host): failed, slots freed
    report_recovery(recover_runs(instance))
    # the asset checks defined apart from their assets (the drift checks) run with them too
    assets = [*defs.assets, *(defs.asset_checks or [])]
    resources = dict(defs.resources)
    todo = missing_batches(instance, defs) if batches is None else batches
    timings, failed = {}, {}
    tags = {
        "pricing/source": "cli",
        **worker_tags(),
    }  # a run of a process that died is found by these (`pricing recover`)

    def run(key: str, selection, partition: str | None = None, run_config: dict | None = None):
        t0 = time.perf_counter()
        with PoolWaitNotice(instance, tags):
            res = dg.materialize(
                assets,
                instance=instance,
                resources=resources,
                partition_key=partition,
                selection=selection,
                run_config={**_log_config(log_level), **(run_config or {})},
                raise_on_error=False,
                tags=tags,
            )
        timings[key] = round(time.perf_counter() - t0, 1)
        return res

    new_batches = 0
    for i, batch in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] batch {batch}: {', '.join(PER_ROW_GROUPS)} …", flush=True)
        # only what the batch lacks: the steps after a failure, a new encoder's asset after a switch
        new_batches += _report(
            f"batch {batch}",
            run(f"batch:{batch}", batch_selection(instance, defs, batch), partition=batch),
            timings,
            f"batch:{batch}",
            failed,
        )
    retrained = False
    if force_global or new_batches or training_pending(instance):
        # products first, alone: it stores nothing when the labeled rows did not change, and then
        # there is nothing to retrain (one short run instead of a run of skipped steps)
        print("training set: products …", flush=True)
        config = NIGHTLY_RUN_CONFIG if force_global else None
        res = run("products", dg.AssetSelection.assets(TRAINING_SET), run_config=config)
        if _report("global assets", res, timings, "products", failed):
            changed = any(e.asset_key == dg.AssetKey(TRAINING_SET) for e in res.get_asset_materialization_events())
            if changed or training_pending(instance):
                print(f"training: {', '.join(GLOBAL_GROUPS)} …", flush=True)
                res = run("global", TRAINING_SELECTION - dg.AssetSelection.assets(TRAINING_SET))
                if _report("global assets", res, timings, "global", failed):
                    retrained = any(
                        e.asset_key == dg.AssetKey("serving_model") for e in res.get_asset_materialization_events()
                    )
                    if not retrained:
                        print(f"      note: {gated_retrain(instance) or 'serving_model was not stored'}", flush=True)
            else:
                print("      labeled rows unchanged: no retrain, the current model serves", flush=True)
    else:
        print("training: up to date with the labeled rows (use --retrain to retrain anyway)", flush=True)
    scored = []
    to_score = batches_to_score(instance, defs)
    version = serving_version(instance)
    for i, batch in enumerate(to_score, 1):
        print(f"[{i}/{len(to_score)}] scoring batch {batch} with model {version} …", flush=True)
        if _report(
            f"scoring {batch}",
            run(f"score:{batch}", dg.AssetSelection.groups(*SCORING_GROUPS), partition=batch),
            timings,
            f"score:{batch}",
            failed,
        ):
            scored.append(batch)
    if predictions_stale(instance):
        print("price_predictions, served_accuracy …", flush=True)
        _report(
            "price_predictions",
            run("price_predictions", dg.AssetSelection.assets(*PUBLISHED_ASSETS)),
            timings,
            "price_predictions",
            failed,
        )
    return {
        "batches": todo,
        "failed": failed,
        "global": retrained,
        "scored": scored,
        "model_version": version,
        "seconds": timings,
    }


def report_recovery(result: dict) -> None:
    """One line per run marked failed and per run whose slots were freed (nothing when all is well)."""
    for stale in result["failed"]:
        print(
            f"recovered: run {stale.run_id} ({stale.job}{' [' + stale.partition + ']' if stale.partition else ''}) was left STARTED "
            f"by a process that no longer exists ({stale.worker.describe()}); marked failed",
            flush=True,
        )
    for run_id, n in result["freed"].items():
        print(f"recovered: freed {n} pool slot(s) held by run {run_id}", flush=True)


def _clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(ts)) if ts else "?"


class PoolWaitNotice:
    """While a run of this process waits for a pool slot, say so on the terminal: which step waits,
    which run holds the slot and since when (first after ``first_after_s``, then every ``every_s``).

    A daemon thread polls the instance's pool tables (``instance_state.pool_waits``) every
    ``poll_s`` seconds; used as ``with PoolWaitNotice(instance, tags): dg.materialize(...)``, where
    ``tags`` are the run's worker tags (they find this process's runs)."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        tags: dict,
        poll_s: float = 2.0,
        first_after_s: float = 5.0,
        every_s: float = 60.0,
    ):
        import threading

        self.instance, self.tags, self.poll_s, self.first_after_s, self.every_s = (
            instance,
            tags,
            poll_s,
            first_after_s,
            every_s,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pool-wait-notice", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        told: dict[tuple, float] = {}
        while not self._stop.wait(self.poll_s):
            for w in pool_waits(self.instance, started_run_ids(self.instance, self.tags)):
                key, now = (w["run_id"], w["step"]), time.time()
                if now - w["waiting_since"] < self.first_after_s or now - told.get(key, 0.0) < self.every_s:
                    continue
                told[key] = now
                holders = "; ".join(
                    f"run {h['run_id']} (step {h['step']}, {h['run_status']}, since {_clock(h['since'])})"
                    for h in w["held_by"]
                )
                print(
                    f"      waiting since {_clock(w['waiting_since'])} for a slot of pool {w['pool']!r} (step {w['step']}): held by "
                    f"{holders or 'no run (slots limit 0?)'}; if that run's process is gone, `{RECOVER_COMMAND}` frees it",
                    flush=True,
                )


def _failure_detail(res) -> str:
    """One line per failure of a finished run: failing step and root cause, or failed blocking check
    with its description."""
    parts = []
    for e in res.all_events:
        if e.is_step_failure:
            parts.append(f"{e.step_key}: {root_cause(e.event_specific_data.error)}")
        elif e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed:
            ev = e.event_specific_data
            parts.append(
                f"blocking check failed: {ev.asset_key.to_user_string()}:{ev.check_name}"
                + (f" ({ev.description})" if ev.description else "")
            )
    return f"run {res.run_id}: " + ("; ".join(parts[:5]) or "see the run in the UI")


class ExportRefused(RuntimeError):
    """The stored predictions may not leave Dagster (failed check, failed rebuild, stale, gated)."""


def write_predictions(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    out: str,
    allow_stale: bool = False,
    intervals: bool = False,
    review: tuple[float, float] | None = None,
) -> int:
    """Write the latest ``price_predictions`` as CSV ``sample_id,price`` (the competition format; the
    stored asset also has each row's interval, batch and model version) to ``out``; with ``intervals``
    ``sample_id,price,price_low,price_high`` (USD); with ``review`` = (max width ratio, min
    similarity) only the prices to review, with their reasons (``pricing_assets.explain.review_list``).
    Returns rows written.

    Raises:
        UsageError: ``intervals`` asked of predictions stored without one (a model trained before
            intervals existed: run `pricing materialize --retrain`).
        ExportRefused: when :func:`pricing_assets.instance_state.predictions_export_verdict` refuses
            (always when there are none; for stale ones or a failed rebuild unless ``allow_stale``).
    """
    if review is not None:
        from pricing_assets.lib.serving.review import check_thresholds

        try:
            check_thresholds(*review)
        except ValueError as e:
            raise UsageError(f"--needs-review: {e}") from e
    verdict = predictions_export_verdict(instance)
    if verdict.kind in ("none", "contract") or (not verdict.ok and not allow_stale):
        hint = "; `--allow-stale` exports the stored ones anyway" if verdict.kind in ("failed", "stale") else ""
        raise ExportRefused(f"not exporting: {verdict.problem}{hint}")
    if not verdict.ok:
        print(f"warning: {verdict.problem}; exporting them anyway (--allow-stale)", file=sys.stderr)
    elif verdict.problem:
        print(f"note: {verdict.problem}", file=sys.stderr)
    if review is not None:
        from pricing_assets.explain import review_list

        df = review_list(instance, defs, *review)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        df.to_csv(out, index=False)
        return len(df)
    from pricing_assets.explain import load_stored

    df = load_stored(defs, instance, "price_predictions")
    columns = ["sample_id", "price"]
    if intervals:
        if "price_low" not in df or df["price_low"].isna().any():
            raise UsageError(
                "the stored predictions carry no interval (their model predates intervals): "
                "run `pricing materialize --retrain`, then export again"
            )
        columns += ["price_low", "price_high"]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    df[columns].to_csv(out, index=False)
    return len(df)


def drop_batch(instance: dg.DagsterInstance, batch: str) -> str:
    """Set batch ``batch`` aside: unregister its partition (the global assets stop reading it on their
    next run, automation stops waiting for it) and move its stored file to
    ``<storage>/set_aside/<batch>/`` for inspection.

    Returns:
        where the file now is.

    Raises:
        KeyError: if ``batch`` is not registered.
    """
    import fsspec

    from pricing_assets.defs.resources import build_resources
    from pricing_assets.settings import load_settings

    if not is_registered_batch(instance, batch):
        raise KeyError(f"no registered batch {batch!r}; `pricing batches` lists them")
    storage = build_resources(load_settings())["storage"]
    src, dst = f"{storage.batches_dir()}/{batch}", storage.path("set_aside", batch)
    fs, src_path = fsspec.core.url_to_fs(src, **storage.storage_options)
    _, dst_path = fsspec.core.url_to_fs(dst, **storage.storage_options)
    if fs.exists(src_path):
        if fs.exists(dst_path):
            fs.rm(dst_path, recursive=True)
        fs.mv(src_path, dst_path, recursive=True)
    unregister_batch(instance, batch)
    return dst


def oof_summary(instance: dg.DagsterInstance) -> dict:
    """Latest OOF SMAPE of every model and the blend (``instance_state.oof_smapes``: the same list
    ``pricing status`` prints; the TF-IDF ridge was missing here)."""
    return oof_smapes(instance)


class UsageError(Exception):
    """A mistake the user can fix (path, batch name, file, missing instance): one line, exit 2."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pricing-assets")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="pricing", description=__doc__, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"pricing-assets {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an unexpected error (also PRICING_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "ingest",
        help="add a catalog file (local or s3://) as a new batch",
        formatter_class=fmt,
        description="Check a catalog file's header, store a copy and register it as a batch partition.",
        epilog="example:\n  pricing ingest drops/2026-11-29.csv --batch 2026-11-29\n  pricing ingest s3://bucket/drops/today.parquet",
    )
    p.add_argument(
        "path", help="CSV or parquet file with sample_id, catalog_content, image_link (and price when labeled)"
    )
    p.add_argument("--batch", help="batch name (default: the file name without its suffix)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// file (default: PRICING_S3_ENDPOINT)")
    p = sub.add_parser(
        "materialize",
        help="build every batch not built yet, then features, models and predictions",
        formatter_class=fmt,
        description="Build the per-row assets of every batch that misses one, then the global assets when a batch changed.\n"
        "A failed batch does not stop the others; the command exits 1 and names it.",
        epilog="example:\n  pricing materialize\n  pricing materialize --batch 2026-11-29 --retrain",
    )
    p.add_argument("--batch", action="append", help="only this batch (repeatable)")
    p.add_argument("--retrain", action="store_true", help="re-run the global assets even when no batch changed")
    p.add_argument("--log-level", default="WARNING", help="Dagster console log level (default WARNING)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no live progress bars (they are off anyway when output is not a terminal)",
    )
    p = sub.add_parser(
        "predictions",
        help="write the current predictions as CSV (sample_id,price)",
        formatter_class=fmt,
        description="Export price_predictions. Refused when there are none, when they are older than the latest\n"
        "retrain (stale, or held back by the model gate) or when their last rebuild failed.",
        epilog="example:\n  pricing predictions --out artifacts/predictions.csv\n"
        "  pricing predictions --out artifacts/with_intervals.csv --intervals",
    )
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument(
        "--intervals",
        action="store_true",
        help="write sample_id,price,price_low,price_high (each price's 80 %% interval, USD); default: the competition format",
    )
    p.add_argument(
        "--allow-stale",
        action="store_true",
        help="export the stored predictions even when a newer model was not promoted or they are stale",
    )
    p.add_argument(
        "--needs-review",
        action="store_true",
        help="write only the prices to review (sample_id,price,price_low,price_high,width_ratio,best_similarity,reason): "
        "a wide interval or a far best comparable",
    )
    p.add_argument(
        "--max-width-ratio",
        type=float,
        default=DEFAULT_MAX_WIDTH_RATIO,
        help=f"with --needs-review: flag price_high / price_low above this (default {DEFAULT_MAX_WIDTH_RATIO:g})",
    )
    p.add_argument(
        "--min-similarity",
        type=float,
        default=DEFAULT_MIN_SIMILARITY,
        help=f"with --needs-review: flag a best comparable less similar than this (default {DEFAULT_MIN_SIMILARITY:g})",
    )
    p = sub.add_parser(
        "explain",
        help="one served price with its interval, comparable products and drivers",
        formatter_class=fmt,
        description="Print a product's served price, its interval, the model version, its labeled comparables and the\n"
        "features that move its price most, from the stored assets (price_predictions, price_explanations,\n"
        "price_drivers): nothing is refitted or re-embedded. An unknown sample_id is an error (exit 2).",
        epilog="example:\n  pricing explain 217392\n  pricing explain 217392 --json | jq .drivers",
    )
    p.add_argument("sample_id", help="the product's sample_id")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object {sample_id, price, price_low, price_high, model_version, comparables, drivers, ...}",
    )
    p = sub.add_parser(
        "batches",
        help="list batches (complete / failed with the cause / not built); set one aside",
        formatter_class=fmt,
        epilog="example:\n  pricing batches\n  pricing batches --drop bad_delivery",
    )
    p.add_argument(
        "--drop",
        metavar="NAME",
        action="append",
        help="unregister batch NAME and keep its file under <storage>/set_aside/NAME (repeatable)",
    )
    sub.add_parser(
        "recover",
        help="fail runs whose process died (left STARTED) and free the pool slots they hold",
        formatter_class=fmt,
        description="Mark failed every run of `pricing materialize` left STARTED by a process that no longer exists on\n"
        "this machine (killed, OOM, closed laptop) and free the pool slots held by runs that are not running. A run\n"
        "whose process is alive, or runs on another machine, is never touched; runs launched by the daemon are the\n"
        "run_worker_watchdog sensor's. `pricing materialize` does the same before it starts.",
        epilog="example:\n  pricing recover",
    )
    p = sub.add_parser(
        "status",
        help="one screen: batches, current model, predictions, automation",
        formatter_class=fmt,
        epilog="example:\n  pricing status\n  pricing status --json | jq .model",
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON (for scripts)")
    return parser


def _existing_instance() -> dg.DagsterInstance:
    """The instance, for commands that read it: a missing ``DAGSTER_HOME`` folder is a usage error."""
    from pricing_assets.settings import load_settings

    home = load_settings().home
    if not os.path.isdir(home):
        raise UsageError(
            f"no Dagster instance at {home}: ingest a catalog file first (`pricing ingest FILE`) or point DAGSTER_HOME at an existing one"
        )
    return get_instance()


def _run(args) -> int:
    if args.cmd == "ingest":
        ingest(
            get_instance(), args.path, args.batch, {"endpoint_url": args.endpoint_url} if args.endpoint_url else None
        )
        return 0
    instance = _existing_instance()
    if args.cmd == "recover":
        result = recover_runs(instance)
        report_recovery(result)
        if not result["failed"] and not result["freed"]:
            print(
                "nothing to recover: no run left STARTED by a dead process on this machine, no pool slot held by a finished run"
            )
        return 0
    from pricing_assets.definitions import build_defs

    defs = (
        build_defs()
    )  # from the environment of this call (DAGSTER_HOME, PRICING_STORAGE, ...), not of the first import

    if args.cmd == "materialize":
        unknown = [b for b in args.batch or [] if b not in set(registered_batches(instance))]
        if unknown:
            raise UsageError(
                f"no registered batch {unknown[0]!r}; `pricing batches` lists them, `pricing ingest FILE --batch NAME` adds one"
            )
        t0 = time.perf_counter()
        from pricing_assets.progress_display import live_progress

        with live_progress(enabled=not args.no_progress):
            res = materialize(instance, defs, args.batch, args.log_level, force_global=args.retrain)
        ok = len(res["batches"]) - sum(k.startswith("batch ") for k in res["failed"])
        trained = " + global assets" if res["global"] and "global assets" not in res["failed"] else ""
        scored = f", scored {len(res['scored'])} batch(es) with model {res['model_version']}" if res["scored"] else ""
        print(f"materialised {ok} batch(es){trained}{scored} in {time.perf_counter() - t0:.1f} s: {res['seconds']}")
        for k, v in oof_summary(instance).items():
            print(f"OOF SMAPE {k}: {v:.3f}")
        print(
            f"peak memory (max RSS of this process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )
        for what, why in res["failed"].items():
            print(f"error: {what} failed: {why}", file=sys.stderr)
        if any(k.startswith("batch ") for k in res["failed"]):
            print("error: set a bad batch aside with `pricing batches --drop NAME` (its file is kept)", file=sys.stderr)
        return 1 if res["failed"] else 0
    if args.cmd == "explain":
        from pricing_assets.explain import UnknownProduct, explain_product, render_explanation

        try:
            e = explain_product(instance, defs, args.sample_id)
        except UnknownProduct as exc:
            raise UsageError(exc.args[0]) from exc
        print(json.dumps(e, indent=2) if args.json else render_explanation(e))
        return 0
    if args.cmd == "predictions":
        try:
            n = write_predictions(
                instance,
                defs,
                args.out,
                allow_stale=args.allow_stale,
                intervals=args.intervals,
                review=(args.max_width_ratio, args.min_similarity) if args.needs_review else None,
            )
        except ExportRefused as e:
            if predictions_export_verdict(instance).kind == "none":
                raise UsageError(str(e)) from e
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"wrote {n} {'prices to review' if args.needs_review else 'predictions'} to {args.out}")
        return 0
    if args.cmd == "batches":
        for name in args.drop or []:
            try:
                where = drop_batch(instance, name)
            except KeyError as e:
                raise UsageError(e.args[0]) from e
            print(f"set aside batch {name!r}: unregistered, file kept under {where}")
        for b, state, detail in batch_states(instance, defs):
            print("\t".join([b, state, *([detail] if detail else [])]))
        return 0
    if args.cmd == "status":
        from pricing_assets.status import collect_status, render_status

        st = collect_status(instance, defs)
        print(json.dumps(st, indent=2, default=str) if args.json else render_status(st))
        return 0
    raise UsageError(f"unknown command {args.cmd!r}")


def _usage_error(exc: BaseException) -> str | None:
    """The one-line message of a user's mistake, or None when ``exc`` is unexpected."""
    from pricing_assets.lib.catalog.inbox import InboxDefect

    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, InboxDefect):
        return f"{exc} (fix the file, then ingest it again)"
    if isinstance(exc, FileNotFoundError):
        return f"{exc.args[0] if exc.args else exc}: check the path"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename or exc}: is a folder; give a .csv or .parquet file"
    if isinstance(exc, PermissionError):
        return f"{exc.filename or exc}: permission denied"
    if isinstance(exc, ValueError) and ("batch name" in str(exc) or "catalog files must end" in str(exc)):
        return str(exc)
    try:
        import botocore.exceptions as bce
    except ImportError:  # pragma: no cover - botocore comes with s3fs
        return None
    if isinstance(exc, bce.EndpointConnectionError):
        return f"cannot reach the S3 endpoint {exc.kwargs.get('endpoint_url', '')}: check PRICING_S3_ENDPOINT / --endpoint-url and that the store is up"
    if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
        return "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and PRICING_S3_ENDPOINT or --endpoint-url for a non-AWS store)"
    if isinstance(exc, bce.ClientError) and exc.response.get("Error", {}).get("Code") in (
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "403",
    ):
        return f"S3 refused the credentials ({exc.response['Error']['Code']}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pricing`` console script; returns the exit status (see the module docstring)."""
    # third-party loading bars (transformers' "Loading weights", hub downloads) would garble the output
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = _parser().parse_args(argv)
    from pricing_assets.settings import cli_debug

    debug = args.debug or cli_debug()
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's top level: one line for the user, traceback on --debug
        msg = _usage_error(exc)
        if debug:
            raise
        if msg is not None:
            print(f"error: {msg}", file=sys.stderr)
            return 2
        print(
            f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(re-run with --debug or PRICING_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
