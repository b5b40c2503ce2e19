"""Embedding stage: one partitioned asset per enabled model of the registry
(``pricing_assets/embedding_models.toml``), keyed ``embeddings/<modality>/<model name>``.

Vectors are cached by ``(model, cache_key)`` (sha256 of the input embedded: the text built for the model, or the image bytes) under ``<storage>/embedding_cache``: a row whose
content didn't change is never embedded twice, even when it shows up again in a later batch, and a
run killed mid-partition resumes from the last stored chunk.
"""

import hashlib

import dagster as dg
import numpy as np
import pandas as pd

from data_contracts import embedding_schema
from pricing_assets.checks import column_schema, contract_spec, enforce_contract
from pricing_assets.defs.common import preview, stopwatch
from pricing_assets.lib.embeddings.registry import enabled_models
from pricing_assets.lib.runtime.progress import report
from pricing_assets.partitions import catalog_batches
from pricing_assets.resources import DeviceResource, StorageResource
from pricing_assets.settings import current_registry

GROUP = "embeddings"


def embedding_key(spec) -> dg.AssetKey:
    """Asset key ``embeddings/<modality>/<name>`` of a registry entry."""
    return dg.AssetKey(["embeddings", spec.modality, spec.name])


def _frame(sample_ids, keys, vectors: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": pd.Series(list(sample_ids), dtype=object),
            "cache_key": pd.Series(list(keys), dtype=object),
            "embedding": pd.Series(list(vectors.astype(np.float32)), dtype=object),
        }
    )


def _metadata(spec, device: str, stats: dict, out: pd.DataFrame, extra: dict) -> dict:
    return {
        "model": spec.name,
        "source": str(spec.source),
        "dim": spec.dim,
        "device": device,
        "rows": len(out),
        **extra,
        **{k: (round(float(v), 3) if isinstance(v, float) else int(v)) for k, v in stats.items()},
        "preview": preview(out[["sample_id", "cache_key"]]),
    }


def _embedding_asset(spec, upstream: list[str], description: str, kinds: set[str]):
    """The ``@dg.asset`` decorator shared by every embedding asset: key from the registry entry,
    batch partitions, parquet storage, blocking contract check, ``gpu`` pool."""
    key = embedding_key(spec)
    return dg.asset(
        key=key,
        partitions_def=catalog_batches,
        group_name=GROUP,
        io_manager_key="parquet_io_manager",
        ins={name: dg.AssetIn(name) for name in upstream},
        check_specs=[contract_spec(key)],
        pool="gpu",
        description=description,
        kinds=kinds,
        metadata={"dagster/column_schema": column_schema(embedding_schema(spec.dim)), "dim": spec.dim},
    )


def build_text_embedding_asset(spec) -> dg.AssetsDefinition:
    """Asset embedding catalog text (+ OCR text) of each row with a text model: (n, dim) float32."""
    key = embedding_key(spec)

    @_embedding_asset(
        spec,
        ["catalog_items", "ocr_text"],
        f"{spec.name} text embeddings ({spec.dim}-d, L2-normalised) of catalog text + OCR text.",
        {"pytorch"},
    )
    def _text_embeddings(
        context: dg.AssetExecutionContext,
        catalog_items: pd.DataFrame,
        ocr_text: pd.DataFrame,
        device: DeviceResource,
        storage: StorageResource,
    ):
        from pricing_assets.lib.embeddings.cache import embed_with_cache
        from pricing_assets.lib.embeddings.encoders import load_encoder
        from pricing_assets.lib.embeddings.text import texts_for_items

        texts = texts_for_items(catalog_items, ocr_text)
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        dev = device.resolve()
        with stopwatch() as t:
            encoder = load_encoder(spec, device=dev, cache_dir=storage.local_model_cache())
            vectors, stats = embed_with_cache(
                encoder,
                keys,
                lambda idx: [texts[i] for i in idx],
                cache_dir=f"{storage.embedding_cache()}",
                storage_options=storage.storage_options or None,
                progress=lambda done, total: (
                    context.log.info(f"{spec.name}: {done}/{total} rows to embed"),
                    report(f"embeddings/{spec.name}", done, total, "rows"),
                ),
            )
        out = _frame(catalog_items["sample_id"], keys, vectors)
        _contract = enforce_contract(
            out, embedding_schema(spec.dim), key
        )  # before storing: a violation raises, nothing is written
        yield dg.Output(out, metadata=_metadata(spec, dev, stats, out, {"wall_seconds": round(t(), 2)}))
        yield _contract

    return _text_embeddings


def build_image_embedding_asset(spec) -> dg.AssetsDefinition:
    """Asset embedding the stored photo of each row that has one: (n_with_image, dim) float32.

    No per-row tolerance: ``product_images`` fully decoded every ``ok`` photo, so one that cannot be
    opened here (store unreachable, object deleted) fails the asset with the opener's error, as does
    any encoder error; nothing is stored for the partition."""
    key = embedding_key(spec)

    @_embedding_asset(
        spec,
        ["product_images"],
        f"{spec.name} image embeddings ({spec.dim}-d, L2-normalised) for rows with a stored photo.",
        {"onnx"},
    )
    def _image_embeddings(
        context: dg.AssetExecutionContext,
        product_images: pd.DataFrame,
        device: DeviceResource,
        storage: StorageResource,
    ):
        from pricing_assets.lib.embeddings.cache import embed_with_cache
        from pricing_assets.lib.embeddings.encoders import load_encoder
        from pricing_assets.lib.images.decode import open_image_rgb

        ok = product_images[product_images["status"] == "ok"].reset_index(drop=True)
        uris = ok["image_uri"].tolist()
        dev = device.resolve()
        opts = storage.storage_options or None
        with stopwatch() as t:
            if len(ok):
                encoder = load_encoder(spec, device=dev, cache_dir=storage.local_model_cache())
                vectors, stats = embed_with_cache(
                    encoder,
                    ok["sha256"].tolist(),
                    lambda idx: [open_image_rgb(uris[i], storage_options=opts) for i in idx],
                    cache_dir=storage.embedding_cache(),
                    storage_options=opts,
                    progress=lambda done, total: (
                        context.log.info(f"{spec.name}: {done}/{total} images to embed"),
                        report(f"embeddings/{spec.name}", done, total, "images"),
                    ),
                )
            else:
                vectors, stats = np.zeros((0, spec.dim), np.float32), {"rows": 0, "computed": 0, "cached": 0}
        out = _frame(ok["sample_id"], ok["sha256"], vectors)
        extra = {"rows_without_image": int(len(product_images) - len(ok)), "wall_seconds": round(t(), 2)}
        _contract = enforce_contract(
            out, embedding_schema(spec.dim), key
        )  # before storing: a violation raises, nothing is written
        yield dg.Output(out, metadata=_metadata(spec, dev, stats, out, extra))
        yield _contract

    return _image_embeddings


def build_embedding_assets(registry: dict) -> list[dg.AssetsDefinition]:
    """One asset per enabled registry entry (text and image modalities)."""
    builders = {"text": build_text_embedding_asset, "image": build_image_embedding_asset}
    return [builders[s.modality](s) for s in enabled_models(registry)]


@dg.definitions
def embeddings_defs() -> dg.Definitions:
    """One embedding asset per enabled entry of the registry (``pricing_assets/embedding_models.toml``)."""
    return dg.Definitions(assets=build_embedding_assets(current_registry()))
