"""Incremental batches on real rows: a third batch re-embeds and downloads only its new or changed rows
(counted from the assets' materialisation metadata), and ``products`` keeps the latest copy of a
repeated ``sample_id``.

Setup: batch ``b1`` and ``b2`` of 30 labeled rows each, then ``b3`` of 10 rows: 8 new, one copy of a
``b1`` row (same content and photo link, new price) and one ``b2`` row whose text changed. Photos
come from a local HTTP server (3 links in ``b1``, one new link in ``b3``). Only the text encoder is
enabled (the image encoder's own incremental behaviour is the same cache, tested in ``test_s3``).
"""

import dagster as dg
import pandas as pd
import pytest

from pricing_assets.automation import PER_ROW_GROUPS
from pricing_assets.definitions import build_defs
from pricing_assets.lib.embeddings.registry import load_registry
from pricing_assets.partitions import CATALOG_BATCHES
from pricing_assets.resources import ImageFetchResource, OcrResource
from pricing_assets.settings import load_settings
from pricing_tests.helpers import IMAGES, LABELED_CSV, TEXT_KEY, TEXT_MODEL
from pricing_tests.http_server import Reply, ScriptedServer

TEXT = TEXT_KEY


def meta(instance, key: str, batch: str | None = None, first: bool = False) -> dict:
    """Metadata values of the latest (``first``: the earliest) materialisation of ``key`` (partition ``batch``)."""
    flt = dg.AssetRecordsFilter(asset_key=dg.AssetKey(key.split("/")), asset_partitions=[batch] if batch else None)
    (rec,) = instance.fetch_materializations(flt, limit=1, ascending=first).records
    return {k: v.value for k, v in rec.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("incremental")
    photos = sorted(IMAGES.glob("*.jpg"))[:4]
    rows = pd.read_csv(LABELED_CSV, dtype={"sample_id": str}).head(70).reset_index(drop=True)
    rows["image_link"] = ""
    with ScriptedServer() as srv:
        links = [srv.route(f"/img/{p.name}", Reply(body=p.read_bytes())) for p in photos]
        rows.loc[[0, 1, 2], "image_link"] = links[:3]
        rows.loc[60, "image_link"] = links[3]
        b1, b2 = rows.iloc[0:30].copy(), rows.iloc[30:60].copy()
        repeat = rows.iloc[[1]].assign(price=rows.loc[1, "price"] + 1.0)  # same content and link, new price
        changed = rows.iloc[[35]].copy()
        changed["catalog_content"] = changed["catalog_content"].str.replace(
            "Item Name: ", "Item Name: NEW 2-PACK ", n=1
        )
        assert (changed["catalog_content"] != rows.loc[[35], "catalog_content"]).all()
        b3 = pd.concat([rows.iloc[60:68], repeat, changed], ignore_index=True)

        storage = tmp / "storage"
        settings = load_settings({"DAGSTER_HOME": str(tmp / "home"), "PRICING_STORAGE": str(storage)})
        registry = {k: v for k, v in load_registry().items() if k == TEXT_MODEL}
        base = build_defs(settings, registry=registry)
        resources = {
            **base.resources,
            "ocr": OcrResource(enabled=False),
            "image_fetch": ImageFetchResource(mirror_dir=None, offline=False, allow_private_hosts=True, retries=0),
        }
        assets = list(base.assets)
        instance = dg.DagsterInstance.ephemeral()
        from pricing_assets.lib.catalog.batches import store_batch

        for name, df in (("b1", b1), ("b2", b2), ("b3", b3)):
            src = tmp / f"{name}.csv"
            df.to_csv(src, index=False)
            store_batch(str(src), str(storage / "batches"), name)
            instance.add_dynamic_partitions(CATALOG_BATCHES, [name])
            res = dg.materialize(
                assets,
                instance=instance,
                resources=resources,
                partition_key=name,
                selection=dg.AssetSelection.groups(*PER_ROW_GROUPS),
            )
            assert res.success, name
        hits_after_b3 = dict(srv.hits)
        rerun = dg.materialize(
            assets,
            instance=instance,
            resources=resources,
            partition_key="b3",
            selection=dg.AssetSelection.groups(*PER_ROW_GROUPS),
        )
        assert rerun.success
        products = dg.materialize(
            assets, instance=instance, resources=resources, selection=dg.AssetSelection.assets("products")
        )
        assert products.success
        hits_end = dict(srv.hits)
    return {
        "instance": instance,
        "rows": rows,
        "b3": b3,
        "links": links,
        "hits_after_b3": hits_after_b3,
        "hits_end": hits_end,
        "products": products.output_for_node("products", "products"),
    }


def test_first_batches_embed_every_distinct_text(run):
    for b in ("b1", "b2"):
        m = meta(run["instance"], TEXT, b)
        assert (m["rows"], m["computed"], m["cached"]) == (30, 30, 0), b


def test_third_batch_embeds_only_new_and_changed_rows(run):
    m = meta(run["instance"], TEXT, "b3", first=True)
    assert m["rows"] == 10
    assert m["computed"] == 9  # 8 new rows + the row whose text changed
    assert m["cached"] == 1  # the unchanged copy of a b1 row


def test_third_batch_downloads_only_its_new_photo(run):
    m = meta(run["instance"], "product_images", "b3", first=True)
    assert m["downloaded"] == 1 and m["http_requests"] == 1
    assert m["from_store"] == 1  # the repeated b1 link comes from the content-addressed store
    assert m["status_counts"]["ok"] == 2
    path = lambda link: "/" + link.split("/", 3)[3]  # noqa: E731
    assert run["hits_after_b3"] == {path(u): 1 for u in run["links"]}  # every photo fetched once over HTTP


def test_rerun_of_a_batch_computes_and_downloads_nothing(run):
    m = meta(run["instance"], TEXT, "b3")  # latest materialisation of b3 is the re-run
    img = meta(run["instance"], "product_images", "b3")
    assert (m["computed"], m["cached"]) == (0, 10)
    assert (img["downloaded"], img["http_requests"]) == (0, 0)
    assert run["hits_end"] == run["hits_after_b3"]


def test_products_latest_batch_wins(run):
    p, rows = run["products"], run["rows"]
    assert len(p) == 30 + 30 + 10 - 2
    assert p["sample_id"].is_unique
    m = meta(run["instance"], "products")
    assert m["replaced_by_later_batch"] == 2
    rep = p.set_index("sample_id").loc[rows.loc[1, "sample_id"]]
    assert rep["batch"] == "b3" and rep["price"] == pytest.approx(rows.loc[1, "price"] + 1.0)
    assert rep["status"] == "ok"
    ch = p.set_index("sample_id").loc[rows.loc[35, "sample_id"]]
    assert ch["batch"] == "b3" and ch["item_name"].startswith("NEW 2-PACK")
    assert list(p["batch"].value_counts().sort_index()) == [29, 29, 10]
