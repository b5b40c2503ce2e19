"""Faults: a materialisation SIGKILLed in the middle of an embedding partition, then re-run, keeps the
chunks it had stored; re-running every asset on the same inputs gives byte-identical outputs.

The killed run is a real child process (no cleanup, no ``finally``) sharing a SQLite instance and
local storage with the test; the child slows itself down after each stored chunk so the kill lands
between chunks 2 and 5 of 5. Real catalog rows go through the real assets, cache and IO managers; only
the model is a stub (:class:`HashEncoder`, deterministic vectors from sha256 of the text) so the test
does not spend its time importing torch and loading weights twice on a shared 2-core machine. The
real encoders are tested in ``pricing_tests/lib/embeddings/test_encoders.py``; resume and determinism do not
depend on which encoder produced the vectors (the cache stores float32 vectors keyed by content hash).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from pricing_tests.helpers import REPO, TEXT_MODEL, UNLABELED_CSV

N_ROWS = 40
CHUNK = 8
MODEL = TEXT_MODEL
EMB_KEY = f"embeddings/text/{MODEL}"
BATCH = "resume"


def build(root: Path, instance_yaml: str = "telemetry:\n  enabled: false\n", with_products: bool = False):
    """(assets, resources, instance) over ``root``: SQLite instance at ``root/home`` (its
    ``dagster.yaml`` = ``instance_yaml``), local storage, images offline without mirror (every row
    'missing'), OCR disabled, one text model; ``with_products`` adds the ``products`` asset."""
    from pricing_assets.defs import images, ingest, training
    from pricing_assets.defs.embeddings import build_text_embedding_asset
    from pricing_assets.defs.resources import build_resources
    from pricing_assets.lib.embeddings.registry import load_registry
    from pricing_assets.resources import ImageFetchResource, OcrResource
    from pricing_assets.settings import Settings

    settings = Settings(
        home=str(root / "home"),
        storage=str(root / "storage"),
        s3_endpoint=None,
        device="cpu",
        image_mirror=None,
        images_offline=True,
        ocr_backend="rapidocr",
        inbox=str(root / "inbox"),
    )
    resources = build_resources(settings)
    resources["image_fetch"] = ImageFetchResource(mirror_dir=None, offline=True)
    resources["ocr"] = OcrResource(enabled=False)
    assets = [
        ingest.raw_catalog,
        ingest.catalog_items,
        images.product_images,
        images.ocr_text,
        build_text_embedding_asset(load_registry()[MODEL]),
    ] + ([training.build_products_asset({MODEL: load_registry()[MODEL]})] if with_products else [])
    (root / "home").mkdir(parents=True, exist_ok=True)
    (root / "home" / "dagster.yaml").write_text(instance_yaml)
    instance = dg.DagsterInstance.from_config(str(root / "home"))
    return assets, resources, instance


def _hash_encoder_class():
    from pricing_assets.lib.embeddings.encoders import Encoder

    class HashEncoder(Encoder):
        """Stub text encoder: (b, dim) float32 from sha256(text) bytes (the base class L2-normalises)."""

        def _encode_batch(self, batch):
            import numpy as np

            out = np.empty((len(batch), self.spec.dim), np.float32)
            for i, t in enumerate(batch):
                seed = int.from_bytes(hashlib.sha256(t.encode("utf-8")).digest()[:8], "little")
                out[i] = np.random.default_rng(seed).standard_normal(self.spec.dim)
            return out

    return HashEncoder


def small_chunks(monkeypatch_target, pause_s: float = 0.0) -> None:
    """Make the embedding asset store chunks of ``CHUNK`` rows (the asset uses the default 256),
    optionally sleeping ``pause_s`` after each stored chunk; encode with the stub encoder."""
    import pricing_assets.lib.embeddings.cache as cache
    import pricing_assets.lib.embeddings.encoders as encoders

    # patched where the embedding assets look them up at run time (their lazy imports)
    encoder_cls = _hash_encoder_class()
    monkeypatch_target(
        encoders, "load_encoder", lambda spec, device="cpu", cache_dir=None, **kw: encoder_cls(spec, device)
    )

    real = cache.embed_with_cache

    def chunked(encoder, keys, load_inputs, cache_dir, chunk_size=256, progress=None, **kw):
        def slow_progress(done, total):
            if progress:
                progress(done, total)
            print(f"CHUNK_STORED {done}/{total}", flush=True)
            time.sleep(pause_s)

        return real(encoder, keys, load_inputs, cache_dir, chunk_size=CHUNK, progress=slow_progress, **kw)

    monkeypatch_target(cache, "embed_with_cache", chunked)


def all_keys(assets) -> list:
    return [k for a in assets for k in a.keys]


def run(assets, resources, instance, select):
    return dg.materialize(
        assets, instance=instance, resources=resources, partition_key=BATCH, selection=select, raise_on_error=False
    )


def child_main(root: str) -> None:
    """Body of the child process that gets SIGKILLed: ingest + embed with 2 s after each chunk."""
    assets, resources, instance = build(Path(root))
    small_chunks(setattr, pause_s=2.0)
    res = run(assets, resources, instance, all_keys(assets))
    print("CHILD_FINISHED", res.success, flush=True)


def shards(root: Path) -> list[Path]:
    return sorted((root / "storage" / "embedding_cache" / MODEL).glob("shard-*.parquet"))


def kill_after_shards(child: subprocess.Popen, root: Path, n: int, limit_s: float) -> str:
    """SIGKILL ``child`` once ``n`` embedding-cache shards are on disk under ``root``; its output.

    Raises:
        AssertionError: the child exited first, or ``n`` shards did not appear within ``limit_s``.
    """
    deadline = time.monotonic() + limit_s
    try:
        while len(shards(root)) < n:
            assert child.poll() is None, f"child exited early:\n{child.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, f"no {n} shards within {limit_s:.0f} s"
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        out = child.communicate(timeout=30)[0]
    return out


def stored_hashes(root: Path) -> dict[str, str]:
    """sha256 of every stored asset file of the batch (the parquet bytes as written)."""
    base = root / "storage" / "assets"
    return {
        str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob(f"{BATCH}.parquet"))
    }


def emb_meta(result) -> dict:
    mats = [m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == EMB_KEY]
    assert len(mats) == 1
    return {k: v.value for k, v in mats[0].materialization.metadata.items()}


def test_killed_embedding_run_resumes_without_redoing_chunks_and_reruns_are_identical(tmp_path, monkeypatch):
    from pricing_assets.lib.catalog.batches import store_batch
    from pricing_assets.partitions import CATALOG_BATCHES

    # 40 real rows with distinct texts -> 5 chunks of 8
    df = pd.read_csv(UNLABELED_CSV, dtype=str, keep_default_na=False)
    df = df.drop_duplicates("catalog_content").head(N_ROWS)
    df.to_csv(tmp_path / "batch.csv", index=False)
    store_batch(str(tmp_path / "batch.csv"), str(tmp_path / "storage" / "batches"), BATCH)
    assets, resources, instance = build(tmp_path)
    instance.add_dynamic_partitions(CATALOG_BATCHES, [BATCH])

    # 1. the child process: killed with SIGKILL once 2 shards are on disk
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DAGSTER_HOME": str(tmp_path / "home")}
    code = f"from pricing_tests.test_resume import child_main; child_main({str(tmp_path)!r})"
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = kill_after_shards(child, tmp_path, 2, limit_s=120)
    assert child.returncode == -signal.SIGKILL
    assert "CHILD_FINISHED" not in out
    assert len(shards(tmp_path)) == 2, "the kill must land between chunks"
    assert instance.get_latest_materialization_event(dg.AssetKey(["embeddings", "text", MODEL])) is None
    ingest_done = instance.get_latest_materialization_event(dg.AssetKey("catalog_items"))
    assert ingest_done is not None, "upstream assets of the killed run stay stored"

    # 2. re-run only the embedding asset: the 16 stored rows are read back, 24 computed
    small_chunks(monkeypatch.setattr)
    res = run(assets, resources, instance, [dg.AssetKey(["embeddings", "text", MODEL])])
    assert res.success
    meta = emb_meta(res)
    assert (meta["rows"], meta["unique_keys"]) == (N_ROWS, N_ROWS)
    assert (meta["cached"], meta["computed"], meta["shards_written"]) == (2 * CHUNK, N_ROWS - 2 * CHUNK, 3)
    assert len(shards(tmp_path)) == 5
    first = stored_hashes(tmp_path)
    assert len(first) == 6, (
        first
    )  # raw_catalog, catalog_quarantine, catalog_items, product_images, ocr_text, embeddings
    vectors = res.output_for_node(f"embeddings__text__{MODEL}")

    # 3. re-run everything on the same inputs: nothing recomputed, every stored file byte-identical
    res = run(assets, resources, instance, all_keys(assets))
    assert res.success
    meta = emb_meta(res)
    assert (meta["cached"], meta["computed"], meta["shards_written"]) == (N_ROWS, 0, 0)
    assert stored_hashes(tmp_path) == first
    again = res.output_for_node(f"embeddings__text__{MODEL}")
    pd.testing.assert_frame_equal(again.drop(columns="embedding"), vectors.drop(columns="embedding"))
    assert all((a == b).all() for a, b in zip(again["embedding"], vectors["embedding"]))

    # the interrupted run is visible as not successful in the run history
    statuses = [r.status for r in instance.get_runs()]
    assert statuses.count(dg.DagsterRunStatus.SUCCESS) == 2 and len(statuses) == 3
