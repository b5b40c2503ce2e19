"""Tests for pricing_assets.lib.embeddings.cache: the content-hash vector cache (embed_with_cache)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pricing_assets.lib.embeddings.cache import CacheError, embed_with_cache
from pricing_assets.lib.embeddings.encoders import Encoder
from pricing_assets.lib.embeddings.registry import EmbeddingModelSpec

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "data" / "sample"


# --------------------------------------------------------------------------------------------
# Content-hash cache (fast fake encoder; one real-model round trip)
# --------------------------------------------------------------------------------------------


class FakeEncoder(Encoder):
    """Deterministic text encoder: vector derived from sha256 of the text; counts inputs seen."""

    def __init__(self, dim=8, name="fake"):
        super().__init__(
            EmbeddingModelSpec(name, "text", "hf_automodel", "x/y", dim, 16, max_tokens=8, pooling="mean"), "cpu"
        )
        self.seen: list[str] = []

    def _encode_batch(self, batch):
        self.seen += batch
        return np.stack(
            [
                np.frombuffer(hashlib.sha256(t.encode()).digest()[: 4 * self.spec.dim], dtype=np.uint8)[
                    : self.spec.dim
                ].astype(np.float32)
                + 1
                for t in batch
            ]
        )


def _rows(n, dup_every=0):
    texts = [f"product {i}" for i in range(n)]
    if dup_every:
        texts = [texts[i - i % dup_every] for i in range(n)]  # blocks of identical texts
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    return texts, keys


def _loader(texts, calls):
    def load(idx):
        calls.append(list(idx))
        return [texts[i] for i in idx]

    return load


def test_cache_second_call_computes_nothing(tmp_path):
    texts, keys = _rows(50)
    enc = FakeEncoder()
    calls = []
    v1, s1 = embed_with_cache(enc, keys, _loader(texts, calls), str(tmp_path), chunk_size=16)
    assert v1.shape == (50, 8) and v1.dtype == np.float32
    assert (s1["rows"], s1["unique_keys"], s1["cached"], s1["computed"], s1["shards_written"]) == (50, 50, 0, 50, 4)
    assert s1["seconds"] >= 0 and s1["rows_per_s"] > 0
    np.testing.assert_allclose(v1, enc.encode(texts), atol=1e-6)  # input order kept
    assert len(list((tmp_path / "fake").glob("shard-*.parquet"))) == 4

    calls.clear()
    v2, s2 = embed_with_cache(enc, keys, _loader(texts, calls), str(tmp_path), chunk_size=16)
    assert (s2["cached"], s2["computed"], s2["shards_written"]) == (50, 0, 0)
    assert calls == []  # cached rows never load their inputs
    np.testing.assert_array_equal(v1, v2)

    # incremental: 10 new rows (and a shuffled order) -> only 10 computed
    texts2, keys2 = _rows(60)
    order = np.random.default_rng(0).permutation(60)
    t3, k3 = [texts2[i] for i in order], [keys2[i] for i in order]
    enc.seen.clear()
    v3, s3 = embed_with_cache(enc, k3, _loader(t3, calls), str(tmp_path), chunk_size=16)
    assert (s3["cached"], s3["computed"]) == (50, 10)
    assert sorted(enc.seen) == sorted(texts2[50:])
    np.testing.assert_allclose(v3, enc.encode(t3), atol=1e-6)


def test_cache_duplicate_keys_computed_once(tmp_path):
    texts, keys = _rows(40, dup_every=4)  # 10 unique texts, 4 copies each
    enc = FakeEncoder()
    calls = []
    v, s = embed_with_cache(enc, keys, _loader(texts, calls), str(tmp_path), chunk_size=3)
    assert (s["rows"], s["unique_keys"], s["computed"], s["cached"]) == (40, 10, 10, 0)
    assert len(enc.seen) == 10 and len(set(enc.seen)) == 10
    assert sorted(i for c in calls for i in c) == list(range(0, 40, 4))  # first row of each key
    for i in range(40):
        np.testing.assert_array_equal(v[i], v[i - i % 4])


def test_cache_resumes_after_crash(tmp_path):
    texts, keys = _rows(100)
    enc = FakeEncoder()

    def crash_after_first_chunk(done, total):
        assert total == 100
        raise KeyboardInterrupt(f"killed after {done}")

    with pytest.raises(KeyboardInterrupt, match="killed after 32"):
        embed_with_cache(enc, keys, _loader(texts, []), str(tmp_path), chunk_size=32, progress=crash_after_first_chunk)
    assert len(list((tmp_path / "fake").glob("shard-*.parquet"))) == 1
    # a half-written temp file from a kill during a write is ignored
    (tmp_path / "fake" / ".tmp-deadbeef.parquet").write_bytes(b"PAR1 truncated")

    enc.seen.clear()
    seen_progress = []
    v, s = embed_with_cache(
        enc, keys, _loader(texts, []), str(tmp_path), chunk_size=32, progress=lambda d, t: seen_progress.append((d, t))
    )
    assert (s["cached"], s["computed"], s["shards_written"]) == (32, 68, 3)
    assert sorted(enc.seen) == sorted(texts[32:])
    assert seen_progress == [(32, 68), (64, 68), (68, 68)]
    np.testing.assert_allclose(v, FakeEncoder().encode(texts), atol=1e-6)


def test_cache_tolerates_a_key_stored_twice(tmp_path):
    """Two processes racing on one partition may both write a chunk; readers keep one copy."""
    texts, keys = _rows(10)
    enc = FakeEncoder()
    v1, _ = embed_with_cache(enc, keys, _loader(texts, []), str(tmp_path), chunk_size=4)
    shard = sorted((tmp_path / "fake").glob("shard-*.parquet"))[0]
    (tmp_path / "fake" / "shard-zzcopy.parquet").write_bytes(shard.read_bytes())
    v2, s2 = embed_with_cache(enc, keys, _loader(texts, []), str(tmp_path))
    assert (s2["cached"], s2["computed"]) == (10, 0)
    np.testing.assert_array_equal(v1, v2)


def test_cache_errors_name_the_problem(tmp_path):
    texts, keys = _rows(5)
    enc = FakeEncoder()
    with pytest.raises(ValueError, match=r"keys\[2\] must be a non-empty string"):
        embed_with_cache(enc, keys[:2] + [""] + keys[3:], _loader(texts, []), str(tmp_path))
    with pytest.raises(ValueError, match=r"load_inputs returned 4 inputs for 5 rows"):
        embed_with_cache(enc, keys, lambda idx: texts[:4], str(tmp_path))
    with pytest.raises(ValueError, match="chunk_size"):
        embed_with_cache(enc, keys, _loader(texts, []), str(tmp_path), chunk_size=0)
    # a cache written by a model of another width is refused, not silently mixed
    embed_with_cache(FakeEncoder(dim=4), keys, _loader(texts, []), str(tmp_path))
    with pytest.raises(CacheError, match=r"fake.*expected 8"):
        embed_with_cache(enc, keys, _loader(texts, []), str(tmp_path))
    # models are namespaced: another name has its own cache
    _, s = embed_with_cache(FakeEncoder(name="fake_b"), keys, _loader(texts, []), str(tmp_path))
    assert s["computed"] == 5


class ZeroEncoder(FakeEncoder):
    """Returns the zero vector for inputs containing "blank" (a backend giving no signal)."""

    def _encode_batch(self, batch):
        out = np.asarray(super()._encode_batch(batch))
        out[[i for i, t in enumerate(batch) if "blank" in t]] = 0.0
        return out


def test_all_zero_embeddings_are_refused_not_normalised_away(tmp_path):
    enc = ZeroEncoder()
    with pytest.raises(ValueError, match=r"fake: all-zero embedding for 2 of 4 input rows \[1, 3\]"):
        enc.encode(["a", "blank 1", "b", "blank 2"])
    texts = ["a", "b", "blank"]
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    with pytest.raises(ValueError, match="all-zero embedding"):
        embed_with_cache(enc, keys, _loader(texts, []), str(tmp_path))
    assert not list((tmp_path / "fake").glob("shard-*.parquet"))  # nothing cached


def test_unopenable_photo_fails_the_run_and_keeps_earlier_chunks(tmp_path):
    """No per-row tolerance: a stored photo that cannot be opened (deleted after the image stage)
    raises out of embed_with_cache; chunks written before it stay cached, its chunk is not."""
    from pricing_assets.lib.images.decode import open_image_rgb

    spec = EmbeddingModelSpec("img_fake", "image", "effnet_lite_onnx", "x", 4, 4, image_size=8)

    class MeanColour(Encoder):
        def _encode_batch(self, batch):
            return np.stack([np.r_[np.asarray(im, dtype=np.float32).mean((0, 1)) + 1, 1.0] for im in batch])

    paths = []
    for i in range(6):
        paths.append(tmp_path / f"p{i}.png")
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(paths[-1])
    paths[4].unlink()
    keys = [f"k{i}" for i in range(6)]
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="p4.png"):
        embed_with_cache(
            MeanColour(spec, "cpu"),
            keys,
            lambda idx: [open_image_rgb(str(paths[i])) for i in idx],
            str(cache),
            chunk_size=2,
        )
    assert len(list((cache / "img_fake").glob("shard-*.parquet"))) == 2  # rows 0-3 kept, rows 4-5 not

    class Crashing(MeanColour):
        def _encode_batch(self, batch):
            raise RuntimeError("CUDA error: device-side assert triggered")

    with pytest.raises(RuntimeError, match="device-side assert"):
        embed_with_cache(
            Crashing(spec, "cpu"),
            keys[:2] + ["k9"],
            lambda idx: [open_image_rgb(str(paths[0]))] * len(idx),
            str(cache),
            chunk_size=2,
        )


def test_cache_with_real_minilm_and_catalog_hashes(minilm, tmp_path):
    from pricing_assets.lib.catalog.parsing import content_hash

    texts = pd.read_csv(SAMPLE_DIR / "amazon_pricing_sample.csv", nrows=12)["catalog_content"].tolist()
    texts += texts[:4]  # 16 rows, 12 unique
    keys = [content_hash(t) for t in texts]
    v, s = embed_with_cache(minilm, keys, lambda idx: [texts[i] for i in idx], str(tmp_path), chunk_size=5)
    assert (s["unique_keys"], s["computed"], s["shards_written"]) == (12, 12, 3)
    np.testing.assert_allclose(v, minilm.encode(texts), atol=1e-5)
    v2, s2 = embed_with_cache(minilm, keys, lambda idx: pytest.fail("must not load"), str(tmp_path))
    assert s2["computed"] == 0
    np.testing.assert_array_equal(v, v2)


def test_cache_on_s3(tmp_path):
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = dict(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        boto3.client("s3", endpoint_url=endpoint, **env).create_bucket(Bucket="emb")
        opts = {
            "key": "test",
            "secret": "test",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        texts, keys = _rows(20)
        enc = FakeEncoder()
        v1, s1 = embed_with_cache(enc, keys, _loader(texts, []), "s3://emb/cache", chunk_size=8, storage_options=opts)
        v2, s2 = embed_with_cache(enc, keys, _loader(texts, []), "s3://emb/cache", chunk_size=8, storage_options=opts)
        assert (s1["computed"], s1["shards_written"], s2["computed"], s2["cached"]) == (20, 3, 0, 20)
        np.testing.assert_array_equal(v1, v2)
    finally:
        server.stop()
