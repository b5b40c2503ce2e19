"""A crash never freezes the pipeline: a ``pricing materialize`` SIGKILLed while its embedding step
holds the ``gpu`` pool's only slot, on an instance configured like ``infra/dagster.yaml`` (SQLite,
pools with a default limit of 1, crash-only run retries), is found by the next ``pricing
materialize``: the dead run is marked failed with its reason, its slot is freed, and the re-run
finishes, reusing the embedding chunks the killed run had stored.

Before the fix the re-run blocked forever on "Step blocked by limit for pool gpu": here it runs in a
subprocess with a time limit, so that version of the code fails the test instead of hanging it.

Also: which runs count as stale (``instance_state.stale_runs``): a run of a live process, of a process
on another host or without a worker identity is never touched; a run whose pid is gone, or was
recycled by another process, is.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pricing_tests.helpers import REPO, UNLABELED_CSV
from pricing_tests.test_resume import BATCH, CHUNK, MODEL, build, kill_after_shards, small_chunks

N_ROWS = 40
INFRA_YAML = (REPO / "infra" / "dagster.yaml").read_text()


def cli_defs(root: Path) -> tuple[dg.Definitions, dg.DagsterInstance]:
    """The per-row assets of one text model + ``products`` over ``root``, as ``pricing materialize`` gets them."""
    assets, resources, instance = build(root, INFRA_YAML, with_products=True)
    return dg.Definitions(assets=assets, resources=resources), instance


def child_materialize(root: str, pause_s: str) -> None:
    """Body of a child process: ``pricing materialize`` (the CLI function) of the batch, stub encoder,
    ``pause_s`` seconds after each stored embedding chunk."""
    from pricing_assets import cli

    defs, instance = cli_defs(Path(root))
    small_chunks(setattr, pause_s=float(pause_s))
    res = cli.materialize(instance, defs, [BATCH])
    print("CHILD_FINISHED", res["failed"], flush=True)


def _spawn(root: Path, pause_s: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DAGSTER_HOME": str(root / "home")}
    code = f"from pricing_tests.test_crash_recovery import child_materialize; child_materialize({str(root)!r}, {str(pause_s)!r})"
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _claimed(instance: dg.DagsterInstance) -> list:
    return list(instance.event_log_storage.get_concurrency_info("gpu").claimed_slots)


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A ``pricing materialize`` SIGKILLed inside its embedding step (2 of 5 chunks stored), its run
    left STARTED holding the gpu slot: ``(root, defs, instance, killed run id, child pid)``."""
    from pricing_assets.lib.catalog.batches import store_batch
    from pricing_assets.partitions import CATALOG_BATCHES

    root = tmp_path_factory.mktemp("killed")
    df = pd.read_csv(UNLABELED_CSV, dtype=str, keep_default_na=False).drop_duplicates("catalog_content").head(N_ROWS)
    df.to_csv(root / "batch.csv", index=False)
    store_batch(str(root / "batch.csv"), str(root / "storage" / "batches"), BATCH)
    defs, instance = cli_defs(root)
    instance.add_dynamic_partitions(CATALOG_BATCHES, [BATCH])
    assert instance.event_log_storage.supports_global_concurrency_limits, "the local instance config must support pools"
    child = _spawn(root, 2.0)
    out = kill_after_shards(child, root, 2, limit_s=180)
    assert "CHILD_FINISHED" not in out
    started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert len(started) == 1
    assert [s.run_id for s in _claimed(instance)] == [started[0].run_id], "the killed run holds the gpu slot"
    return root, defs, instance, started[0].run_id, child.pid


@pytest.mark.slow
def test_status_names_the_stale_run_and_the_slot_it_holds(killed):
    from pricing_assets.lib.runtime.run_workers import PID_TAG
    from pricing_assets.status import collect_status, render_status

    _, defs, instance, killed_id, pid = killed
    assert instance.get_run_by_id(killed_id).tags[PID_TAG] == str(pid)
    st = collect_status(instance, defs)
    assert [r["run_id"] for r in st["stale_runs"]] == [killed_id]
    assert [(p["pool"], p["run_id"], p["holder"]) for p in st["pool_slots"]] == [("gpu", killed_id, "stale")]
    assert st["batches"][0]["state"] == "stale" and st["batches"][0]["failure"]["run_id"] == killed_id
    text = render_status(st)
    assert "STALE RUNS" in text and killed_id[:8] in text and "pricing recover" in text


