"""``catalog_inbox_sensor`` on a local inbox: half-written files skipped, cursor, idempotent run keys,
dynamic partition registration, a file that fails its contract fails its run once; a file's own
defects (name, clash, encoding, format, missing columns) refused once per version, transient failures
(storage PermissionError / I/O errors, an S3 endpoint down and back) retried with backoff until the
file goes through; plus the automation / schedule wiring of the code location."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pricing_assets.automation import (
    FOLLOW_SCORING,
    FOLLOW_SCORING_AUTOMATION,
    GLOBAL_AUTOMATION,
    GLOBAL_GROUPS,
    PUBLISHED_ASSETS,
    PUBLISHED_AUTOMATION,
    SCORING_AUTOMATION,
    SCORING_GROUPS,
    TRAINED_AUTOMATION,
    with_global_automation,
)
from pricing_assets.defs.sensors import build_inbox_sensor
from pricing_assets.lib.catalog.batches import find_batch_file
from pricing_assets.lib.catalog.inbox import (
    CLASSIFIED_ERRORS,
    MAX_MESSAGE_CHARS,
    S3_FAST_FAIL_CONFIG,
    TRANSIENT_ERRORS,
    InboxDefect,
    InboxFile,
    backoff_delay_s,
    check_catalog_header,
    check_name,
    check_required_columns,
    classify_error,
    csv_header_columns,
    fast_fail_options,
    is_unreachable,
    list_inbox,
    ready_files,
    record_defect,
    record_failure,
    record_listing_failure,
    retry_wait_s,
    skip_reason,
)
from pricing_assets.partitions import CATALOG_BATCHES
from pricing_assets.resources import StorageResource
from pricing_tests.s3_server import restartable_s3  # noqa: F401  (fixture)

LABELED_CSV = Path(__file__).resolve().parent.parent / "data" / "sample" / "amazon_pricing_sample.csv"
OLD = time.time() - 3600


def write_csv(path, n=5, skip=0, old=True):
    df = pd.read_csv(LABELED_CSV, dtype={"sample_id": str}).iloc[skip : skip + n]
    df.to_csv(path, index=False)
    if old:
        os.utime(path, (OLD, OLD))
    return df


def tick(sensor, instance, storage_dir, cursor=None):
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": StorageResource(base_path=str(storage_dir))}
    )
    res = sensor(ctx)
    assert isinstance(res, dg.SensorResult)
    return res


def apply_partitions(instance, res):
    for req in res.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))


@pytest.fixture()
def env(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return {"inbox": inbox, "storage": tmp_path / "storage", "instance": dg.DagsterInstance.ephemeral()}


# ---- pure rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,size,age,prev,obj,expected",
    [
        ("drop.csv", 10, 100, 10, False, None),
        ("drop.csv", 10, 100, None, False, "size not yet stable"),
        ("drop.csv", 10, 100, 7, False, "size not yet stable"),
        ("drop.csv", 10, 100, None, True, None),  # object stores: no stability check
        ("drop.csv", 10, 3, 10, False, "modified 3 s ago"),
        ("drop.csv", 0, 100, 0, False, "empty file"),
        (".drop.csv", 10, 100, 10, False, "half-written name"),
        ("drop.csv.part", 10, 100, 10, False, "half-written name"),
        ("drop.csv.crdownload", 10, 100, 10, True, "half-written name"),
        ("drop.parquet.tmp", 10, 100, 10, False, "half-written name"),
    ],
)
def test_skip_reason(name, size, age, prev, obj, expected):
    now = 1_000_000.0
    f = InboxFile(path=f"/in/{name}", size=size, mtime=now - age, version="v")
    got = skip_reason(f, prev, now, min_age_s=10, object_store=obj)
    assert (got is None) if expected is None else got.startswith(expected)


def test_ready_files_skips_done_versions_and_prunes_vanished():
    a = InboxFile("/in/a.csv", 10, 0.0, "1")
    b = InboxFile("/in/b.csv", 20, 0.0, "2")
    cursor = {"done": {"/in/a.csv": "10|1", "/in/gone.csv": "5|9"}, "sizes": {"/in/b.csv": 20}}
    ready, new, waiting = ready_files([a, b], cursor, now=100.0, min_age_s=0, object_store=False)
    assert [f.path for f in ready] == ["/in/b.csv"]
    assert new["done"] == {"/in/a.csv": "10|1"}  # gone.csv pruned, b not marked before it is stored
    assert new["sizes"] == {"/in/a.csv": 10, "/in/b.csv": 20}
    assert waiting == {}
    a2 = InboxFile("/in/a.csv", 11, 5.0, "3")  # rewritten: new signature, handled again once stable
    ready, _, waiting = ready_files([a2], new, now=100.0, min_age_s=0, object_store=False)
    assert ready == [] and waiting["/in/a.csv"].startswith("size not yet stable")


def test_list_inbox_keeps_catalog_suffixes_only(tmp_path):
    for name in ("a.csv", "b.parquet", "notes.txt", "c.csv.part"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_text("x")
    names = sorted(os.path.basename(f.path) for f in list_inbox(str(tmp_path)))
    assert names == ["a.csv", "b.parquet", "c.csv.part"]
    assert list_inbox(str(tmp_path / "missing")) == []


# ---- the sensor ---------------------------------------------------------------------------------


def test_sensor_waits_for_stable_file_then_requests_one_idempotent_run(env):
    sensor = build_inbox_sensor(str(env["inbox"]), min_age_s=60)
    write_csv(env["inbox"] / "day1.csv", n=5)
    (env["inbox"] / "day2.csv.part").write_text("sample_id,catalog_content\n")  # still downloading
    write_csv(env["inbox"] / ".day3.csv", n=3)  # hidden temp name
    write_csv(env["inbox"] / "fresh.csv", n=3, old=False)  # modified just now

    r1 = tick(sensor, env["instance"], env["storage"])
    assert r1.run_requests == [] and r1.dynamic_partitions_requests == []
    assert "waiting for 4" in r1.skip_reason.skip_message

    r2 = tick(sensor, env["instance"], env["storage"], r1.cursor)  # day1 size confirmed
    assert [r.partition_key for r in r2.run_requests] == ["day1"]
    req = r2.run_requests[0]
    st = os.stat(env["inbox"] / "day1.csv")
    assert req.run_key == f"{env['inbox'] / 'day1.csv'}|{st.st_size}|{st.st_mtime!r}"
    assert req.tags["pricing/inbox_file"] == str(env["inbox"] / "day1.csv")
    assert [list(d.partition_keys) for d in r2.dynamic_partitions_requests] == [["day1"]]
    assert r2.dynamic_partitions_requests[0].partitions_def_name == CATALOG_BATCHES
    stored = find_batch_file(str(env["storage"] / "batches"), "day1")
    assert open(stored, "rb").read() == (env["inbox"] / "day1.csv").read_bytes()
    apply_partitions(env["instance"], r2)

    r3 = tick(sensor, env["instance"], env["storage"], r2.cursor)  # nothing new: no run, no re-copy
    assert r3.run_requests == [] and r3.dynamic_partitions_requests == []
    assert json.loads(r3.cursor)["done"] == json.loads(r2.cursor)["done"]

    # the same file rewritten (a corrected drop): same batch, new run key, partition not re-added
    write_csv(env["inbox"] / "day1.csv", n=7)
    os.utime(env["inbox"] / "day1.csv", (OLD + 10, OLD + 10))
    r4 = tick(sensor, env["instance"], env["storage"], r3.cursor)
    assert r4.run_requests == []  # new size seen once
    r5 = tick(sensor, env["instance"], env["storage"], r4.cursor)
    assert [r.partition_key for r in r5.run_requests] == ["day1"]
    assert r5.run_requests[0].run_key != req.run_key
    assert r5.dynamic_partitions_requests == []
    assert len(pd.read_csv(find_batch_file(str(env["storage"] / "batches"), "day1"))) == 7


def test_sensor_registers_several_files_oldest_first(env):
    sensor = build_inbox_sensor(str(env["inbox"]), min_age_s=0)
    write_csv(env["inbox"] / "b_later.csv", n=3, skip=10)
    write_csv(env["inbox"] / "a_earlier.parquet.tmp", n=3)
    df = pd.read_csv(LABELED_CSV, dtype={"sample_id": str}).head(4)
    df.to_parquet(env["inbox"] / "a_earlier.parquet", index=False)
    os.utime(env["inbox"] / "a_earlier.parquet", (OLD - 100, OLD - 100))
    r = tick(sensor, env["instance"], env["storage"], tick(sensor, env["instance"], env["storage"]).cursor)
    assert [x.partition_key for x in r.run_requests] == ["a_earlier", "b_later"]
    assert [list(d.partition_keys) for d in r.dynamic_partitions_requests] == [["a_earlier", "b_later"]]


def test_file_failing_its_contract_fails_its_run_once(env):
    """A catalog whose header is right but whose third line is malformed (the sensor checks only the
    header): stored and registered, its run fails visibly (CatalogFormatError names the file and the
    line), and later ticks don't request it again."""
    from pricing_assets.definitions import build_defs
    from pricing_assets.settings import load_settings

    bad = env["inbox"] / "broken.csv"
    bad.write_text("sample_id,catalog_content,image_link,price\n1,Item Name: a,,3.0\n2,Item Name: b,,4.0,x,y\n")
    os.utime(bad, (OLD, OLD))
    sensor = build_inbox_sensor(str(env["inbox"]), min_age_s=0)
    r = tick(sensor, env["instance"], env["storage"], tick(sensor, env["instance"], env["storage"]).cursor)
    assert [x.partition_key for x in r.run_requests] == ["broken"]
    apply_partitions(env["instance"], r)

    settings = load_settings(
        {
            "DAGSTER_HOME": str(env["storage"].parent),
            "PRICING_STORAGE": str(env["storage"]),
            "PRICING_IMAGES_OFFLINE": "1",
        }
    )
    defs = build_defs(settings)
    res = dg.materialize(
        [a for a in defs.assets if dg.AssetKey("raw_catalog") in a.keys],
        instance=env["instance"],
        resources=dict(defs.resources),
        partition_key="broken",
        raise_on_error=False,
    )
    assert not res.success
    errs = [e.event_specific_data.error for e in res.all_events if e.is_step_failure]
    msg = " ".join(err.message + " " + (err.cause.message if err.cause else "") for err in errs)
    assert "broken.csv" in msg and "line 3" in msg

    again = tick(sensor, env["instance"], env["storage"], r.cursor)
    assert again.run_requests == []


