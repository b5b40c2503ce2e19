"""``pricing status``: what state the pipeline is in, from the Dagster instance alone.

:func:`collect_status` returns plain data (also printed by ``pricing status --json``);
:func:`render_status` turns it into the one-screen text view.
"""

import time

import dagster as dg

from pricing_assets.instance_state import (
    IN_PROGRESS,
    RECOVER_COMMAND,
    active_batch_run,
    freshness_states,
    held_pool_slots,
    instigator_states,
    last_batch_failure,
    latest_materialization,
    missing_batches,
    model_gate_reason,
    newest_daemon_heartbeat,
    oof_smapes,
    predictions_export_verdict,
    recent_failed_runs,
    registered_batches,
    run_failure_cause,
    stale_runs,
)


def _age_s(record) -> float | None:
    return round(time.time() - record.timestamp, 0) if record is not None else None


def _batches(instance: dg.DagsterInstance, defs: dg.Definitions, stale: dict) -> list[dict]:
    """Per registered batch: its row counts and state — ``complete``; ``running`` (run named);
    ``stale`` (its run was left STARTED by a dead process, named); ``failed`` (run + cause); else
    ``incomplete`` (not run yet)."""
    missing = set(missing_batches(instance, defs))
    out = []
    for b in registered_batches(instance):
        meta, _ = latest_materialization(instance, "raw_catalog", b)
        row = {
            "batch": b,
            "rows_in": meta.get("rows_in"),
            "rows": meta.get("rows"),
            "labeled_rows": meta.get("labeled_rows"),
            "quarantined_rows": meta.get("quarantined_rows"),
            "state": "complete",
            "failure": None,
        }
        if b in missing:
            run_now = active_batch_run(instance, b)
            active = [run_now] if run_now else []
            run = last_batch_failure(instance, b)
            if active and active[0].run_id in stale:
                worker = stale[active[0].run_id].worker.describe()
                row["state"], row["failure"] = (
                    "stale",
                    {
                        "run_id": active[0].run_id,
                        "cause": f"its worker ({worker}) is gone; `{RECOVER_COMMAND}` clears it",
                    },
                )
            elif active:
                row["state"], row["failure"] = (
                    "running",
                    {"run_id": active[0].run_id, "cause": f"in progress ({active[0].status.value})"},
                )
            elif run:
                row["state"], row["failure"] = (
                    "failed",
                    {"run_id": run.run_id, "cause": run_failure_cause(instance, run.run_id)},
                )
            else:
                row["state"] = "incomplete"
        out.append(row)
    return out


def _stale_runs(stale: dict) -> list[dict]:
    return [
        {
            "run_id": s.run_id,
            "job": s.job,
            "partition": s.partition,
            "worker": s.worker.describe(),
            "started_at": s.started_at,
            "clear_with": RECOVER_COMMAND,
        }
        for s in stale.values()
    ]


def _pool_slots(instance: dg.DagsterInstance, stale: dict) -> list[dict]:
    """Claimed pool slots, each with ``holder``: ``running`` (normal), ``stale`` (its run's process is
    gone) or ``leaked`` (its run finished or was deleted): the last two are cleared by ``pricing recover``."""
    out = []
    for slot in held_pool_slots(instance):
        holder = (
            "stale"
            if slot["run_id"] in stale
            else ("running" if slot["run_status"] in {s.value for s in IN_PROGRESS} else "leaked")
        )
        out.append({**slot, "holder": holder, "clear_with": RECOVER_COMMAND if holder != "running" else None})
    return out


def _model(instance: dg.DagsterInstance) -> dict:
    blend_meta, blend_rec = latest_materialization(instance, "price_blend")
    smapes = {key.removesuffix("_predictions"): v for key, v in oof_smapes(instance).items()}
    served_meta, served_rec = latest_materialization(instance, "serving_model")
    gate, gate_run = model_gate_reason(instance)
    return {
        "trained_run_id": blend_rec.run_id if blend_rec else None,
        "trained_at": blend_rec.timestamp if blend_rec else None,
        "age_s": _age_s(blend_rec),
        "labeled_rows": blend_meta.get("labeled_rows"),
        "oof_smape": smapes,
        "blend_run_id": gate_run or (blend_rec.run_id if blend_rec else None),
        "model_gate": gate,
        "serving_version": served_meta.get("model_version"),
        "serving_labeled_rows": served_meta.get("labeled_rows"),
        "serving_age_s": _age_s(served_rec),
    }


