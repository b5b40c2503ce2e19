"""``infra/dagster-postgres.yaml`` against a real PostgreSQL server started here on 127.0.0.1.

The fixture runs ``initdb`` into a temp folder (as ``nobody`` when the tests run as root: initdb
refuses root), starts ``postgres`` on a free port with password auth (scram-sha-256), and stops it
afterwards. The test loads a Dagster instance from the production config file, materialises the
per-row assets of a small real batch with it, and reads the run, events, partitions and check
results back with plain SQL: proof that they landed in Postgres, not in a SQLite fallback.

Needs the PostgreSQL server binaries (Debian: ``postgresql-15``; or set ``PG_BIN``) and
``dagster-postgres`` (dev extra); skips with the reason otherwise.
"""

from __future__ import annotations

import os

import dagster as dg
import pandas as pd
import pytest

from pricing_tests.helpers import IMAGES, LABELED_CSV, REPO, TEXT_MODEL

BATCH = "pg_batch"


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server: yields dict(host, port, username, password, db_name)."""
    from pricing_tests.postgres_server import PG_BIN, PostgresServer, available

    if not available():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql-15, or set PG_BIN)")
    pytest.importorskip("dagster_postgres", reason="dagster-postgres not installed (pip install -e '.[postgres]')")
    server = PostgresServer()
    try:
        yield server.conn
    finally:
        server.destroy()


def sql(pg: dict, query: str, *args) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(
        host=pg["host"], port=pg["port"], user=pg["username"], password=pg["password"], dbname=pg["db_name"]
    ) as conn:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()


@pytest.fixture()
def pg_instance(postgres, tmp_path, monkeypatch):
    """A DagsterInstance loaded from the shipped ``infra/dagster-postgres.yaml`` (env-configured)."""
    for k, v in {
        "HOST": postgres["host"],
        "PORT": str(postgres["port"]),
        "USERNAME": postgres["username"],
        "PASSWORD": postgres["password"],
        "DB": postgres["db_name"],
    }.items():
        monkeypatch.setenv(f"DAGSTER_PG_{k}", v)
    home = tmp_path / "home"
    home.mkdir()
    cfg = (
        (REPO / "infra" / "dagster-postgres.yaml")
        .read_text()
        .replace("/tmp/dagster-compute-logs", str(tmp_path / "logs"))
    )
    (home / "dagster.yaml").write_text(cfg)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()


def test_instance_uses_postgres_for_runs_events_and_schedules(pg_instance):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    assert pg_instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"


def test_small_materialisation_lands_in_postgres(pg_instance, postgres, tmp_path, monkeypatch):
    from pricing_assets.defs import images, ingest
    from pricing_assets.defs.embeddings import build_text_embedding_asset
    from pricing_assets.defs.resources import build_resources
    from pricing_assets.lib.catalog.batches import store_batch
    from pricing_assets.lib.embeddings.registry import load_registry
    from pricing_assets.partitions import CATALOG_BATCHES
    from pricing_assets.resources import ImageFetchResource, OcrResource
    from pricing_assets.settings import Settings
    from pricing_tests.test_resume import small_chunks

    small_chunks(monkeypatch.setattr)  # stub text encoder: this test is about instance storage
    settings = Settings(
        home=str(tmp_path / "home"),
        storage=str(tmp_path / "storage"),
        s3_endpoint=None,
        device="cpu",
        image_mirror=str(IMAGES),
        images_offline=True,
        ocr_backend="rapidocr",
        inbox=str(tmp_path / "inbox"),
    )
    resources = build_resources(settings)
    resources["image_fetch"] = ImageFetchResource(mirror_dir=str(IMAGES), offline=True)
    resources["ocr"] = OcrResource(enabled=False)
    assets = [
        ingest.raw_catalog,
        ingest.catalog_items,
        images.product_images,
        images.ocr_text,
        build_text_embedding_asset(load_registry()[TEXT_MODEL]),
    ]
    keys = [k for a in assets for k in a.keys]

    lab = pd.read_csv(LABELED_CSV, dtype=str, keep_default_na=False).head(24)
    lab.loc[3, "price"] = "-1"  # one quarantined row, so the quarantine metadata travels too
    lab.to_csv(tmp_path / "pg.csv", index=False)
    store_batch(str(tmp_path / "pg.csv"), str(tmp_path / "storage" / "batches"), BATCH)
    pg_instance.add_dynamic_partitions(CATALOG_BATCHES, [BATCH])

    res = dg.materialize(assets, instance=pg_instance, resources=resources, partition_key=BATCH, selection=keys)
    assert res.success

    # --- read back with plain SQL ---
    runs = sql(postgres, "select run_id, status from runs")
    assert runs == [(res.run_id, "SUCCESS")]
    mats = sql(
        postgres,
        "select asset_key, partition from event_logs where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION' order by asset_key",
        res.run_id,
    )
    assert [(k, p) for k, p in mats] == sorted((k.to_string(), BATCH) for k in keys)
    parts = sql(postgres, "select partition from dynamic_partitions where partitions_def_name = %s", CATALOG_BATCHES)
    assert parts == [(BATCH,)]
    checks = sql(
        postgres,
        "select asset_key, check_name, execution_status from asset_check_executions where run_id = %s",
        res.run_id,
    )
    assert len(checks) == len(keys) and {c[2] for c in checks} == {"SUCCEEDED"}
    assert sql(
        postgres,
        "select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
        res.run_id,
        dg.DagsterEventType.RUN_SUCCESS.value,
    ) == [(1,)]

    # --- and through a fresh instance object, as the webserver would see it ---
    fresh = dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])
    try:
        ev = fresh.get_latest_materialization_event(dg.AssetKey("raw_catalog"))
        meta = ev.asset_materialization.metadata
        assert (meta["rows_in"].value, meta["rows"].value, meta["quarantined_rows"].value) == (24, 23, 1)
        assert fresh.get_materialized_partitions(dg.AssetKey(["embeddings", "text", TEXT_MODEL])) == {BATCH}
        n_ok = (
            fresh.get_latest_materialization_event(dg.AssetKey("product_images"))
            .asset_materialization.metadata["status_counts"]
            .value.get("ok", 0)
        )
        n_photos = (
            lab.drop(index=3)["image_link"]
            .str.rsplit("/", n=1)
            .str[-1]
            .isin({p.name for p in IMAGES.glob("*.jpg")})
            .sum()
        )
        assert n_ok == n_photos
    finally:
        fresh.dispose()
