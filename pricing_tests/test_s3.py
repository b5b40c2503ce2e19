"""End to end against a real S3 server on 127.0.0.1 (moto): ``pricing ingest s3://…``, the whole asset
graph with ``PRICING_STORAGE=s3://bucket/prefix`` (IO managers, batches, image store, embedding
cache), and ``catalog_inbox_sensor`` watching an ``s3://`` inbox."""

import io
import os

import dagster as dg
import pandas as pd
import pytest

from pricing_assets import cli
from pricing_assets.automation import PER_ROW_GROUPS
from pricing_assets.defs.sensors import build_inbox_sensor
from pricing_assets.resources import OcrResource, StorageResource
from pricing_tests.helpers import TEXT_KEY, TEXT_MODEL, sample_slice
from pricing_tests.s3_server import s3_endpoint, s3_env  # noqa: F401  (fixtures)

N_LAB, N_IMG, N_UNL = 40, 3, 10


def put_csv(fs, url, df):
    with fs.open(url, "wb") as f:
        f.write(df.to_csv(index=False).encode())


def s3_settings(monkeypatch, tmp_path, s3, prefix="store"):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRICING_STORAGE", f"s3://{s3['bucket']}/{prefix}")
    monkeypatch.setenv("PRICING_S3_ENDPOINT", s3["endpoint"])
    monkeypatch.setenv("PRICING_IMAGES_OFFLINE", "1")
    from pricing_assets.settings import load_settings

    return load_settings()


@pytest.mark.slow  # ~80 s on 2 busy cores: both encoders load, LightGBM trains
def test_whole_graph_on_s3_storage(s3_env, monkeypatch, tmp_path):  # noqa: F811
    from pricing_assets.definitions import build_defs

    fs, bucket = s3_env["fs"], s3_env["bucket"]
    settings = s3_settings(monkeypatch, tmp_path, s3_env)
    lab, unl = sample_slice(n_labeled=N_LAB, n_with_image=N_IMG, n_unlabeled=N_UNL)
    put_csv(fs, f"s3://{bucket}/drops/labeled.csv", lab)
    put_csv(fs, f"s3://{bucket}/drops/unlabeled.csv", unl)

    instance = dg.DagsterInstance.ephemeral()
    # `pricing ingest s3://…`: the source's endpoint comes from PRICING_S3_ENDPOINT
    assert cli.ingest(instance, f"s3://{bucket}/drops/labeled.csv", "lab") == "lab"
    assert cli.ingest(instance, f"s3://{bucket}/drops/unlabeled.csv", None) == "unlabeled"
    assert fs.cat(f"{bucket}/store/batches/lab/labeled.csv") == lab.to_csv(index=False).encode()

    base = build_defs(settings)
    defs = dg.Definitions(
        assets=list(base.assets),
        resources={**base.resources, "ocr": OcrResource(enabled=False)},
        executor=dg.in_process_executor,
    )
    res = cli.materialize(instance, defs, log_level="ERROR")
    assert res["batches"] == ["lab", "unlabeled"]

    # every artefact lives in the bucket, nothing fell back to a local folder
    keys = set(fs.find(f"{bucket}/store"))
    for k in (
        "assets/raw_catalog/lab.parquet",
        "assets/catalog_items/unlabeled.parquet",
        f"assets/{TEXT_KEY}/lab.parquet",
        "assets/embeddings/image/effnet_lite0/lab.parquet",
        "assets/products.parquet",
        "assets/product_index.faiss",
        "assets/lightgbm_model.lgbm.json",
        "assets/price_predictions.parquet",
    ):
        assert f"{bucket}/store/{k}" in keys, k
    assert any(k.startswith(f"{bucket}/store/embedding_cache/{TEXT_MODEL}/") for k in keys)
    assert any(k.startswith(f"{bucket}/store/embedding_cache/effnet_lite0/") for k in keys)
    assert any(k.startswith(f"{bucket}/store/images/") for k in keys)
    assert not os.path.exists(tmp_path / "home" / "storage")

    preds = pd.read_parquet(io.BytesIO(fs.cat(f"{bucket}/store/assets/price_predictions.parquet")))
    assert sorted(preds["sample_id"]) == sorted(unl["sample_id"])
    assert (preds["price"] > 0).all()
    loaded = defs.load_asset_value("price_predictions", instance=instance)
    pd.testing.assert_frame_equal(loaded, preds)

    def meta(key, batch):
        ev = instance.get_latest_materialization_event(dg.AssetKey(key.split("/")))
        recs = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(key.split("/")), asset_partitions=[batch]), limit=1
        )
        return {k: v.value for k, v in recs.records[0].asset_materialization.metadata.items()} if recs.records else ev

    m = meta(TEXT_KEY, "lab")
    assert (m["rows"], m["computed"], m["cached"]) == (N_LAB, N_LAB, 0)
    img = meta("embeddings/image/effnet_lite0", "lab")
    assert img["rows"] >= 1 and img["computed"] == img["rows"]

    # re-materialising a batch reads every vector back from the S3 cache: nothing recomputed
    again = dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=dict(defs.resources),
        partition_key="lab",
        selection=dg.AssetSelection.groups(*PER_ROW_GROUPS),
    )
    assert again.success
    m2 = meta(TEXT_KEY, "lab")
    assert (m2["computed"], m2["cached"]) == (0, N_LAB)
    assert meta("embeddings/image/effnet_lite0", "lab")["computed"] == 0