# ---- automation and schedule wiring -------------------------------------------------------------


def test_code_location_wires_automation_sensor_and_schedule():
    from pricing_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.partitions_def is None:
            name = key.to_user_string()
            expected = {"products": GLOBAL_AUTOMATION, **dict.fromkeys(PUBLISHED_ASSETS, PUBLISHED_AUTOMATION)}.get(
                name, TRAINED_AUTOMATION
            )
            assert node.automation_condition == expected, key
            assert node.group_name in GLOBAL_GROUPS, key
        elif key.to_user_string() in FOLLOW_SCORING:
            assert node.automation_condition == FOLLOW_SCORING_AUTOMATION, key
        elif node.group_name in SCORING_GROUPS:
            assert node.automation_condition == SCORING_AUTOMATION, key
        else:
            assert node.automation_condition is None, key
    sensors = {s.name: s for s in defs.sensors}
    # only act on dead or failed runs, or only report: running by default
    recovery = {"run_worker_watchdog", "transient_failure_retry", "run_failure_alert", "asset_alert"}
    assert set(sensors) == {"catalog_inbox_sensor", "pricing_automation_sensor"} | recovery
    assert all(
        s.default_status == (dg.DefaultSensorStatus.RUNNING if n in recovery else dg.DefaultSensorStatus.STOPPED)
        for n, s in sensors.items()
    )
    (sched,) = defs.schedules
    assert (sched.name, sched.cron_schedule, sched.execution_timezone) == ("nightly_retrain", "0 2 * * *", "UTC")
    assert sched.default_status == dg.DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def("nightly_retrain_job")
    retrain = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert retrain >= {"products", "lightgbm_model", "serving_model"} and "price_predictions" not in retrain
    batch_job = defs.resolve_job_def("catalog_batch_job")
    assert batch_job.partitions_def.name == CATALOG_BATCHES
    assert dg.AssetKey("products") not in batch_job.asset_layer.executable_asset_keys