def _predictions(instance: dg.DagsterInstance) -> dict:
    meta, rec = latest_materialization(instance, "price_predictions")
    verdict = predictions_export_verdict(instance)
    return {
        "rows_priced": meta.get("rows"),
        "model_version": meta.get("model_version"),  # "mixed" while some batch awaits re-scoring
        "model_versions": meta.get("model_versions"),
        "stored_at": rec.timestamp if rec else None,
        "age_s": _age_s(rec),
        "exportable": verdict.ok,
        "problem": verdict.problem or None,
    }


def _served_accuracy(instance: dg.DagsterInstance) -> list[dict]:
    """The realized accuracy per model version (``served_accuracy``'s latest metadata): served prices
    whose true price has arrived, ``[{model_version, rows, smape, median_ape, interval_coverage}]``."""
    meta, _ = latest_materialization(instance, "served_accuracy")
    return list(meta.get("model_versions") or [])


def _automation(instance: dg.DagsterInstance, defs: dg.Definitions) -> dict:
    """Each sensor's and schedule's state in this code location (``settings.LOCATION_NAME``: a sensor
    switched on under another location name is another sensor), and whether the daemon is alive."""
    from pricing_assets.settings import LOCATION_NAME

    stored = instigator_states(instance, LOCATION_NAME)
    out = {}
    for inst in [*(defs.sensors or []), *(defs.schedules or [])]:
        st = stored.get(inst.name)
        if st in ("RUNNING", "STOPPED"):  # switched in the UI / CLI (DECLARED_IN_CODE: as in code)
            out[inst.name] = st.lower()
        else:  # as declared in code (PRICING_AUTOMATION of this process's environment)
            running = inst.default_status.value == "RUNNING"
            out[inst.name] = ("running" if running else "stopped") + " (default)"
    newest = newest_daemon_heartbeat(instance)
    out["daemon"] = (
        "alive"
        if newest and time.time() - newest < 120
        else "not running (sensors and schedules need `dagster dev` or `dagster-daemon run`)"
    )
    return out


def _failed_runs(instance: dg.DagsterInstance, limit: int = 5) -> list[dict]:
    runs = recent_failed_runs(instance, limit)
    return [
        {
            "run_id": r.run_id,
            "job": r.job_name,
            "partition": r.tags.get("dagster/partition"),
            "cause": run_failure_cause(instance, r.run_id),
        }
        for r in runs
    ]


def collect_status(instance: dg.DagsterInstance, defs: dg.Definitions) -> dict:
    """Everything ``pricing status`` shows, as JSON-ready data.

    Returns:
        ``{"batches": [{batch, rows_in, rows, labeled_rows, quarantined_rows, state, failure}],
        "model": {trained_run_id, trained_at (epoch s), age_s, labeled_rows, oof_smape {model: SMAPE},
        blend_run_id, model_gate, serving_version, serving_labeled_rows, serving_age_s},
        "predictions": {rows_priced, model_version ("mixed" while batches await re-scoring),
        model_versions {version: rows}, stored_at, age_s, exportable, problem},
        "served_accuracy": [{model_version, rows, smape, median_ape, interval_coverage}],
        "freshness": [{asset, materialized_at, age_h, state (fresh|warn|fail|never)}],
        "automation": {sensor or schedule: running|stopped, daemon: …},
        "failed_runs": [{run_id, job, partition, cause}], "stale_runs": [{run_id, job, partition, worker, started_at,
        clear_with}], "pool_slots": [{pool, run_id, step, run_status, since, limit, holder (running|stale|leaked),
        clear_with}]}``; missing facts are None.
    """
    stale = {s.run_id: s for s in stale_runs(instance)}
    return {
        "batches": _batches(instance, defs, stale),
        "model": _model(instance),
        "predictions": _predictions(instance),
        "served_accuracy": _served_accuracy(instance),
        "freshness": freshness_states(instance),
        "automation": _automation(instance, defs),
        "failed_runs": _failed_runs(instance),
        "stale_runs": _stale_runs(stale),
        "pool_slots": _pool_slots(instance, stale),
    }


def _ago(s: float | None) -> str:
    if s is None:
        return "never"
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.1f} {unit} ago"
    return f"{s:.0f} s ago"


