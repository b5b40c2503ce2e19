"""Soak test of unattended operation (``make soak``): the real ``dagster-daemon`` with every sensor on.

A fresh ``DAGSTER_HOME`` (the bundled ``infra/dagster.yaml``) and ``PRICING_AUTOMATION=1``: the inbox
sensor, the automation sensor and the nightly schedule run by default. The daemon is started on this
machine (``dagster-daemon run -m pricing_assets.definitions``, runs launched as local processes) and this script
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

Asserts: every good unlabeled row priced exactly once in ``price_predictions``; every bad row
quarantined with a reason; the broken file named with its reason; one promoted model per labeled
batch (an unlabeled batch is scored, never retrained on); no failed run; no run left queued or
started (hung) once the last prices are published and the automation has had up to 10 minutes to
settle. Prints the counts and timings and
writes them as JSON (``--json``). Exit 0 when every assertion holds, 1 otherwise.

    python scripts/soak.py [--s3] [--outage-s 60] [--rows-labeled 80] [--timeout-s 3600] [--short] [--json PATH]

Binds nothing but 127.0.0.1.
"""

import argparse
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

    return instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]))


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
    ap.add_argument("--short", action="store_true", help="only the broken file, the labeled and the first unlabeled batch")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pricing_soak_"))
    home = tmp / "home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "PRICING_AUTOMATION": "1", "PRICING_IMAGES_OFFLINE": "1",
           "PRICING_STORAGE": str(tmp / "storage"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
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
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", aws_access_key_id="soak",
                          aws_secret_access_key="soak", region_name="us-east-1")
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
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-m", "pricing_assets.definitions"],
        cwd=REPO, env=env, stdout=open(tmp / "daemon.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    t_start = time.monotonic()
    report = {"mode": "s3" if args.s3 else "local", "files_dropped": 0, "timeline_s": {}, "retrained_after": [], "model_version_of": {}}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below (daemon, servers) when stopped
    failures = []

    def elapsed() -> float:
        return round(time.monotonic() - t_start, 1)

    def wait_for(what: str, pred, limit_s: float = 900.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s and time.monotonic() - t_start < args.timeout_s:
            if daemon.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited ({daemon.returncode}) while waiting for {what}; see {tmp / 'daemon.log'}")
            got = pred()
            if got:
                report["timeline_s"][what] = elapsed()
                print(f"[{elapsed():7.1f} s] {what}", flush=True)
                return got
            time.sleep(POLL_S)
        raise TimeoutError(f"{what}: not seen within {limit_s:.0f} s")

    def batch_run(batch: str):
        """The finished per-row run of ``batch`` (launched by the inbox sensor as ``catalog_batch_job``)."""
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="catalog_batch_job", tags={"dagster/partition": batch}))
        done = [r for r in runs if r.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)]
        return done[0] if done else None

    def materialized_after(key: str, ts: float, partition: str | None = None):
        """The first materialization of ``key`` (``partition``) stored after ``ts`` (unix s), or None."""
        flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None, after_timestamp=ts)
        recs = instance.fetch_materializations(flt, limit=100, ascending=True).records
        return recs[0] if recs else None

    def sensor_cursor() -> dict:
        for st in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if st.name == "catalog_inbox_sensor" and st.instigator_data and st.instigator_data.cursor:
                return json.loads(st.instigator_data.cursor)
        return {}

    try:
        for name, df in drops.items():
            batch = name.rsplit(".", 1)[0]
            drop(name, df)
            report["files_dropped"] += 1
            print(f"[{elapsed():7.1f} s] dropped {name} ({len(df)} rows)", flush=True)
            if name == "broken.csv":
                rec = wait_for("broken.csv named by the sensor", lambda: sensor_cursor().get("defects", {}) and next(
                    (v for k, v in sensor_cursor()["defects"].items() if k.endswith("broken.csv")), None), limit_s=300)
                report["broken_file_reason"] = rec["reason"]
                continue
            if args.s3 and name == "drop_labeled.csv" and relay is not None:
                relay.shut()
                print(f"[{elapsed():7.1f} s] S3 endpoint down for {args.outage_s:.0f} s", flush=True)
                time.sleep(args.outage_s)
                relay.open()
                print(f"[{elapsed():7.1f} s] S3 endpoint back", flush=True)
                report["outage_s"] = args.outage_s
            run = wait_for(f"batch {batch} run finished", lambda b=batch: batch_run(b))
            if run.status != dg.DagsterRunStatus.SUCCESS:
                failures.append(f"batch {batch}: run {run.run_id} {run.status.value}")
                continue
            end = instance.get_run_record_by_id(run.run_id).end_time
            labeled = bool(df["price"].notna().any()) if "price" in df else False
            if labeled:  # new labels: a retrain, a promoted serving_model, then every batch re-scored
                m = wait_for(f"serving_model promoted after {batch}", lambda t=end: materialized_after("serving_model", t))
                report["retrained_after"].append(batch)
                end = m.timestamp
            scored = wait_for(f"batch {batch} scored", lambda t=end, b=batch: materialized_after("batch_predictions", t, b))
            report["model_version_of"][batch] = scored.asset_materialization.metadata["model_version"].value
            wait_for(f"price_predictions after {batch}", lambda t=scored.timestamp: materialized_after("price_predictions", t))
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
    except (TimeoutError, RuntimeError) as e:
        failures.append(str(e))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        runs = instance.get_runs()
        hung = [r.run_id for r in _active_runs(instance)]
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
        wall_s=elapsed(),
    )
    failed_runs = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
    report["failed_runs"] = {r.run_id[:8]: f"{r.job_name} {r.tags.get('dagster/partition', '')}".strip() for r in failed_runs}
    if report["automation_runs_failed"] or report["batch_runs_failed"]:
        from pricing_assets.instance_state import run_failure_cause

        report["failed_run_causes"] = {r.run_id[:8]: run_failure_cause(instance, r.run_id) for r in failed_runs}
        failures.append(f"failed runs: {report['failed_run_causes']}")
    if len(promotions) != len(report["retrained_after"]):
        failures.append(f"{len(promotions)} models promoted, expected one per labeled batch ({report['retrained_after']}): an unlabeled batch retrained")
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
            failures.append(f"pricing not exactly once: {dup} duplicated, {len(missing)} missing, {len(extra)} unexpected")
    from pricing_assets.definitions import defs as _defs

    quarantine = _defs.load_asset_value("catalog_quarantine", instance=instance, partition_key="drop_labeled")
    report["rows_quarantined"] = len(quarantine)
    report["quarantine_reasons"] = sorted(quarantine["reason"].astype(str))
    named = set(quarantine.loc[quarantine["reason"].astype(str).str.len() > 0, "sample_id"].astype(str))
    if len(quarantine) != n_bad or not bad_ids <= named:
        failures.append(f"quarantined {len(quarantine)} rows of drop_labeled with reasons for {sorted(named)}, expected the {n_bad} bad ones {sorted(bad_ids)}")
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