def test_automation_on_starts_everything(monkeypatch):
    from pricing_assets.definitions import build_defs
    from pricing_assets.settings import load_settings

    defs = build_defs(load_settings({"PRICING_AUTOMATION": "1"}))
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors)
    assert defs.schedules[0].default_status == dg.DefaultScheduleStatus.RUNNING


def test_with_global_automation_refuses_a_second_policy():
    @dg.asset(automation_condition=dg.AutomationCondition.on_cron("0 * * * *"))
    def rogue():
        return 1

    with pytest.raises(ValueError, match="rogue: already has an automation condition"):
        with_global_automation([rogue])


# ---- defects vs transient failures: pure rules ---------------------------------------------------


class Clock:
    """A settable clock for ``build_inbox_sensor(clock=...)`` (seconds since the epoch)."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _client_error(code="InternalError"):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "boom"}}, "PutObject")


def _endpoint_error():
    from botocore.exceptions import EndpointConnectionError

    return EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


def _read_timeout():
    from botocore.exceptions import ReadTimeoutError

    return ReadTimeoutError(endpoint_url="http://127.0.0.1:1")


def _aiohttp_error():
    import aiohttp

    return aiohttp.ClientConnectionError("reset")


@pytest.mark.parametrize(
    "make,kind,unreachable",
    [
        (lambda: FileNotFoundError("gone"), "vanished", False),
        (lambda: InboxDefect("missing column"), "defect", False),
        (lambda: PermissionError(13, "Permission denied"), "transient", False),
        (lambda: OSError(5, "I/O error"), "transient", False),
        (lambda: ConnectionRefusedError(111, "refused"), "transient", True),
        (lambda: TimeoutError("slow"), "transient", True),
        (_client_error, "transient", False),
        (_endpoint_error, "transient", True),
        (_read_timeout, "transient", True),
        (_aiohttp_error, "transient", True),
        (lambda: ValueError("bug"), None, False),
        (lambda: KeyError("bug"), None, False),
        (lambda: TypeError("bug"), None, False),
    ],
)
def test_classify_error(make, kind, unreachable):
    exc = make()
    assert classify_error(exc) == kind
    assert is_unreachable(exc) is unreachable
    assert isinstance(exc, CLASSIFIED_ERRORS) is (kind is not None)


def test_backoff_doubles_from_30_s_and_stays_at_15_min():
    assert [backoff_delay_s(k) for k in range(1, 9)] == [30, 60, 120, 240, 480, 900, 900, 900]
    assert backoff_delay_s(10_000) == 900
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        backoff_delay_s(0)


def test_retry_records_count_per_version():
    r1 = record_failure(None, "10|a", now=1000.0, error="PermissionError: denied")
    assert r1 == {
        "signature": "10|a",
        "attempts": 1,
        "first_failed_at": 1000.0,
        "next_try_at": 1030.0,
        "error": "PermissionError: denied",
    }
    assert retry_wait_s(r1, "10|a", now=1010.0) == 20.0
    assert retry_wait_s(r1, "10|a", now=1030.0) == 0.0
    assert retry_wait_s(r1, "11|b", now=1010.0) == 0.0  # the file changed: try at once
    assert retry_wait_s(None, "10|a", now=0.0) == 0.0
    r2 = record_failure(r1, "10|a", now=1030.0, error="x" * 1000)
    assert (r2["attempts"], r2["first_failed_at"], r2["next_try_at"], len(r2["error"])) == (
        2,
        1000.0,
        1090.0,
        MAX_MESSAGE_CHARS,
    )
    r3 = record_failure(r2, "11|b", now=2000.0, error="e")  # a new version starts again
    assert (r3["attempts"], r3["first_failed_at"], r3["next_try_at"]) == (1, 2000.0, 2030.0)
    l1 = record_listing_failure(None, 50.0, "EndpointConnectionError: x")
    l2 = record_listing_failure(l1, 80.0, "EndpointConnectionError: y")
    assert l2 == {"failures": 2, "since": 50.0, "error": "EndpointConnectionError: y"}


def test_defect_records_are_capped_to_the_newest():
    d = {}
    for i in range(5):
        d = record_defect(d, f"/in/f{i}.csv", f"{i}|v", f"reason {i}", now=100.0 + i, cap=3)
    assert sorted(d) == ["/in/f2.csv", "/in/f3.csv", "/in/f4.csv"]
    assert d["/in/f4.csv"] == {"signature": "4|v", "reason": "reason 4", "at": 104.0}


@pytest.mark.parametrize(
    "name,expected",
    [
        ("day 1.csv", "day_1"),
        ("Batch-2.PQ", "Batch-2"),
        ("_draft.csv", InboxDefect),
        ("-x.parquet", InboxDefect),
        ("x" * 129 + ".csv", InboxDefect),
        ("notes.txt", InboxDefect),
    ],
)
def test_check_name(name, expected):
    if expected is InboxDefect:
        with pytest.raises(InboxDefect, match="file name"):
            check_name(f"/in/{name}")
    else:
        assert check_name(f"/in/{name}") == expected


def test_csv_header_columns_reads_the_header_as_the_ingest_does():
    from pricing_assets.lib.catalog.parsing import REQUIRED_COLUMNS

    good = "\ufeffsample_id, catalog_content ,image_link,price\n1,a,,2\n".encode()
    assert csv_header_columns(good, complete=True) == ["sample_id", "catalog_content", "image_link", "price"]
    # a non-UTF-8 byte in a data row is the ingest's business (that row is quarantined)
    assert csv_header_columns(b"sample_id,catalog_content,image_link\n1,caf\xe9,\n", complete=True)[:3] == list(
        REQUIRED_COLUMNS
    )
    # cut after the last complete line when the head is not the whole file
    assert csv_header_columns(b"sample_id,catalog_content,image_link\n1,a,\n2,b", complete=False) == list(
        REQUIRED_COLUMNS
    )
    for head, complete, match in [
        ("sample_id,catalog_content,image_link\n".encode("utf-16"), True, "UTF-16"),
        (b"PAR1\x00\x00binary", True, "parquet data"),
        (b"x" * 100, False, "no line break in the first 100 bytes"),
        (b"\n\n", True, "no header row"),
    ]:
        with pytest.raises(InboxDefect, match=match):
            csv_header_columns(head, complete)
    check_required_columns(list(REQUIRED_COLUMNS))
    with pytest.raises(
        InboxDefect, match=r"missing required column\(s\) \['catalog_content'\]; found \['sample_id', 'image_link'\]$"
    ):
        check_required_columns(["sample_id", "image_link"])
    with pytest.raises(InboxDefect, match="the header is not UTF-8 text"):
        check_required_columns(["sample_id", "catalog_\ufffdcontent", "image_link"])


def test_check_catalog_header_on_files(tmp_path):
    df = pd.read_csv(LABELED_CSV, dtype={"sample_id": str}).head(50)
    pq_path = tmp_path / "ok.parquet"
    df.to_parquet(pq_path, index=False)
    assert check_catalog_header(str(pq_path), pq_path.stat().st_size) == list(df.columns)
    df.drop(columns=["image_link"]).to_parquet(tmp_path / "noimg.pq", index=False)
    with pytest.raises(InboxDefect, match=r"missing required column\(s\) \['image_link'\]"):
        check_catalog_header(str(tmp_path / "noimg.pq"), (tmp_path / "noimg.pq").stat().st_size)
    fake = tmp_path / "fake.parquet"
    df.to_csv(fake, index=False)
    with pytest.raises(InboxDefect, match="not a parquet file"):
        check_catalog_header(str(fake), fake.stat().st_size)
    cut = tmp_path / "cut.parquet"
    raw = pq_path.read_bytes()
    cut.write_bytes(raw[:4] + raw[-8:])  # magic at both ends, footer length beyond the file
    with pytest.raises(InboxDefect, match="corrupt parquet file"):
        check_catalog_header(str(cut), cut.stat().st_size)
    csv_path = tmp_path / "big.csv"
    df.to_csv(csv_path, index=False)
    assert csv_path.stat().st_size > 1000
    assert check_catalog_header(str(csv_path), csv_path.stat().st_size, peek_bytes=1000) == list(df.columns)
    with pytest.raises(FileNotFoundError):
        check_catalog_header(str(tmp_path / "gone.csv"), 10)


def test_fast_fail_options_only_for_s3():
    assert fast_fail_options("/data/inbox", {}) == {}
    opts = fast_fail_options("s3://b/in", {"endpoint_url": "http://h:9000"})
    assert opts == {"endpoint_url": "http://h:9000", "config_kwargs": S3_FAST_FAIL_CONFIG}
    mine = fast_fail_options("s3://b/in", {"config_kwargs": {"read_timeout": 60}})
    assert (
        mine["config_kwargs"]["read_timeout"] == 60
        and mine["config_kwargs"]["connect_timeout"] == S3_FAST_FAIL_CONFIG["connect_timeout"]
    )


# ---- defects vs transient failures: the sensor ---------------------------------------------------


def _runs(results):
    return [r.partition_key for res in results for r in res.run_requests]


def test_destination_permission_error_is_retried_with_backoff_then_ingested(env, monkeypatch):
    """store_batch fails with PermissionError twice (the storage folder not writable yet): the file
    is retried at 30 s then 60 s later, ingested at the third attempt, one run in all."""
    from pricing_assets.defs import sensors

    real_store, calls = sensors.store_batch, []

    def flaky_store(src, batches_dir, batch, **kw):
        calls.append(src)
        if len(calls) <= 2:
            raise PermissionError(13, "Permission denied", f"{batches_dir}/{batch}")
        return real_store(src, batches_dir, batch, **kw)

    monkeypatch.setattr(sensors, "store_batch", flaky_store)
    clock = Clock(time.time())
    t0 = clock.t
    sensor = build_inbox_sensor(str(env["inbox"]), min_age_s=0, clock=clock)
    path = str(env["inbox"] / "day1.csv")
    write_csv(env["inbox"] / "day1.csv", n=4)

    def at(t, cursor):
        clock.t = t0 + t
        return tick(sensor, env["instance"], env["storage"], cursor)

    results = [at(0, None)]  # size seen once
    assert calls == []
    results.append(at(0, results[-1].cursor))  # attempt 1 fails
    cur = json.loads(results[-1].cursor)
    assert cur["retry"][path]["attempts"] == 1 and cur["retry"][path]["next_try_at"] == t0 + 30
    assert path not in cur["done"]
    assert (
        "failed, will retry 1" in results[-1].skip_reason.skip_message
        and "PermissionError" in results[-1].skip_reason.skip_message
    )
    results.append(at(10, results[-1].cursor))  # not due: not tried
    assert len(calls) == 1 and "attempt 2 in 20 s" in results[-1].skip_reason.skip_message
    results.append(at(30, results[-1].cursor))  # attempt 2 fails
    cur = json.loads(results[-1].cursor)
    assert (
        cur["retry"][path]["attempts"],
        cur["retry"][path]["next_try_at"],
        cur["retry"][path]["first_failed_at"],
    ) == (2, t0 + 90, t0)
    results.append(at(89, results[-1].cursor))
    assert len(calls) == 2
    results.append(at(90, results[-1].cursor))  # attempt 3 works
    assert len(calls) == 3
    assert [r.partition_key for r in results[-1].run_requests] == ["day1"]
    cur = json.loads(results[-1].cursor)
    assert cur["retry"] == {} and cur["done"][path] == results[-1].run_requests[0].tags["pricing/inbox_version"]
    assert (
        Path(find_batch_file(str(env["storage"] / "batches"), "day1")).read_bytes()
        == (env["inbox"] / "day1.csv").read_bytes()
    )
    results.append(at(200, results[-1].cursor))
    assert _runs(results) == ["day1"] and len(calls) == 3


def test_transient_failures_back_off_to_the_cap_and_never_give_up(env, monkeypatch):
    from pricing_assets.defs import sensors

    def broken_store(*a, **kw):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sensors, "store_batch", broken_store)
    clock = Clock(time.time())
    sensor = build_inbox_sensor(str(env["inbox"]), min_age_s=0, clock=clock)
    path = str(env["inbox"] / "day1.csv")
    write_csv(env["inbox"] / "day1.csv", n=2)
    res = tick(sensor, env["instance"], env["storage"])
    delays = []
    for _ in range(8):
        res = tick(sensor, env["instance"], env["storage"], res.cursor)
        rec = json.loads(res.cursor)["retry"][path]
        delays.append(rec["next_try_at"] - clock.t)
        clock.t = rec["next_try_at"]
    assert delays == [30, 60, 120, 240, 480, 900, 900, 900]
    assert rec["attempts"] == 8 and res.run_requests == []


def test_programming_error_fails_the_tick_loudly(env, monkeypatch):
    from pricing_assets.defs import sensors

    def buggy_store(*a, **kw):
        raise KeyError("bug")

    monkeypatch.setattr(sensors, "store_batch", buggy_store)
    sensor = build_inbox_sensor(str(env["inbox"]), min_age_s=0)
    write_csv(env["inbox"] / "day1.csv", n=2)
    r = tick(sensor, env["instance"], env["storage"])
    with pytest.raises(KeyError, match="bug"):  # not swallowed, not recorded as a defect or a retry
        tick(sensor, env["instance"], env["storage"], r.cursor)


def test_defective_files_are_reported_once_not_stored_and_retried_when_changed(env, monkeypatch):
    from pricing_assets.defs import sensors

    real_check, checked = sensors.check_catalog_header, []

    def counting_check(path, size, options=None):
        checked.append(os.path.basename(path))
        return real_check(path, size, options)

    monkeypatch.setattr(sensors, "check_catalog_header", counting_check)
    inbox = env["inbox"]
    df = pd.read_csv(LABELED_CSV, dtype={"sample_id": str}).head(3)
    df.drop(columns=["catalog_content"]).to_csv(inbox / "nocontent.csv", index=False)
    df.to_csv(inbox / "utf16.csv", index=False, encoding="utf-16")
    df.to_csv(inbox / "_draft.csv", index=False)
    for name in ("nocontent.csv", "utf16.csv", "_draft.csv"):
        os.utime(inbox / name, (OLD, OLD))
    sensor = build_inbox_sensor(str(inbox), min_age_s=0)

    r1 = tick(sensor, env["instance"], env["storage"])
    r2 = tick(sensor, env["instance"], env["storage"], r1.cursor)
    assert r2.run_requests == [] and r2.dynamic_partitions_requests == []
    msg = r2.skip_reason.skip_message
    assert "refused 3 (file defects, not retried until the file changes)" in msg
    defects = json.loads(r2.cursor)["defects"]
    assert sorted(os.path.basename(p) for p in defects) == ["_draft.csv", "nocontent.csv", "utf16.csv"]
    reasons = {os.path.basename(p): d["reason"] for p, d in defects.items()}
    assert reasons["nocontent.csv"].startswith("missing required column(s) ['catalog_content']")
    assert "UTF-16" in reasons["utf16.csv"]
    assert reasons["_draft.csv"].startswith("unusable file name '_draft.csv'")
    assert sorted(checked) == ["nocontent.csv", "utf16.csv"]  # the bad name is refused before any read
    assert not (env["storage"] / "batches").exists()  # nothing stored
    assert json.loads(r2.cursor)["done"] == {p: d["signature"] for p, d in defects.items()}

    r3 = tick(sensor, env["instance"], env["storage"], r2.cursor)  # not read again, not reported again
    assert r3.run_requests == [] and "refused" not in r3.skip_reason.skip_message
    assert len(checked) == 2 and json.loads(r3.cursor)["defects"] == defects

    df.to_csv(inbox / "nocontent.csv", index=False)  # corrected: a new version of the file
    os.utime(inbox / "nocontent.csv", (OLD + 5, OLD + 5))
    r4 = tick(sensor, env["instance"], env["storage"], r3.cursor)  # new size seen once
    r5 = tick(sensor, env["instance"], env["storage"], r4.cursor)
    assert [r.partition_key for r in r5.run_requests] == ["nocontent"]
    assert sorted(os.path.basename(p) for p in json.loads(r5.cursor)["defects"]) == ["_draft.csv", "utf16.csv"]
    assert (
        Path(find_batch_file(str(env["storage"] / "batches"), "nocontent")).read_bytes()
        == (inbox / "nocontent.csv").read_bytes()
    )


def test_non_utf8_bytes_in_a_data_row_are_not_a_file_defect(env):
    """Row-level problems stay with the ingest (the row is quarantined): the file goes through."""
    p = env["inbox"] / "latin1.csv"
    p.write_bytes(b"sample_id,catalog_content,image_link,price\n1,Item Name: caf\xe9,,3.5\n2,Item Name: tea,,4\n")
    os.utime(p, (OLD, OLD))
    sensor = build_inbox_sensor(str(env["inbox"]), min_age_s=0)
    r = tick(sensor, env["instance"], env["storage"], tick(sensor, env["instance"], env["storage"]).cursor)
    assert [x.partition_key for x in r.run_requests] == ["latin1"]
    assert json.loads(r.cursor)["defects"] == {}


def test_batch_name_clashes_are_defects(env):
    inbox = env["inbox"]
    sensor = build_inbox_sensor(str(inbox), min_age_s=0)
    write_csv(inbox / "day1.csv", n=3)
    df = pd.read_csv(LABELED_CSV, dtype={"sample_id": str}).head(3)
    df.to_parquet(inbox / "day1.parquet", index=False)
    os.utime(inbox / "day1.parquet", (OLD + 1, OLD + 1))  # younger: day1.csv keeps the name
    r = tick(sensor, env["instance"], env["storage"], tick(sensor, env["instance"], env["storage"]).cursor)
    assert [x.partition_key for x in r.run_requests] == ["day1"]
    assert r.run_requests[0].tags["pricing/inbox_file"] == str(inbox / "day1.csv")
    d = json.loads(r.cursor)["defects"]
    assert list(d) == [str(inbox / "day1.parquet")]
    assert d[str(inbox / "day1.parquet")]["reason"].startswith(
        f"batch name 'day1' is also derived from {inbox / 'day1.csv'}"
    )

    # a later tick: the parquet file rewritten, the batch still holds day1.csv -> refused again
    df.head(2).to_parquet(inbox / "day1.parquet", index=False)
    os.utime(inbox / "day1.parquet", (OLD + 2, OLD + 2))
    r2 = tick(sensor, env["instance"], env["storage"], tick(sensor, env["instance"], env["storage"], r.cursor).cursor)
    assert r2.run_requests == []
    assert "batch 'day1' already holds 'day1.csv' from another file" in r2.skip_reason.skip_message
    assert os.path.basename(find_batch_file(str(env["storage"] / "batches"), "day1")) == "day1.csv"


# ---- an S3 endpoint going down and coming back ---------------------------------------------------


def test_s3_inbox_down_then_back_loses_nothing(restartable_s3, tmp_path):  # noqa: F811
    """Inbox and storage on one S3 endpoint that stops for three ticks: each of them skips with the
    error, keeps the cursor, and the file dropped before the outage is ingested once it is back."""
    fs, bucket, server = restartable_s3["fs"], restartable_s3["bucket"], restartable_s3["server"]
    df = pd.read_csv(LABELED_CSV, dtype={"sample_id": str}).head(4)
    fs.pipe(f"{bucket}/inbox/day0.csv", df.to_csv(index=False).encode())
    storage = StorageResource(base_path=f"s3://{bucket}/store", endpoint_url=server.endpoint)
    instance = dg.DagsterInstance.ephemeral()
    clock = Clock(time.time())
    sensor = build_inbox_sensor(f"s3://{bucket}/inbox", server.endpoint, min_age_s=0, clock=clock)

    def s3_tick(cursor):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": storage})
        res = sensor(ctx)
        assert isinstance(res, dg.SensorResult)
        return res

    results = [s3_tick(None)]
    assert _runs(results) == ["day0"]
    fs.pipe(f"{bucket}/inbox/day1.csv", df.head(3).to_csv(index=False).encode())
    before = json.loads(results[-1].cursor)
    port = server.port

    server.stop()
    with pytest.raises(TRANSIENT_ERRORS):  # a bucket-root inbox no longer reads as empty
        list_inbox(f"s3://{bucket}", fast_fail_options("s3://", {"endpoint_url": server.endpoint}))
    for k in range(1, 4):
        clock.t += 30
        res = s3_tick(results[-1].cursor)
        results.append(res)
        assert res.run_requests == [] and res.dynamic_partitions_requests == []
        assert res.skip_reason.skip_message.startswith(
            f"cannot list the inbox s3://{bucket}/inbox ({k} tick(s) in a row)"
        )
        assert "EndpointConnectionError" in res.skip_reason.skip_message
        cur = json.loads(res.cursor)
        assert cur.pop("listing")["failures"] == k
        assert cur == before  # nothing marked, nothing forgotten

    server.start()
    assert server.port == port
    clock.t += 30
    results.append(s3_tick(results[-1].cursor))
    assert [r.partition_key for r in results[-1].run_requests] == ["day1"]
    assert "listing" not in json.loads(results[-1].cursor)
    assert fs.cat(f"{bucket}/store/batches/day1/day1.csv") == fs.cat(f"{bucket}/inbox/day1.csv")
    clock.t += 30
    results.append(s3_tick(results[-1].cursor))
    assert _runs(results) == ["day0", "day1"]


def test_s3_storage_down_backs_off_then_stores(restartable_s3, env):  # noqa: F811
    """Local inbox, S3 storage down: the first file fails (attempt 1), the second isn't tried in the
    same tick (endpoint unreachable, no attempt counted); both are stored once the endpoint is back."""
    server, bucket, fs = restartable_s3["server"], restartable_s3["bucket"], restartable_s3["fs"]
    storage = StorageResource(base_path=f"s3://{bucket}/store", endpoint_url=server.endpoint)
    clock = Clock(time.time())
    sensor = build_inbox_sensor(str(env["inbox"]), min_age_s=0, clock=clock)
    write_csv(env["inbox"] / "a.csv", n=2)
    write_csv(env["inbox"] / "b.csv", n=3, skip=5)
    os.utime(env["inbox"] / "b.csv", (OLD + 1, OLD + 1))

    def s3_tick(cursor):
        return dg.build_sensor_context(instance=env["instance"], cursor=cursor, resources={"storage": storage})

    results = [sensor(s3_tick(None))]
    server.stop()
    results.append(sensor(s3_tick(results[-1].cursor)))
    cur = json.loads(results[-1].cursor)
    a = str(env["inbox"] / "a.csv")
    assert list(cur["retry"]) == [a] and cur["retry"][a]["attempts"] == 1
    assert cur["retry"][a]["error"].startswith("EndpointConnectionError")
    msg = results[-1].skip_reason.skip_message
    assert "failed, will retry 1" in msg and "not tried this tick, an endpoint is unreachable" in msg
    server.start()
    clock.t += 30
    results.append(sensor(s3_tick(results[-1].cursor)))
    assert [r.partition_key for r in results[-1].run_requests] == ["a", "b"]
    assert json.loads(results[-1].cursor)["retry"] == {}
    assert fs.cat(f"{bucket}/store/batches/b/b.csv") == (env["inbox"] / "b.csv").read_bytes()
    results.append(sensor(s3_tick(results[-1].cursor)))
    assert _runs(results) == ["a", "b"]


def test_header_check_survives_a_peek_that_ends_inside_a_long_quoted_record():
    head = b'sample_id,catalog_content,image_link,price\n1,"Item Name: x\nBullet: y\n'  # cut mid-record
    assert csv_header_columns(head, complete=False) == ["sample_id", "catalog_content", "image_link", "price"]