@pytest.mark.slow
def test_killed_materialize_holding_the_gpu_slot_is_recovered_by_the_next_one(killed):
    root, _, instance, killed_id, pid = killed
    # the next `pricing materialize` (its own process, bounded: the old code blocked here for ever)
    rerun = _spawn(root, 0.0)
    try:
        out = rerun.communicate(timeout=240)[0]
    except subprocess.TimeoutExpired:
        rerun.kill()
        out = rerun.communicate()[0]
        pytest.fail(f"the re-run did not finish within 240 s (blocked on the gpu pool?):\n{out[-3000:]}")
    assert rerun.returncode == 0, out[-3000:]
    assert f"recovered: run {killed_id}" in out and "marked failed" in out
    assert "CHILD_FINISHED {}" in out

    dead = instance.get_run_by_id(killed_id)
    assert dead.status == dg.DagsterRunStatus.FAILURE
    failure = list(instance.all_logs(killed_id, of_type=dg.DagsterEventType.RUN_FAILURE))
    assert failure and "run worker gone" in failure[0].message and str(pid) in failure[0].message
    assert _claimed(instance) == [] and instance.event_log_storage.get_concurrency_info("gpu").pending_steps == []
    assert not instance.get_runs(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    )

    # the re-run reused the killed run's 2 chunks and computed the other 3
    mats = instance.fetch_materializations(dg.AssetKey(["embeddings", "text", MODEL]), limit=1).records
    meta = {k: v.value for k, v in mats[0].asset_materialization.metadata.items()}
    assert (meta["rows"], meta["cached"], meta["computed"]) == (N_ROWS, 2 * CHUNK, N_ROWS - 2 * CHUNK)


# --- which runs are stale ------------------------------------------------------------------------------


def _started_run(instance: dg.DagsterInstance, tags: dict) -> str:
    """A run in status STARTED with ``tags`` (as an in-process run is while its steps execute)."""

    @dg.asset
    def noop():
        return 1

    run = instance.create_run_for_job(dg.Definitions(assets=[noop]).resolve_implicit_global_asset_job_def(), tags=tags)
    instance.handle_run_event(
        run.run_id, dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name, message="started")
    )
    return run.run_id


def _dead_process() -> tuple[int, float]:
    """(pid, start time) of a process that has exited and been reaped."""
    import psutil

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    started = psutil.Process(p.pid).create_time()
    p.wait()
    return p.pid, started


def test_stale_runs_are_only_runs_whose_worker_is_gone_on_this_host(tmp_path):
    import psutil

    from pricing_assets.instance_state import recover_runs, stale_runs
    from pricing_assets.lib.runtime.run_workers import WorkerIdentity, current_worker, this_host, worker_tags

    (tmp_path / "dagster.yaml").write_text(INFRA_YAML)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    me = current_worker()
    dead_pid, dead_started = _dead_process()
    runs = {
        "alive": _started_run(instance, worker_tags(me)),
        "other_host": _started_run(instance, worker_tags(WorkerIdentity("some-other-host", dead_pid, dead_started))),
        "dead": _started_run(instance, worker_tags(WorkerIdentity(this_host(), dead_pid, dead_started))),
        "recycled_pid": _started_run(instance, worker_tags(WorkerIdentity(this_host(), me.pid, me.started_at - 3600))),
        "no_identity": _started_run(instance, {}),
    }
    assert psutil.pid_exists(me.pid)
    # the default run launcher records no worker tags: its run workers are found by their pid event
    assert {s.run_id for s in stale_runs(instance)} == {runs["dead"], runs["recycled_pid"]}

    result = recover_runs(instance)
    assert {s.run_id for s in result["failed"]} == {runs["dead"], runs["recycled_pid"]}
    status = {k: instance.get_run_by_id(v).status for k, v in runs.items()}
    assert status == {
        "alive": dg.DagsterRunStatus.STARTED,
        "other_host": dg.DagsterRunStatus.STARTED,
        "dead": dg.DagsterRunStatus.FAILURE,
        "recycled_pid": dg.DagsterRunStatus.FAILURE,
        "no_identity": dg.DagsterRunStatus.STARTED,
    }
    assert stale_runs(instance) == [] and recover_runs(instance) == {"failed": [], "freed": {}}


