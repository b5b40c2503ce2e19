"""Soak test of unattended operation (``make soak``): the real ``dagster-daemon`` with every sensor on.

A fresh ``DAGSTER_HOME`` (the bundled ``infra/dagster.yaml``) and ``PRICING_AUTOMATION=1``: the inbox
sensor, the automation sensor and the nightly schedule run by default. The daemon is started on this
machine (``dagster-daemon run -w workspace.yaml``, location ``pricing-assets``, runs launched as local processes) and this script
drops catalog files into the inbox over several minutes, as a data team's deliveries would arrive:

1. ``broken.csv`` — no ``catalog_content`` column: a defect of the file, named by the sensor, never run;
2. ``drop_labeled.csv`` — real labeled rows plus 3 bad rows (negative price, empty text, repeated id);
3. ``drop_unlabeled_1.csv`` — real unlabeled rows;
4. ``drop_unlabeled_1_again.csv`` — the same rows delivered twice under another name;
5. ``drop_unlabeled_2.csv`` — a later unlabeled batch.

After each good drop it waits for that batch's run; after a labeled batch for the retrain to promote
a new ``serving_model``; then for the batch's ``batch_predictions`` and a ``price_predictions`` after
them (all launched by ``pricing_automation_sensor``). With ``--s3`` the inbox is a bucket on
a local moto S3 server reached through a TCP relay on 127.0.0.1, and the relay is shut for
``--outage-s`` seconds after the first good drop (the endpoint refuses connections, as a dead
endpoint does); the file must still go through once it is back.

Faults (``make soak-faults``):

* ``--kill-worker``: while the labeled batch's text-embedding step holds the ``gpu`` pool's slot, the
  run worker is SIGKILLed together with the daemon and its code server (one process group: an
  OOM-killed container, a lost node), and the daemon is started again, as its supervisor would. No
  process is left to report the run: ``run_worker_watchdog`` must mark it failed and free the slot,
  and the crash-only run retries re-execute it from the failed step. (A run worker killed alone is
  reported failed by the code server that started it; the same retries follow.)
* ``--postgres``: the instance is ``infra/dagster-postgres.yaml`` on a PostgreSQL server started here
  (127.0.0.1; ``pricing_tests/postgres_server.py``).
* ``--prod`` (``make soak-prod``): the production topology on this machine: ``--postgres`` and ``--s3``,
  ``dagster-daemon`` and ``dagster-webserver`` as separate processes on the root ``workspace.yaml``
  (location ``pricing-assets``); at the end the webserver's GraphQL API must list every asset, check
  and run, and headless Chromium must render the asset catalog (``scripts/ui_check.py``), with
  screenshots of the asset graph, a run and a batch's checks under ``artifacts/``. ``--code-server``:
  the code location runs as its own gRPC server (``dagster code-server start``), as compose and Helm
  run it, and the daemon and webserver load it from a ``grpc_server`` workspace.
* ``--db-outage-s S`` (implies ``--postgres``): the labeled and the first unlabeled file are dropped
  together and the database is stopped for ``S`` seconds once their runs are requested. Runs failed by
  the outage must be retried (Dagster's run retries, then ``transient_failure_retry`` with backoff).
  If the daemon dies with the database, it is restarted, as its supervisor (systemd, Kubernetes) would.

Asserts: every good unlabeled row priced exactly once in ``price_predictions``; every bad row
quarantined with a reason; the broken file named with its reason; one promoted model per labeled
batch (an unlabeled batch is scored, never retrained on); no failed run (with a fault: every failed
run was retried, and was failed by the fault); no run left queued or started (hung) and no pool slot
held once the last prices are published and the automation has had up to 10 minutes to settle.
Prints the counts and timings and writes them as JSON (``--json``). Exit 0 when every assertion
holds, 1 otherwise.

    python scripts/soak.py [--s3] [--outage-s 60] [--kill-worker] [--postgres] [--db-outage-s 60]
                           [--rows-labeled 80] [--timeout-s 3600] [--short] [--json PATH]

Binds nothing but 127.0.0.1.
"""

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))  # ui_check

from pricing_tests.helpers import LABELED_CSV, UNLABELED_CSV, image_basenames  # noqa: E402

BAD_ROWS = 3
POLL_S = 3.0
#: After the last drop's prices are published: how long runs may still be in flight before they
#: count as hung, and how long the instance must stay without an active run to count as settled
#: (two ticks of the automation sensor, 30 s each).
SETTLE_S = 600.0
QUIET_S = 75.0


