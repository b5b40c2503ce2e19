"""Image stage: ``product_images`` (fetch + metadata) and ``ocr_text`` (text printed on the photo)."""

import dagster as dg
import pandas as pd

from data_contracts import OcrText, ProductImages
from pricing_assets.checks import contract_spec, enforce_contract
from pricing_assets.defs.common import preview, stopwatch
from pricing_assets.lib.runtime.progress import report
from pricing_assets.partitions import catalog_batches
from pricing_assets.resources import DeviceResource, ImageFetchResource, OcrResource, StorageResource

GROUP = "images"


@dg.asset(
    partitions_def=catalog_batches,
    group_name=GROUP,
    io_manager_key="parquet_io_manager",
    check_specs=[contract_spec("product_images")],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL),
)
def product_images(
    context: dg.AssetExecutionContext,
    raw_catalog: pd.DataFrame,
    storage: StorageResource,
    image_fetch: ImageFetchResource,
):
    """Per row: the photo from the local mirror, the content-addressed store or HTTP(S), with a status
    (a missing image is a normal state) and image metadata (width, height, bytes, format)."""
    from pricing_assets.lib.images.fetch import FetchConfig, fetch_images

    cfg = FetchConfig(
        store_base=storage.image_store(),
        mirror_dir=image_fetch.mirror_dir,
        timeout_s=image_fetch.timeout_s,
        max_bytes=image_fetch.max_bytes,
        concurrency=image_fetch.concurrency,
        retries=image_fetch.retries,
        storage_options=storage.storage_options or None,
        allow_private_hosts=image_fetch.allow_private_hosts,
        offline=image_fetch.offline,
        host_failure_threshold=image_fetch.host_failure_threshold,
    )
    step = max(1, len(raw_catalog) // 10)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            context.log.info(f"product_images: {done}/{total} distinct links")
        report("product_images", done, total, "links")

    with stopwatch() as t:
        images = fetch_images(raw_catalog[["sample_id", "image_link"]], cfg, progress=progress)
    stats = dict(images.attrs.get("stats", {}))
    unreachable = list(stats.pop("hosts_unreachable", []))
    if unreachable:
        context.log.warning(
            f"product_images: circuit breaker opened for host(s) {unreachable}; their links retry next run"
        )
    counts = images["status"].value_counts().to_dict()
    _contract = enforce_contract(
        images, ProductImages, "product_images"
    )  # before storing: a violation raises, nothing is written
    yield dg.Output(
        images,
        metadata={
            "rows": len(images),
            "status_counts": dg.MetadataValue.json({k: int(v) for k, v in counts.items()}),
            **{k: int(v) for k, v in stats.items()},
            "hosts_unreachable": len(unreachable),
            "unreachable_hosts": dg.MetadataValue.json(unreachable),
            "seconds": round(t(), 2),
            "rows_per_s": round(len(images) / max(t(), 1e-9), 1),
            "preview": preview(images[["sample_id", "status", "reason", "source", "width", "height", "format"]]),
        },
    )
    yield _contract


@dg.asset(
    partitions_def=catalog_batches,
    group_name=GROUP,
    io_manager_key="parquet_io_manager",
    check_specs=[contract_spec("ocr_text")],
    pool="gpu",
)
def ocr_text(
    context: dg.AssetExecutionContext,
    product_images: pd.DataFrame,
    ocr: OcrResource,
    device: DeviceResource,
    storage: StorageResource,
):
    """Text lines read from each product photo (PP-OCR through RapidOCR by default; its ONNX models
    run on onnxruntime's CUDA provider when ``device`` resolves to CUDA, hence the ``gpu`` pool).

    A photo the backend fails on marks its row ``error``; when more than ``ocr.max_error_share`` of
    the photos tried fail, the run raises ``OcrStageFailed`` before anything is stored."""
    from pricing_assets.lib.images.ocr import get_ocr_backend, run_ocr

    def progress(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            context.log.info(f"ocr_text: {done}/{total} images")
        report("ocr_text", done, total, "rows")

    with stopwatch() as t:
        if ocr.enabled:
            dev = device.resolve()
            backend = get_ocr_backend(ocr.backend, device=dev, det_limit_side_len=ocr.det_limit_side_len)
            context.log.info(
                f"ocr_text: {int((product_images['status'] == 'ok').sum())} images with backend {ocr.backend} on {dev}"
            )
            # raises OcrStageFailed (nothing stored) when more than max_error_share of the photos fail
            out = run_ocr(
                product_images,
                backend,
                progress=progress,
                storage_options=storage.storage_options or None,
                max_error_share=ocr.max_error_share,
                min_images=ocr.min_images_for_error_share,
            )
        else:
            out = pd.DataFrame(
                {
                    "sample_id": product_images["sample_id"],
                    "ocr_status": "disabled",
                    "ocr_text": "",
                    "n_lines": 0,
                    "mean_conf": float("nan"),
                    "seconds": 0.0,
                }
            )
    n_ok = int((out["ocr_status"] == "ok").sum())
    _contract = enforce_contract(out, OcrText, "ocr_text")  # before storing: a violation raises, nothing is written
    yield dg.Output(
        out,
        metadata={
            "rows": len(out),
            "images_read": n_ok,
            "status_counts": dg.MetadataValue.json({k: int(v) for k, v in out["ocr_status"].value_counts().items()}),
            "rows_with_text": int((out["n_lines"] > 0).sum()),
            "device": dev if ocr.enabled else "none",
            "seconds": round(t(), 2),
            "s_per_image": round(
                float(out.loc[(out["ocr_status"] == "ok") & (out["seconds"] > 0), "seconds"].mean()), 3
            )
            if n_ok
            else 0.0,
            "preview": preview(out[out["n_lines"] > 0][["sample_id", "ocr_text", "mean_conf"]] if n_ok else out),
        },
    )
    yield _contract


@dg.definitions
def images_defs() -> dg.Definitions:
    """Per-row photo and OCR assets of a catalog batch."""
    return dg.Definitions(assets=[product_images, ocr_text])