def test_worker_found_from_the_run_workers_pid_event(tmp_path):
    """A run launched by the default run launcher has no worker tags: its worker is the pid of the
    ``Started process for run (pid: N).`` engine event, and a pid started after that event is recycled."""
    from pricing_assets.instance_state import run_worker, stale_runs
    from pricing_assets.lib.runtime.run_workers import ALIVE, DEAD, worker_state

    (tmp_path / "dagster.yaml").write_text(INFRA_YAML)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    dead_pid, _ = _dead_process()
    ids = {}
    for name, pid in (("dead", dead_pid), ("alive", os.getpid())):
        ids[name] = _started_run(instance, {})
        run = instance.get_run_by_id(ids[name])
        instance.report_engine_event(f"Started process for run (pid: {pid}).", run)
    alive = run_worker(instance, instance.get_run_by_id(ids["alive"]), launched_here=True)
    assert alive.pid == os.getpid() and worker_state(alive) == ALIVE
    assert worker_state(run_worker(instance, instance.get_run_by_id(ids["dead"]), launched_here=True)) == DEAD
    assert [s.run_id for s in stale_runs(instance, launched_here=True)] == [ids["dead"]]
    # the CLI may run on another machine than the code server: it never judges a run by its pid event
    assert run_worker(instance, instance.get_run_by_id(ids["dead"])) is None and stale_runs(instance) == []


def _pool_instance(tmp_path) -> tuple[dg.DagsterInstance, object]:
    """(instance configured like infra/dagster.yaml, its event-log storage) with one ``gpu`` slot."""
    (tmp_path / "dagster.yaml").write_text(INFRA_YAML)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    instance.event_log_storage.set_concurrency_slots("gpu", 1)
    return instance, instance.event_log_storage


def test_pool_slot_leaked_by_a_finished_run_is_freed(tmp_path):
    from pricing_assets.instance_state import held_pool_slots, recover_runs

    instance, storage = _pool_instance(tmp_path)
    run_id = _started_run(instance, {})
    assert storage.claim_concurrency_slot("gpu", run_id, "embed").is_claimed
    instance.report_run_failed(instance.get_run_by_id(run_id), "failed elsewhere, slot never released")
    assert [(h["run_id"], h["run_status"]) for h in held_pool_slots(instance)] == [(run_id, "FAILURE")]
    assert recover_runs(instance) == {"failed": [], "freed": {run_id: 1}}
    assert held_pool_slots(instance) == []


def test_a_step_waiting_for_a_pool_slot_says_which_run_holds_it(tmp_path, capsys):
    from pricing_assets.cli import PoolWaitNotice
    from pricing_assets.instance_state import pool_waits
    from pricing_assets.lib.runtime.run_workers import worker_tags

    instance, storage = _pool_instance(tmp_path)
    holder = _started_run(instance, {})
    assert storage.claim_concurrency_slot("gpu", holder, "ocr_text").is_claimed
    tags = {"pricing/source": "cli", **worker_tags()}
    mine = _started_run(instance, tags)
    assert not storage.claim_concurrency_slot(
        "gpu", mine, "embeddings__text__minilm_l6"
    ).is_claimed  # queued behind the holder

    waits = pool_waits(instance, {mine})
    assert [(w["pool"], w["step"], [h["run_id"] for h in w["held_by"]]) for w in waits] == [
        ("gpu", "embeddings__text__minilm_l6", [holder])
    ]
    with PoolWaitNotice(instance, tags, poll_s=0.1, first_after_s=0.0):
        time.sleep(1.0)
    out = capsys.readouterr().out
    assert out.count("waiting since") == 1, out  # said once, not at every poll
    assert f"held by run {holder} (step ocr_text, STARTED" in out and "pricing recover" in out


def test_failure_cause_of_a_run_failed_without_a_step_failure(tmp_path):
    from pricing_assets.instance_state import run_failure_cause

    (tmp_path / "dagster.yaml").write_text(INFRA_YAML)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    run_id = _started_run(instance, {})
    instance.report_run_failed(instance.get_run_by_id(run_id), "run worker gone: pid 1 on host h no longer runs")
    assert run_failure_cause(instance, run_id) == "run: run worker gone: pid 1 on host h no longer runs"