def render_status(st: dict) -> str:
    """The status as plain text tables (no colours: safe in logs and pipes)."""
    lines = ["BATCHES"]
    fmt = "  {:<28} {:>7} {:>7} {:>8} {:>11}  {}"
    lines.append(fmt.format("batch", "rows in", "rows", "labeled", "quarantined", "state"))
    for b in st["batches"]:
        state = b["state"] + (f" (run {b['failure']['run_id'][:8]}: {b['failure']['cause']})" if b["failure"] else "")
        lines.append(
            fmt.format(
                b["batch"][:28],
                *(("-" if b[k] is None else b[k]) for k in ("rows_in", "rows", "labeled_rows", "quarantined_rows")),
                state,
            )
        )
    if not st["batches"]:
        lines.append("  none registered: `pricing ingest FILE`")
    m = st["model"]
    lines += ["", "MODEL"]
    if m["trained_run_id"]:
        lines.append(
            f"  trained {_ago(m['age_s'])} in run {m['trained_run_id'][:8]} on {m['labeled_rows']} labeled rows"
        )
        lines.append("  OOF SMAPE: " + ", ".join(f"{k} {v:.2f}" for k, v in m["oof_smape"].items()))
        if m["model_gate"]:
            lines.append(f"  model gate (run {m['blend_run_id'][:8]}): {m['model_gate']}")
        if m["serving_version"]:
            lines.append(
                f"  serving: model {m['serving_version']} (promoted {_ago(m['serving_age_s'])}, {m['serving_labeled_rows']} labeled rows)"
            )
    else:
        lines.append("  not trained yet: `pricing materialize`")
    p = st["predictions"]
    lines += ["", "PREDICTIONS"]
    if p["model_version"]:
        lines.append(f"  {p['rows_priced']} products priced {_ago(p['age_s'])} by model version {p['model_version']}")
        lines.append("  exportable" if p["exportable"] else f"  NOT exportable: {p['problem']}")
    else:
        lines.append("  none yet")
    lines += ["", "SERVED ACCURACY (served prices whose true price has arrived since)"]
    for a in st["served_accuracy"]:
        cov = "" if a.get("interval_coverage") is None else f", interval coverage {a['interval_coverage']:.0%}"
        lines.append(
            f"  model {a['model_version']}: {a['rows']} products, SMAPE {a['smape']:.2f}, median abs error {a['median_ape']:.1f} %{cov}"
        )
    if not st["served_accuracy"]:
        lines.append("  none yet (no priced product has received its true price)")
    overdue = [f for f in st["freshness"] if f["state"] in ("warn", "fail")]
    lines += ["", "FRESHNESS (serving_model and price_predictions are due every nightly retrain)"]
    for f in st["freshness"]:
        age = "never materialised" if f["age_h"] is None else f"last materialised {f['age_h']:.1f} h ago"
        flag = {"warn": "OVERDUE (warn)", "fail": "OVERDUE (fail)"}.get(f["state"], f["state"])
        lines.append(f"  {f['asset']:<20} {flag}: {age}")
    if overdue:
        lines.append(
            "  a nightly retrain was missed or failed: see RECENT FAILED RUNS, or `pricing materialize --retrain`"
        )
    lines += ["", "AUTOMATION"]
    lines += [f"  {k:<28} {v}" for k, v in st["automation"].items()]
    if st["stale_runs"]:
        lines += [
            "",
            f"STALE RUNS (left STARTED by a process that no longer exists; `{RECOVER_COMMAND}` marks them failed and frees their slots)",
        ]
        lines += [
            f"  {r['run_id'][:8]} {r['job']}{' [' + r['partition'] + ']' if r['partition'] else ''}: {r['worker']}, started "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(r['started_at'])) if r['started_at'] else '?'}"
            for r in st["stale_runs"]
        ]
    if st["pool_slots"]:
        lines += ["", "POOL SLOTS HELD"]
        for p in st["pool_slots"]:
            since = time.strftime("%H:%M:%S UTC", time.gmtime(p["since"])) if p["since"] else "?"
            fix = f"  -> `{p['clear_with']}`" if p["clear_with"] else ""
            lines.append(
                f"  {p['pool']} ({p['limit']} slot(s)): run {p['run_id'][:8]} step {p['step']} since {since}, {p['holder']}{fix}"
            )
    if st["failed_runs"]:
        lines += ["", "RECENT FAILED RUNS"]
        lines += [
            f"  {r['run_id'][:8]} {r['job']}{' [' + r['partition'] + ']' if r['partition'] else ''}: {r['cause']}"
            for r in st["failed_runs"]
        ]
    return "\n".join(lines)
