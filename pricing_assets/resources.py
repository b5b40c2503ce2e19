"""Resources: compute device, storage locations, image fetching and OCR settings.

Everything here is configuration; the work lives in ``pricing_assets.lib``.
"""

from typing import Optional

import dagster as dg
from pydantic import Field

from pricing_assets.lib.images.fetch import FetchConfig
from pricing_assets.lib.images.ocr import DEFAULT_DET_SIDE, DEFAULT_MAX_ERROR_SHARE, DEFAULT_MIN_IMAGES
from pricing_assets.lib.models.cross_validation import DEFAULT_N_FOLDS, DEFAULT_SEED
from pricing_assets.lib.models.model_gate import DEFAULT_MIN_ROWS, DEFAULT_TOLERANCE_SMAPE
from pricing_assets.lib.serving.drift import DriftThresholds


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
            ValueError: ``cuda`` is requested but no GPU is visible, or the value is not
                cpu / cuda / cuda:N / auto (``lib.embeddings.devices.resolve_device``).
        """
        from pricing_assets.lib.embeddings.devices import resolve_device  # lazy: keeps code-location load fast

        return resolve_device(self.device)


class StorageResource(dg.ConfigurableResource):
    """One base path (local folder or ``s3://bucket/prefix``) for batches, images and caches."""

    base_path: str = Field(description="local folder or s3://bucket/prefix")
    endpoint_url: Optional[str] = Field(default=None, description="S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    model_cache_dir: str = Field(
        default="",
        description="local folder for exported ONNX models; default $PRICING_MODEL_CACHE or ~/.cache/pricing_assets",
    )

    @property
    def storage_options(self) -> dict:
        """fsspec options for ``base_path`` (``{}`` locally, the endpoint for ``s3://``)."""
        return storage_options_for(self.base_path, self.endpoint_url)

    def path(self, *parts: str) -> str:
        """``base_path/part1/part2…`` as a string URL/path."""
        return "/".join([self.base_path.rstrip("/"), *[p.strip("/") for p in parts]])

    def batches_dir(self) -> str:
        """``<base>/batches``: one folder per ingested batch holding its catalog file."""
        return self.path("batches")

    def image_store(self) -> str:
        """``<base>/images``: the content-addressed photo store (``lib.images.fetch``)."""
        return self.path("images")

    def embedding_cache(self) -> str:
        """``<base>/embedding_cache``: parquet shards of vectors by content hash, one folder per model."""
        return self.path("embedding_cache")

    def local_model_cache(self) -> str:
        """Local folder for models exported at run time: ``model_cache_dir``, else
        ``settings.model_cache_dir()`` (``$PRICING_MODEL_CACHE`` or ``~/.cache/pricing_assets``)."""
        from pricing_assets.settings import model_cache_dir as from_environment

        return self.model_cache_dir or from_environment()


class ImageFetchResource(dg.ConfigurableResource):
    """How ``product_images`` finds photos: local mirror first, then the store, then HTTP(S)."""

    mirror_dir: Optional[str] = Field(default=None, description="folder of photos named by the link's basename")
    offline: bool = Field(default=False, description="never download; rows not in mirror/store are 'missing'")
    # defaults: lib.images.fetch.FetchConfig's (one source)
    timeout_s: float = Field(default=FetchConfig.timeout_s, description="per-request timeout, s")
    concurrency: int = Field(default=FetchConfig.concurrency, description="simultaneous HTTP connections")
    retries: int = Field(default=FetchConfig.retries, description="extra attempts after the first on transient errors")
    max_bytes: int = Field(default=FetchConfig.max_bytes, description="largest accepted photo, bytes")
    allow_private_hosts: bool = Field(
        default=FetchConfig.allow_private_hosts, description="allow loopback/private hosts (tests, intranets)"
    )
    host_failure_threshold: int = Field(
        default=FetchConfig.host_failure_threshold,
        description="consecutive connection failures (DNS, refused, reset, connect timeout) to one host after "
        "which its remaining links in the batch get 'host_unreachable' without a request; 0 disables",
    )


class OcrResource(dg.ConfigurableResource):
    """OCR backend for product photos: ``rapidocr`` (offline PP-OCR ONNX models) or ``paddleocr``."""

    backend: str = "rapidocr"
    enabled: bool = True
    # defaults: lib.images.ocr.check_error_share's (one source)
    max_error_share: float = Field(
        default=DEFAULT_MAX_ERROR_SHARE,
        description="ocr_text fails (nothing stored) when more than this share of the photos it tried "
        "to read raised an error; a few bad photos only mark their rows 'error'",
    )
    min_images_for_error_share: int = Field(
        default=DEFAULT_MIN_IMAGES,
        description="the error share is only judged once at least this many distinct photos were tried",
    )
    det_limit_side_len: int = Field(
        default=DEFAULT_DET_SIDE,
        ge=32,
        le=4096,
        description="RapidOCR detector input size (longest side, px): the OCR cost control; smaller is "
        "faster and reads less small print (measured per size: benchmarks/bench_ocr.py)",
    )


class ModelGateResource(dg.ConfigurableResource):
    """The model gate on ``price_blend`` (``pricing_assets/lib/models/model_gate.py``): a retrain whose blend
    OOF SMAPE is worse than the promoted model's by more than ``tolerance_smape`` points, on the labeled
    rows both scored, is not promoted to ``price_predictions``."""

    tolerance_smape: float = Field(
        default=DEFAULT_TOLERANCE_SMAPE, ge=0, description="allowed OOF SMAPE increase, points (0-200 scale)"
    )
    min_rows: int = Field(
        default=DEFAULT_MIN_ROWS, ge=1, description="fewest common labeled rows for a verdict (else the gate passes)"
    )


_DRIFT = DriftThresholds()


class DriftResource(dg.ConfigurableResource):
    """The thresholds of the drift checks on ``batch_predictions`` (``pricing_assets/defs/drift.py``):
    a measure beyond its threshold is a non-blocking WARN, never a stop. Defaults and the reasons for
    them: ``pricing_assets/lib/serving/drift.py`` (``DriftThresholds``)."""

    max_share_change: float = Field(
        default=_DRIFT.max_share_change,
        gt=0,
        le=1,
        description="largest accepted absolute change of the photo / OCR text / parsed quantity share (0-1)",
    )
    max_psi: float = Field(
        default=_DRIFT.max_psi, gt=0, description="largest accepted PSI of the category mix and the predicted price"
    )
    max_ks: float = Field(
        default=_DRIFT.max_ks, gt=0, le=1, description="largest accepted KS statistic of the text length (0-1)"
    )
    min_rows: int = Field(
        default=_DRIFT.min_rows, ge=1, description="fewer rows in the batch or training set: not compared, passes"
    )
    psi_bins: int = Field(default=_DRIFT.psi_bins, ge=2, description="quantile bins of a numeric PSI (training)")
    psi_epsilon: float = Field(default=_DRIFT.psi_epsilon, gt=0, lt=0.01, description="floor of a bin share in the PSI")

    def thresholds(self) -> DriftThresholds:
        """These fields as the lib's ``DriftThresholds`` (validated again there)."""
        return DriftThresholds(
            max_share_change=self.max_share_change,
            max_psi=self.max_psi,
            max_ks=self.max_ks,
            min_rows=self.min_rows,
            psi_bins=self.psi_bins,
            psi_epsilon=self.psi_epsilon,
        )


class CrossValidationResource(dg.ConfigurableResource):
    """The one cross-validation setting that every training asset reads (``products`` assigns the
    folds, ``product_index``/``knn_features`` and ``feature_matrix`` compute out-of-fold features with
    them), so no two assets of a run can disagree on it."""

    n_folds: int = Field(
        default=DEFAULT_N_FOLDS, ge=2, description="grouped K folds (rows sharing an image link share a fold)"
    )
    seed: int = Field(default=DEFAULT_SEED, description="seed of the fold assignment and of the embedding PCAs")
