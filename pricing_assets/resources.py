"""Resources: compute device, storage locations, image fetching and OCR settings.

Everything here is configuration; the work lives in ``pricing_assets.lib``.
"""

import os
from typing import Optional

import dagster as dg
from pydantic import Field

from pricing_assets.lib.model_gate import DEFAULT_MIN_ROWS, DEFAULT_TOLERANCE_SMAPE


def default_home() -> str:
    """The Dagster instance folder: ``$DAGSTER_HOME`` or ``./.dagster_home`` (absolute path)."""
    return os.path.abspath(os.environ.get("DAGSTER_HOME") or ".dagster_home")


def storage_options_for(base_path: str, endpoint_url: Optional[str]) -> dict:
    """fsspec ``storage_options`` for a base path: ``{}`` locally; for ``s3://`` the endpoint of any
    S3-compatible store (credentials come from the standard ``AWS_*`` environment variables)."""
    if base_path.startswith("s3://") and endpoint_url:
        return {"endpoint_url": endpoint_url}
    return {}


class DeviceResource(dg.ConfigurableResource):
    """Where heavy models run. ``auto`` picks CUDA when torch sees a GPU, else CPU."""

    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")

    def resolve(self) -> str:
        """Concrete torch device string (``"cuda"``/``"cuda:N"`` or ``"cpu"``).

        Raises:
            ValueError: if ``cuda`` is requested but no GPU is visible.
        """
        if self.device == "cpu":
            return "cpu"
        import torch  # lazy: keeps code-location load fast

        has_cuda = torch.cuda.is_available()
        if self.device == "auto":
            return "cuda" if has_cuda else "cpu"
        if self.device.startswith("cuda") and not has_cuda:
            raise ValueError(f"device={self.device!r} requested but torch sees no CUDA GPU")
        return self.device


class StorageResource(dg.ConfigurableResource):
    """One base path (local folder or ``s3://bucket/prefix``) for batches, images and caches."""

    base_path: str = Field(description="local folder or s3://bucket/prefix")
    endpoint_url: Optional[str] = Field(default=None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    model_cache_dir: str = Field(default="", description="local folder for exported ONNX models; default <base>/../model_cache")

    @property
    def storage_options(self) -> dict:
        return storage_options_for(self.base_path, self.endpoint_url)

    def path(self, *parts: str) -> str:
        """``base_path/part1/part2…`` as a string URL/path."""
        return "/".join([self.base_path.rstrip("/"), *[p.strip("/") for p in parts]])

    def batches_dir(self) -> str:
        return self.path("batches")

    def image_store(self) -> str:
        return self.path("images")

    def embedding_cache(self) -> str:
        return self.path("embedding_cache")

    def models_dir(self) -> str:
        """``<base>/models``: the promoted (champion) blend of the model gate."""
        return self.path("models")

    def local_model_cache(self) -> str:
        if self.model_cache_dir:
            return self.model_cache_dir
        if self.base_path.startswith("s3://"):
            return os.path.join(default_home(), "model_cache")
        return os.path.join(os.path.dirname(os.path.abspath(self.base_path)), "model_cache")


class ImageFetchResource(dg.ConfigurableResource):
    """How ``product_images`` finds photos: local mirror first, then the store, then HTTP(S)."""

    mirror_dir: Optional[str] = Field(default=None, description="folder of photos named by the link's basename")
    offline: bool = Field(default=False, description="never download; rows not in mirror/store are 'missing'")
    timeout_s: float = 10.0
    concurrency: int = 8
    retries: int = 3
    max_bytes: int = 10_000_000
    allow_private_hosts: bool = False
    host_failure_threshold: int = Field(
        default=3,
        description="consecutive connection failures (DNS, refused, reset, connect timeout) to one host after "
        "which its remaining links in the batch get 'host_unreachable' without a request; 0 disables",
    )


class OcrResource(dg.ConfigurableResource):
    """OCR backend for product photos: ``rapidocr`` (offline PP-OCR ONNX models) or ``paddleocr``."""

    backend: str = "rapidocr"
    enabled: bool = True
    max_error_share: float = Field(
        default=0.5,
        description="ocr_text fails (nothing stored) when more than this share of the photos it tried "
        "to read raised an error; a few bad photos only mark their rows 'error'",
    )
    min_images_for_error_share: int = Field(
        default=2,
        description="the error share is only judged once at least this many distinct photos were tried",
    )


class ModelGateResource(dg.ConfigurableResource):
    """The model gate on ``price_blend`` (``pricing_assets/lib/model_gate.py``): a retrain whose blend
    OOF SMAPE is worse than the promoted model's by more than ``tolerance_smape`` points, on the labeled
    rows both scored, is not promoted to ``price_predictions``."""

    tolerance_smape: float = Field(default=DEFAULT_TOLERANCE_SMAPE, ge=0, description="allowed OOF SMAPE increase, points (0-200 scale)")
    min_rows: int = Field(default=DEFAULT_MIN_ROWS, ge=1, description="fewest common labeled rows for a verdict (else the gate passes)")