def test_inbox_sensor_on_s3(s3_env, monkeypatch, tmp_path):  # noqa: F811
    from pricing_assets.definitions import build_defs

    fs, bucket = s3_env["fs"], s3_env["bucket"]
    settings = s3_settings(monkeypatch, tmp_path, s3_env)
    lab, _ = sample_slice(n_labeled=6, n_with_image=0, n_unlabeled=0)
    put_csv(fs, f"s3://{bucket}/inbox/day1.csv", lab)
    put_csv(fs, f"s3://{bucket}/inbox/day2.csv.part", lab)  # a client's partial-upload name
    put_csv(fs, f"s3://{bucket}/inbox/.day3.csv", lab)
    fs.pipe(f"{bucket}/inbox/readme.txt", b"not a catalog")

    sensor = build_inbox_sensor(f"s3://{bucket}/inbox", s3_env["endpoint"], min_age_s=0)
    instance = dg.DagsterInstance.ephemeral()
    storage = StorageResource(base_path=settings.storage, endpoint_url=settings.s3_endpoint)
    ctx = dg.build_sensor_context(instance=instance, resources={"storage": storage})
    r1 = sensor(ctx)
    # object stores publish complete objects: picked up on the first tick
    assert [r.partition_key for r in r1.run_requests] == ["day1"]
    etag = fs.info(f"{bucket}/inbox/day1.csv")["ETag"].strip('"')
    assert r1.run_requests[0].run_key == f"s3://{bucket}/inbox/day1.csv|{fs.size(f'{bucket}/inbox/day1.csv')}|{etag}"
    assert [list(d.partition_keys) for d in r1.dynamic_partitions_requests] == [["day1"]]
    assert fs.cat(f"{bucket}/store/batches/day1/day1.csv") == fs.cat(f"{bucket}/inbox/day1.csv")

    ctx2 = dg.build_sensor_context(instance=instance, cursor=r1.cursor, resources={"storage": storage})
    r2 = sensor(ctx2)
    assert r2.run_requests == []
    assert "no new catalog file" in r2.skip_reason.skip_message

    # the requested run reads the stored batch back from S3
    instance.add_dynamic_partitions("catalog_batches", ["day1"])
    defs = build_defs(settings)
    wanted = {dg.AssetKey("raw_catalog"), dg.AssetKey("catalog_quarantine"), dg.AssetKey("catalog_items")}
    res = dg.materialize(
        [a for a in defs.assets if a.keys & wanted],
        instance=instance,
        resources=dict(defs.resources),
        partition_key="day1",
        selection=dg.AssetSelection.assets(*wanted),
    )
    assert res.success
    items = defs.load_asset_value("catalog_items", instance=instance, partition_key="day1")
    assert items["sample_id"].tolist() == lab["sample_id"].tolist()


def test_cli_ingest_with_explicit_endpoint(s3_env, monkeypatch, tmp_path):  # noqa: F811
    """``pricing ingest s3://… --endpoint-url URL`` into local storage (source and storage differ)."""
    fs, bucket = s3_env["fs"], s3_env["bucket"]
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PRICING_STORAGE", raising=False)
    monkeypatch.delenv("PRICING_S3_ENDPOINT", raising=False)
    lab, _ = sample_slice(n_labeled=3, n_with_image=0, n_unlabeled=0)
    put_csv(fs, f"s3://{bucket}/drops/tiny.csv", lab)
    monkeypatch.setattr(cli, "get_instance", lambda: dg.DagsterInstance.ephemeral())
    assert cli.main(["ingest", f"s3://{bucket}/drops/tiny.csv", "--endpoint-url", s3_env["endpoint"]]) == 0
    stored = tmp_path / "home" / "storage" / "batches" / "tiny" / "tiny.csv"
    assert pd.read_csv(stored, dtype={"sample_id": str})["sample_id"].tolist() == lab["sample_id"].tolist()
    assert (
        cli.main(["ingest", f"s3://{bucket}/drops/absent.csv", "--endpoint-url", s3_env["endpoint"]]) == 2
    )  # one line, exit 2