def _active_runs(instance) -> list:
    """Runs queued, starting or started (not finished) on ``instance``."""
    import dagster as dg

    return instance.get_runs(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
        )
    )


class Relay:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target that can be shut (connections refused) and
    reopened on the same port: an S3 endpoint outage without losing the server's state."""

    def __init__(self, target_port: int):
        self.target = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._srv = None
        self._stop = threading.Event()

    def open(self) -> None:
        self._stop.clear()
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        srv.settimeout(0.5)
        self._srv = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def shut(self) -> None:
        self._stop.set()
        if self._srv is not None:
            self._srv.close()
            self._srv = None

    def _accept(self, srv: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def build_drops(rows_labeled: int, rows_unlabeled: int) -> tuple[dict[str, pd.DataFrame], set[str], set[str]]:
    """The files to drop (name -> frame, in order), the good unlabeled ids, and the bad rows' ids."""
    lab = pd.read_csv(LABELED_CSV, dtype={"sample_id": str})
    has = lab["image_link"].str.rsplit("/", n=1).str[-1].isin(image_basenames())
    lab = pd.concat([lab[has].head(4), lab[~has].head(rows_labeled - 4)], ignore_index=True)
    bad = lab.head(BAD_ROWS).copy()
    bad["sample_id"] = ["bad_price", "bad_text", lab.loc[5, "sample_id"]]  # the third repeats an id
    bad.loc[bad.index[0], "price"] = -3.0
    bad.loc[bad.index[1], "catalog_content"] = ""
    unl = pd.read_csv(UNLABELED_CSV, dtype={"sample_id": str})
    u1, u2 = unl.iloc[:rows_unlabeled], unl.iloc[rows_unlabeled : 2 * rows_unlabeled]
    drops = {
        "broken.csv": pd.DataFrame({"sample_id": ["1", "2", "3"], "text": ["a", "b", "c"]}),
        "drop_labeled.csv": pd.concat([lab, bad], ignore_index=True),
        "drop_unlabeled_1.csv": u1,
        "drop_unlabeled_1_again.csv": u1,
        "drop_unlabeled_2.csv": u2,
    }
    return drops, set(u1["sample_id"]) | set(u2["sample_id"]), set(bad["sample_id"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--s3", action="store_true", help="inbox on a local moto S3 server, with an endpoint outage")
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--rows-labeled", type=int, default=80)
    ap.add_argument("--rows-unlabeled", type=int, default=15)
    ap.add_argument("--timeout-s", type=float, default=3600.0, help="give up (fail) after this long")
    ap.add_argument("--json", help="write the counts and timings here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary DAGSTER_HOME")
    ap.add_argument(
        "--short", action="store_true", help="only the broken file, the labeled and the first unlabeled batch"
    )
    ap.add_argument(
        "--kill-worker", action="store_true", help="SIGKILL the labeled batch's run worker in its text-embedding step"
    )
    ap.add_argument(
        "--postgres", action="store_true", help="instance on a local PostgreSQL (infra/dagster-postgres.yaml)"
    )
    ap.add_argument(
        "--db-outage-s",
        type=float,
        default=0.0,
        help="stop the database this long after the labeled + first unlabeled drops",
    )
    ap.add_argument(
        "--prod",
        action="store_true",
        help="PostgreSQL, S3 inbox, daemon + webserver on workspace.yaml, GraphQL and browser checks",
    )
    ap.add_argument("--code-server", action="store_true", help="with --prod: the code location as its own gRPC server")
    args = ap.parse_args()
    args.postgres = args.postgres or args.db_outage_s > 0 or args.prod
    args.s3 = args.s3 or args.prod
    faults = args.kill_worker or args.db_outage_s > 0

    tmp = Path(tempfile.mkdtemp(prefix="pricing_soak_"))
    home = tmp / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PRICING_AUTOMATION": "1",
        "PRICING_IMAGES_OFFLINE": "1",
        "PRICING_STORAGE": str(tmp / "storage"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    pg = None
    if args.postgres:
        from pricing_tests.postgres_server import PostgresServer

        pg = PostgresServer()
        atexit.register(pg.destroy)  # after the report has read the instance
        env.update(pg.env)
        shutil.copy(REPO / "infra" / "dagster-postgres.yaml", home / "dagster.yaml")
    else:
        shutil.copy(REPO / "infra" / "dagster.yaml", home / "dagster.yaml")
    moto = relay = None
    if args.s3:
        import boto3
        from moto.server import ThreadedMotoServer

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        moto.start()
        moto_port = moto.get_host_and_port()[1]
        relay = Relay(moto_port)
        relay.open()
        endpoint = f"http://127.0.0.1:{relay.port}"
        creds = {"AWS_ACCESS_KEY_ID": "soak", "AWS_SECRET_ACCESS_KEY": "soak", "AWS_DEFAULT_REGION": "us-east-1"}
        env.update(creds, PRICING_INBOX="s3://soak-inbox/drops", PRICING_S3_ENDPOINT=endpoint)
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{moto_port}",
            aws_access_key_id="soak",
            aws_secret_access_key="soak",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="soak-inbox")
    else:
        (tmp / "inbox").mkdir()
        env["PRICING_INBOX"] = str(tmp / "inbox")
    os.environ.update(env)  # this process reads the same instance and storage as the daemon

    drops, good_unlabeled, bad_ids = build_drops(args.rows_labeled, args.rows_unlabeled)
    n_bad = len(bad_ids)
    if args.short:
        drops = {k: v for k, v in drops.items() if k in ("broken.csv", "drop_labeled.csv", "drop_unlabeled_1.csv")}
        good_unlabeled = set(drops["drop_unlabeled_1.csv"]["sample_id"])

    def drop(name: str, df: pd.DataFrame) -> None:
        data = df.to_csv(index=False).encode()
        if args.s3:
            s3.put_object(Bucket="soak-inbox", Key=f"drops/{name}", Body=data)
        else:
            part = tmp / "inbox" / f".{name}.part"
            part.write_bytes(data)
            part.rename(tmp / "inbox" / name)  # atomic: the sensor never sees half a file

    import dagster as dg
    from dagster._core.scheduler.instigation import InstigatorType

    instance = dg.DagsterInstance.get()  # create the instance's storage before the daemon races to do it
    from pricing_assets.settings import LOCATION_NAME

    bin_dir = Path(sys.executable).parent
    servers: list[subprocess.Popen] = []  # webserver, code server: stopped at the end
    workspace = REPO / "workspace.yaml"
    if args.code_server:
        from ui_check import free_port

        grpc_port = free_port()
        servers.append(
            subprocess.Popen(
                [
                    str(bin_dir / "dagster"),
                    "code-server",
                    "start",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(grpc_port),
                    "-m",
                    "pricing_assets.definitions",
                    "--location-name",
                    LOCATION_NAME,
                ],
                cwd=REPO,
                env=env,
                stdout=open(tmp / "code-server.log", "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        workspace = tmp / "workspace.yaml"
        workspace.write_text(
            f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n      location_name: {LOCATION_NAME}\n"
        )
        deadline = time.monotonic() + 180
        while (
            subprocess.run(
                [str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", str(grpc_port)], capture_output=True
            ).returncode
            != 0
        ):
            if time.monotonic() > deadline or servers[-1].poll() is not None:
                raise RuntimeError(f"the code server did not come up; see {tmp / 'code-server.log'}")
            time.sleep(2)

    def start_daemon() -> subprocess.Popen:
        return subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
            cwd=REPO,
            env=env,
            stdout=open(tmp / "daemon.log", "a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    daemon = start_daemon()
    web_base = None
    if args.prod:
        from ui_check import free_port, wait_http

        web_port = free_port()
        web_base = f"http://127.0.0.1:{web_port}"
        servers.append(
            subprocess.Popen(
                [str(bin_dir / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(web_port)],
                cwd=REPO,
                env=env,
                stdout=open(tmp / "webserver.log", "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        wait_http(f"{web_base}/server_info", 300, servers[-1])
    t_start = time.monotonic()
    mode = "+".join(
        [
            m
            for m, on in (
                ("prod", args.prod),
                ("code-server", args.code_server),
                ("s3", args.s3),
                ("postgres", args.postgres),
                ("kill-worker", args.kill_worker),
                (f"db-outage-{args.db_outage_s:.0f}s", args.db_outage_s > 0),
            )
            if on
        ]
        or ["local"]
    )
    report = {
        "mode": mode,
        "files_dropped": 0,
        "timeline_s": {},
        "retrained_after": [],
        "model_version_of": {},
        "daemon_restarts": 0,
    }
    from pricing_assets.automation import PER_ROW_GROUPS
    from pricing_assets.definitions import defs as _loaded

    per_row_keys = sorted(
        dg.AssetSelection.groups(*PER_ROW_GROUPS).resolve(_loaded.get_repository_def().asset_graph), key=str
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below (daemon, servers) when stopped
    failures = []

    def elapsed() -> float:
        return round(time.monotonic() - t_start, 1)

    def wait_for(what: str, pred, limit_s: float = 900.0, poll_s: float = POLL_S):
        nonlocal daemon
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s and time.monotonic() - t_start < args.timeout_s:
            if daemon.poll() is not None:
                if not faults:
                    raise RuntimeError(
                        f"dagster-daemon exited ({daemon.returncode}) while waiting for {what}; see {tmp / 'daemon.log'}"
                    )
                print(
                    f"[{elapsed():7.1f} s] dagster-daemon exited ({daemon.returncode}); restarted (as its supervisor would)",
                    flush=True,
                )
                report["daemon_restarts"] += 1
                daemon = start_daemon()
            got = pred()
            if got:
                report["timeline_s"][what] = elapsed()
                print(f"[{elapsed():7.1f} s] {what}", flush=True)
                return got
            time.sleep(poll_s)
        raise TimeoutError(f"{what}: not seen within {limit_s:.0f} s")

    def outage(what: str, down, up, seconds: float, key: str) -> None:
        """Take ``what`` down for ``seconds`` (nothing here touches it meanwhile), then bring it back."""
        down()
        print(f"[{elapsed():7.1f} s] {what} down for {seconds:.0f} s", flush=True)
        time.sleep(seconds)
        up()
        print(f"[{elapsed():7.1f} s] {what} back", flush=True)
        report[key] = seconds

    def batch_done(batch: str):
        """When every per-row asset of ``batch`` is stored: the latest of those materializations, else
        None. A failed batch run (a fault) that is retried later still ends here."""
        recs = []
        for key in per_row_keys:
            got = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[batch]), limit=1
            ).records
            if not got:
                return None
            recs.append(got[0])
        return max(recs, key=lambda r: r.timestamp)

    def batch_failed_for_good(batch: str):
        """Without a fault: the batch's first run failed (nothing retries a run failed by its data)."""
        runs = instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/partition": batch}, statuses=[dg.DagsterRunStatus.FAILURE])
        )
        return runs[-1] if runs and not faults else None

    def kill_worker_in_gpu_step(batch: str):
        """SIGKILL the run worker of ``batch`` once its text-embedding step started (it holds the gpu slot)."""
        from pricing_assets.instance_state import run_worker

        for run in instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/partition": batch}, statuses=[dg.DagsterRunStatus.STARTED])
        ):
            steps = [
                e.dagster_event.step_key for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            ]
            worker = run_worker(instance, run, launched_here=True)  # the daemon's code server runs on this machine
            if worker is not None and any(k.startswith("embeddings__text") for k in steps):
                os.kill(worker.pid, signal.SIGKILL)
                os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and its code server go with it
                daemon.wait()
                report["killed"] = {"run_id": run.run_id, "pid": worker.pid, "step": steps[-1]}
                return run
        return None

    def materialized_after(key: str, ts: float, partition: str | None = None):
        """The first materialization of ``key`` (``partition``) stored after ``ts`` (unix s), or None."""
        flt = dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None, after_timestamp=ts
        )
        recs = instance.fetch_materializations(flt, limit=100, ascending=True).records
        return recs[0] if recs else None

    def sensor_cursor() -> dict:
        for st in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if st.name == "catalog_inbox_sensor" and st.instigator_data and st.instigator_data.cursor:
                return json.loads(st.instigator_data.cursor)
        return {}

    together = {"drop_unlabeled_1.csv"} if args.db_outage_s > 0 else set()  # dropped right after the labeled file
    try:
        for name, df in drops.items():
            batch = name.rsplit(".", 1)[0]
            if name not in together:
                drop(name, df)
                report["files_dropped"] += 1
                print(f"[{elapsed():7.1f} s] dropped {name} ({len(df)} rows)", flush=True)
            if name == "drop_labeled.csv" and together:
                for other in together:
                    drop(other, drops[other])
                    report["files_dropped"] += 1
                    print(f"[{elapsed():7.1f} s] dropped {other} ({len(drops[other])} rows)", flush=True)
                batches = [batch, *(o.rsplit(".", 1)[0] for o in together)]
                wait_for(
                    "runs requested for the dropped batches",
                    lambda bs=tuple(batches): all(
                        instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": b}), limit=1) for b in bs
                    ),
                    limit_s=300,
                )
                outage("database", pg.stop, pg.start, args.db_outage_s, "db_outage_s")
            if name == "drop_labeled.csv" and args.kill_worker:
                wait_for(
                    f"batch {batch}: run worker, daemon and code server SIGKILLed in the text-embedding step",
                    lambda b=batch: kill_worker_in_gpu_step(b),
                    limit_s=600,
                    poll_s=0.5,
                )
                daemon = start_daemon()
                report["daemon_restarts"] += 1
                print(f"[{elapsed():7.1f} s] dagster-daemon started again", flush=True)
            if name == "broken.csv":
                rec = wait_for(
                    "broken.csv named by the sensor",
                    lambda: (
                        sensor_cursor().get("defects", {})
                        and next((v for k, v in sensor_cursor()["defects"].items() if k.endswith("broken.csv")), None)
                    ),
                    limit_s=300,
                )
                report["broken_file_reason"] = rec["reason"]
                continue
            if args.s3 and name == "drop_labeled.csv" and relay is not None:
                outage("S3 endpoint", relay.shut, relay.open, args.outage_s, "outage_s")
            done = wait_for(
                f"batch {batch} per-row assets stored", lambda b=batch: batch_done(b) or batch_failed_for_good(b)
            )
            if isinstance(done, dg.DagsterRun):
                failures.append(f"batch {batch}: run {done.run_id} {done.status.value}")
                continue
            end = done.timestamp
            labeled = bool(df["price"].notna().any()) if "price" in df else False
            if labeled:  # new labels: a retrain, a promoted serving_model, then every batch re-scored
                m = wait_for(
                    f"serving_model promoted after {batch}", lambda t=end: materialized_after("serving_model", t)
                )
                report["retrained_after"].append(batch)
                end = m.timestamp
            scored = wait_for(
                f"batch {batch} scored", lambda t=end, b=batch: materialized_after("batch_predictions", t, b)
            )
            report["model_version_of"][batch] = scored.asset_materialization.metadata["model_version"].value
            wait_for(
                f"price_predictions after {batch}",
                lambda t=scored.timestamp: materialized_after("price_predictions", t),
            )
        # Settle: the automation may still launch follow-up runs (none expected). Settled = no active
        # run for QUIET_S (two sensor intervals); not settled within SETTLE_S = a run is hung.
        quiet_since = None

        def settled() -> bool:
            nonlocal quiet_since
            if _active_runs(instance):
                quiet_since = None
                return False
            quiet_since = quiet_since or time.monotonic()
            return time.monotonic() - quiet_since >= QUIET_S

        wait_for("no run queued or started (settled)", settled, limit_s=SETTLE_S)
        if web_base is not None:  # the webserver, as an operator sees it: GraphQL and a browser
            from ui_check import check_webserver, find_chromium

            browser = find_chromium()
            if browser is None:
                raise RuntimeError("--prod checks the UI in headless Chromium: apt-get install -y chromium")
            done = [
                r
                for r in instance.get_runs(
                    filters=dg.RunsFilter(job_name="catalog_batch_job", statuses=[dg.DagsterRunStatus.SUCCESS])
                )
            ]
            shots = {
                REPO / "artifacts" / f"soak-{'code-server' if args.code_server else 'prod'}-{name}.png": path
                for name, path in (
                    ("graph", "/asset-groups"),
                    ("run", "/runs/{run_id}"),
                    ("checks", "/assets/raw_catalog?view=checks"),
                )
            }
            ui_failures, shown = check_webserver(web_base, browser, shots, tmp, run_id=done[0].run_id if done else None)
            failures.extend(ui_failures)
            report["webserver"] = {**shown, "runs_in_instance": len(instance.get_runs())}
            if shown["location"] != LOCATION_NAME or shown["runs"] != len(instance.get_runs()):
                failures.append(
                    f"webserver shows location {shown['location']!r} and {shown['runs']} runs; the instance has {len(instance.get_runs())}"
                )
    except (TimeoutError, RuntimeError) as e:
        failures.append(str(e))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        from pricing_assets.instance_state import failure_texts, held_pool_slots

        runs = instance.get_runs()
        hung = [r.run_id for r in _active_runs(instance)]
        slots = held_pool_slots(instance)
        causes = {
            r.run_id: "\n".join(failure_texts(instance, r.run_id))
            for r in runs
            if r.status == dg.DagsterRunStatus.FAILURE
        }
        for proc in servers:  # webserver, code server: SIGTERM, then SIGKILL after 30 s (a code server may ignore it)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        if relay is not None:
            relay.shut()
        if moto is not None:
            moto.stop()

    batch_runs = [r for r in runs if r.job_name == "catalog_batch_job"]
    other_runs = [r for r in runs if r.job_name != "catalog_batch_job"]
    promotions = instance.fetch_materializations(dg.AssetKey("serving_model"), limit=100).records
    report.update(
        batches_run=len(batch_runs),
        batch_runs_failed=sum(r.status == dg.DagsterRunStatus.FAILURE for r in batch_runs),
        automation_runs=len(other_runs),
        automation_runs_failed=sum(r.status == dg.DagsterRunStatus.FAILURE for r in other_runs),
        models_promoted=len(promotions),
        runs_hung=len(hung),
        slots_held_at_end=len(slots),
        wall_s=elapsed(),
    )
    from pricing_assets.lib.runtime.run_recovery import is_transient

    failed_runs = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
    retried = {r.tags.get("dagster/parent_run_id") or r.tags.get("pricing/retry_of") for r in runs} - {None}
    report["failed_runs"] = {
        r.run_id[:8]: f"{r.job_name} {r.tags.get('dagster/partition', '')}".strip() for r in failed_runs
    }
    report.update(
        runs_failed_by_watchdog=sum("run worker gone" in causes.get(r.run_id, "") for r in failed_runs),
        runs_failed_by_outage=sum(
            is_transient(r.tags.get("dagster/failure_reason"), [causes.get(r.run_id, "")])
            and "run worker gone" not in causes.get(r.run_id, "")
            for r in failed_runs
        ),
        runs_retried=sum(r.run_id in retried for r in failed_runs),
        retry_runs=sum(bool(r.tags.get("dagster/parent_run_id") or r.tags.get("pricing/retry_of")) for r in runs),
    )
    if failed_runs:
        from pricing_assets.instance_state import run_failure_cause

        report["failed_run_causes"] = {r.run_id[:8]: run_failure_cause(instance, r.run_id) for r in failed_runs}
        unrecovered = [r.run_id[:8] for r in failed_runs if r.run_id not in retried]
        if not faults:
            failures.append(f"failed runs: {report['failed_run_causes']}")
        elif unrecovered:
            failures.append(f"failed runs never retried: {unrecovered} ({report['failed_run_causes']})")
    if args.kill_worker and not report["runs_failed_by_watchdog"]:
        failures.append("the killed run was not marked failed by run_worker_watchdog")
    if slots:
        failures.append(f"pool slots still held at the end: {slots}")
    if len(promotions) != len(report["retrained_after"]):
        failures.append(
            f"{len(promotions)} models promoted, expected one per labeled batch ({report['retrained_after']}): an unlabeled batch retrained"
        )
    if hung:
        failures.append(f"runs still queued/started at the end: {hung}")
    ev = instance.get_latest_materialization_event(dg.AssetKey("price_predictions"))
    if ev is None:
        failures.append("no price_predictions materialised")
    else:
        from pricing_assets.definitions import defs

        preds = defs.load_asset_value("price_predictions", instance=instance)
        report["rows_priced"] = len(preds)
        dup = int(preds["sample_id"].duplicated().sum())
        missing = good_unlabeled - set(preds["sample_id"])
        extra = set(preds["sample_id"]) - good_unlabeled
        report.update(rows_priced_twice=dup, good_rows_not_priced=len(missing), unexpected_rows_priced=len(extra))
        if dup or missing or extra:
            failures.append(
                f"pricing not exactly once: {dup} duplicated, {len(missing)} missing, {len(extra)} unexpected"
            )
    from pricing_assets.definitions import defs as _defs

    quarantine = _defs.load_asset_value("catalog_quarantine", instance=instance, partition_key="drop_labeled")
    report["rows_quarantined"] = len(quarantine)
    report["quarantine_reasons"] = sorted(quarantine["reason"].astype(str))
    named = set(quarantine.loc[quarantine["reason"].astype(str).str.len() > 0, "sample_id"].astype(str))
    if len(quarantine) != n_bad or not bad_ids <= named:
        failures.append(
            f"quarantined {len(quarantine)} rows of drop_labeled with reasons for {sorted(named)}, expected the {n_bad} bad ones {sorted(bad_ids)}"
        )
    reason = report.get("broken_file_reason", "")
    report["files_named"] = int(bool(reason))
    if "catalog_content" not in reason:
        failures.append(f"broken.csv not named with its missing column: {reason!r}")
    report["failures"] = failures
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    print("SOAK " + ("PASSED" if not failures else "FAILED: " + "; ".join(failures)))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
