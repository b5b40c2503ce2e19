"""A deployment that switches its text encoder (``PRICING_EMBEDDING_MODELS``) gets the new encoder's
asset, in its own cache namespace, for every stored batch; ``pricing materialize`` builds only that
asset for them (``instance_state.batch_selection``), not the photos and OCR again."""

import dagster as dg
import numpy as np
import pandas as pd

from pricing_assets.definitions import build_defs
from pricing_assets.instance_state import batch_selection, missing_assets, missing_batches
from pricing_assets.lib.catalog.batches import store_batch
from pricing_assets.lib.embeddings.registry import load_registry, select_models
from pricing_assets.partitions import CATALOG_BATCHES
from pricing_assets.resources import OcrResource
from pricing_assets.settings import load_settings
from pricing_tests.helpers import IMAGES, UNLABELED_CSV

BATCH = "switch"
BEFORE = ("minilm_l6_onnx_int8_t64", "effnet_lite0")
AFTER = ("minilm_l6", "effnet_lite0")


def _defs(tmp, names):
    env = {
        "DAGSTER_HOME": str(tmp / "home"),
        "PRICING_STORAGE": str(tmp / "storage"),
        "PRICING_IMAGE_MIRROR": str(IMAGES),
        "PRICING_IMAGES_OFFLINE": "1",
        "PRICING_EMBEDDING_MODELS": ",".join(names),
    }
    settings = load_settings(env)
    base = build_defs(settings, registry=select_models(load_registry(), settings.embedding_models))
    return base, {**base.resources, "ocr": OcrResource(enabled=False)}


def _run(defs, resources, instance, selection):
    res = dg.materialize(
        list(defs.assets), instance=instance, resources=resources, partition_key=BATCH, selection=selection
    )
    assert res.success
    return {e.asset_key.to_user_string() for e in res.get_asset_materialization_events()}


def test_switching_the_text_encoder_embeds_the_stored_batches_with_it_only(tmp_path):
    rows = pd.read_csv(UNLABELED_CSV, dtype={"sample_id": str}).head(12)
    rows.to_csv(tmp_path / "b.csv", index=False)
    store_batch(str(tmp_path / "b.csv"), str(tmp_path / "storage" / "batches"), BATCH)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CATALOG_BATCHES, [BATCH])

    before, resources = _defs(tmp_path, BEFORE)
    first = _run(before, resources, instance, batch_selection(instance, before, BATCH))
    assert "embeddings/text/minilm_l6_onnx_int8_t64" in first and "ocr_text" in first and "catalog_items" in first
    assert missing_batches(instance, before) == []

    defs, resources = _defs(tmp_path, AFTER)
    assert missing_batches(instance, defs) == [BATCH]
    assert [k.to_user_string() for k in missing_assets(instance, defs, BATCH)] == ["embeddings/text/minilm_l6"]
    second = _run(defs, resources, instance, batch_selection(instance, defs, BATCH))
    assert second == {"embeddings/text/minilm_l6"}  # photos, OCR and the image vectors are not redone
    assert missing_batches(instance, defs) == []

    old = before.load_asset_value(
        ["embeddings", "text", "minilm_l6_onnx_int8_t64"], instance=instance, partition_key=BATCH
    )
    new = defs.load_asset_value(["embeddings", "text", "minilm_l6"], instance=instance, partition_key=BATCH)
    assert len(new) == len(old) == len(rows)
    a = np.stack(old.sort_values("sample_id")["embedding"].to_numpy())
    b = np.stack(new.sort_values("sample_id")["embedding"].to_numpy())
    cos = (a * b).sum(axis=1)
    assert a.shape == b.shape == (12, 384) and not np.allclose(a, b)  # two kinds of vectors, kept apart
    assert cos.min() > 0.5  # yet the same model's view of the same texts
    caches = {p.name for p in (tmp_path / "storage" / "embedding_cache").iterdir()}
    assert {"minilm_l6", "minilm_l6_onnx_int8_t64"} <= caches  # one cache namespace per variant
