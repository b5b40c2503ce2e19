"""Devices: which device an encoder runs on (:func:`resolve_device`: cpu / cuda / cuda:N / auto) and
the CUDA index a resolved device names (:func:`cuda_index`, for onnxruntime and the OCR backends).

Pure, Dagster-free. torch is imported inside :func:`resolve_device` so that importing this module
stays cheap.
"""

import re

__all__ = ["resolve_device", "cuda_index"]


def cuda_index(device: str) -> int | None:
    """The CUDA device index a resolved device names: None for ``"cpu"``, 0 for ``"cuda"``, N for
    ``"cuda:N"`` (what onnxruntime's CUDAExecutionProvider takes as ``device_id``).

    Raises:
        ValueError: ``device`` is not cpu / cuda / cuda:N (``"auto"`` must be resolved first).
    """
    if device == "cpu":
        return None
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not m:
        raise ValueError(f"resolved device must be 'cpu', 'cuda' or 'cuda:<i>', got {device!r}")
    return int(m.group(1) or 0)


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
