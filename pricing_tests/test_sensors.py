"""``catalog_inbox_sensor`` on a local inbox: half-written files skipped, cursor, idempotent run keys,
dynamic partition registration, a file that fails its contract fails its run once; plus the
automation / schedule wiring of the code location."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pricing_assets.automation import GLOBAL_AUTOMATION, GLOBAL_GROUPS, with_global_automation
from pricing_assets.lib.batches import find_batch_file
from pricing_assets.partitions import CATALOG_BATCHES
from pricing_assets.resources import StorageResource
from pricing_assets.sensors import InboxFile, build_inbox_sensor, list_inbox, ready_files, skip_reason

LABELED_CSV = Path(__file__).resolve().parent.parent / "data" / "sample" / "amazon_pricing_sample.csv"
OLD = time.time() - 3600


def write_csv(path, n=5, skip=0, old=True):
    df = pd.read_csv(LABELED_CSV, dtype={"sample_id": str}).iloc[skip : skip + n]
    df.to_csv(path, index=False)
    if old:
        os.utime(path, (OLD, OLD))
    return df


def tick(sensor, instance, storage_dir, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": StorageResource(base_path=str(storage_dir))})
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
    """A catalog without the catalog_content column: stored and registered, its run fails visibly
    (CatalogFormatError names the file), and later ticks don't request it again."""
    from pricing_assets.definitions import build_defs
    from pricing_assets.settings import load_settings

    bad = env["inbox"] / "broken.csv"
    pd.DataFrame({"sample_id": ["1", "2"], "price": [3.0, 4.0]}).to_csv(bad, index=False)
    os.utime(bad, (OLD, OLD))
    sensor = build_inbox_sensor(str(env["inbox"]), min_age_s=0)
    r = tick(sensor, env["instance"], env["storage"], tick(sensor, env["instance"], env["storage"]).cursor)
    assert [x.partition_key for x in r.run_requests] == ["broken"]
    apply_partitions(env["instance"], r)

    settings = load_settings({"DAGSTER_HOME": str(env["storage"].parent), "PRICING_STORAGE": str(env["storage"]), "PRICING_IMAGES_OFFLINE": "1"})
    defs = build_defs(settings)
    res = dg.materialize(
        [a for a in defs.assets if dg.AssetKey("raw_catalog") in a.keys],
        instance=env["instance"], resources=dict(defs.resources), partition_key="broken", raise_on_error=False,
    )
    assert not res.success
    errs = [e.event_specific_data.error for e in res.all_events if e.is_step_failure]
    msg = " ".join(err.message + " " + (err.cause.message if err.cause else "") for err in errs)
    assert "broken.csv" in msg and "catalog_content" in msg

    again = tick(sensor, env["instance"], env["storage"], r.cursor)
    assert again.run_requests == []


# ---- automation and schedule wiring -------------------------------------------------------------


def test_code_location_wires_automation_sensor_and_schedule():
    from pricing_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.partitions_def is None:
            assert node.automation_condition == GLOBAL_AUTOMATION, key
            assert node.group_name in GLOBAL_GROUPS, key
        else:
            assert node.automation_condition is None, key
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"catalog_inbox_sensor", "pricing_automation_sensor"}
    assert all(s.default_status == dg.DefaultSensorStatus.STOPPED for s in sensors.values())
    (sched,) = defs.schedules
    assert (sched.name, sched.cron_schedule, sched.execution_timezone) == ("nightly_retrain", "0 2 * * *", "UTC")
    assert sched.default_status == dg.DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def("nightly_retrain_job")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= {"products", "lightgbm_model", "price_predictions"}
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
