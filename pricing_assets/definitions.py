"""The code location: ``defs`` = every asset, check, resource, IO manager, sensor and schedule."""

import dagster as dg

from pricing_assets.assets import images, ingest, serving, training
from pricing_assets.assets.embeddings import build_embedding_assets
from pricing_assets.assets.reports import build_signal_report_asset
from pricing_assets.assets.models import MODEL_PREDICTION_ASSETS, build_blend_asset, build_model_assets, lightgbm_dist_model, lightgbm_model
from pricing_assets.automation import build_automation_sensor, with_global_automation
from pricing_assets.io_managers import PricingIOManager
from pricing_assets.lib.embeddings import load_registry
from pricing_assets.resources import DeviceResource, ImageFetchResource, ModelGateResource, OcrResource, StorageResource
from pricing_assets.schedules import build_nightly_retrain_schedule, catalog_batch_job, nightly_retrain_job, scoring_job
from pricing_assets.sensors import build_inbox_sensor
from pricing_assets.settings import Settings, load_settings


def build_resources(s: Settings) -> dict:
    """Resources and IO managers for the given settings (one storage base path for everything)."""
    assets_base = f"{s.storage.rstrip('/')}/assets"
    io = {kind: PricingIOManager(base_path=assets_base, kind=kind, endpoint_url=s.s3_endpoint) for kind in ("parquet", "faiss", "lightgbm", "pickle")}
    return {
        "io_manager": io["pickle"],
        "parquet_io_manager": io["parquet"],
        "faiss_io_manager": io["faiss"],
        "lightgbm_io_manager": io["lightgbm"],
        "device": DeviceResource(device=s.device),
        "storage": StorageResource(base_path=s.storage, endpoint_url=s.s3_endpoint, model_cache_dir=s.model_cache),
        "image_fetch": ImageFetchResource(mirror_dir=s.image_mirror, offline=s.images_offline),
        "ocr": OcrResource(backend=s.ocr_backend),
        "model_gate": ModelGateResource(tolerance_smape=s.gate_tolerance_smape),
    }


def build_assets(registry: dict | None = None) -> list:
    """Every asset definition, with one embedding asset per enabled registry entry."""
    registry = registry if registry is not None else load_registry()
    return [
        *dg.load_assets_from_modules([ingest, images]),
        *build_embedding_assets(registry),
        build_signal_report_asset(registry),
        training.products,
        training.brand_features,
        *training.build_training_assets(registry),
        lightgbm_model,
        lightgbm_dist_model,
        *build_model_assets(registry),
        build_blend_asset(MODEL_PREDICTION_ASSETS),
        serving.build_serving_model_asset(registry, MODEL_PREDICTION_ASSETS),
        serving.build_batch_predictions_asset(registry),
        serving.price_predictions,
        serving.build_evaluation_asset(MODEL_PREDICTION_ASSETS),
    ]


def build_defs(settings: Settings | None = None, registry: dict | None = None) -> dg.Definitions:
    """The ``Definitions`` for ``settings`` (default: from the environment)."""
    s = settings or load_settings()
    return dg.Definitions(
        # one automation policy for every unpartitioned asset (pricing_assets/automation.py)
        assets=with_global_automation(build_assets(registry)),
        resources=build_resources(s),
        jobs=[catalog_batch_job, nightly_retrain_job, scoring_job],
        sensors=[build_inbox_sensor(s.inbox, s.s3_endpoint, on=s.automation_on), build_automation_sensor(on=s.automation_on)],
        schedules=[build_nightly_retrain_schedule(on=s.automation_on)],
        executor=dg.in_process_executor,
    )


defs = build_defs()
