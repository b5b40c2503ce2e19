"""Resources, IO managers and the executor of the code location, built from the settings
(``pricing_assets/settings.py``: one storage base path for everything)."""

import dagster as dg

from pricing_assets.io_managers import PricingIOManager
from pricing_assets.resources import (
    CrossValidationResource,
    DeviceResource,
    DriftResource,
    ImageFetchResource,
    ModelGateResource,
    OcrResource,
    StorageResource,
)
from pricing_assets.settings import Settings, current_settings

#: The IO managers by resource key; each stores under ``<storage>/assets`` in its own format.
IO_MANAGER_KINDS = {
    "io_manager": "pickle",
    "parquet_io_manager": "parquet",
    "served_log_io_manager": "served_log",
    "faiss_io_manager": "faiss",
    "lightgbm_io_manager": "lightgbm",
}


def build_resources(s: Settings) -> dict:
    """Resources and IO managers for the settings ``s``, by resource key (``device``, ``storage``,
    ``image_fetch``, ``ocr``, ``model_gate``, ``cv``, ``drift`` and the keys of :data:`IO_MANAGER_KINDS`)."""
    assets_base = f"{s.storage.rstrip('/')}/assets"
    io = {
        key: PricingIOManager(base_path=assets_base, kind=kind, endpoint_url=s.s3_endpoint)
        for key, kind in IO_MANAGER_KINDS.items()
    }
    return {
        **io,
        "device": DeviceResource(device=s.device),
        "storage": StorageResource(base_path=s.storage, endpoint_url=s.s3_endpoint, model_cache_dir=s.model_cache),
        "image_fetch": ImageFetchResource(mirror_dir=s.image_mirror, offline=s.images_offline),
        "ocr": OcrResource(backend=s.ocr_backend),
        "model_gate": ModelGateResource(tolerance_smape=s.gate_tolerance_smape),
        "cv": CrossValidationResource(),
        "drift": DriftResource(),  # the drift checks' thresholds (defs/drift.py)
    }


@dg.definitions
def resources_defs() -> dg.Definitions:
    """Every resource and IO manager, and the in-process executor (one process per run) unless
    ``PRICING_EXECUTOR=k8s``: then ``definitions.build_defs`` adds the Kubernetes executor, whose
    per-step config needs the loaded assets (``pricing_assets/k8s_executor.py``)."""
    settings = current_settings()
    return dg.Definitions(
        resources=build_resources(settings),
        executor=dg.in_process_executor if settings.executor == "in_process" else None,
    )
