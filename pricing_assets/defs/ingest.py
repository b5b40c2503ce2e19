"""Ingest stage: a batch file becomes ``raw_catalog`` (+ ``catalog_quarantine``) and ``catalog_items``."""

import dagster as dg
import pandas as pd

from data_contracts import CatalogItems, CatalogQuarantine, RawCatalog
from pricing_assets.checks import contract_spec, enforce_contract
from pricing_assets.defs.common import preview, stopwatch
from pricing_assets.lib.catalog.batches import find_batch_file
from pricing_assets.lib.catalog.parsing import parse_catalog, read_catalog
from pricing_assets.partitions import catalog_batches
from pricing_assets.resources import StorageResource

GROUP = "ingest"


@dg.multi_asset(
    outs={
        "raw_catalog": dg.AssetOut(
            io_manager_key="parquet_io_manager",
            group_name=GROUP,
            description="Valid rows of one ingested catalog file (sample_id, catalog_content, image_link, price?).",
        ),
        "catalog_quarantine": dg.AssetOut(
            io_manager_key="parquet_io_manager",
            group_name=GROUP,
            description="Rows of the batch refused at ingest, with field and reason. rows in = raw_catalog + quarantine.",
        ),
    },
    partitions_def=catalog_batches,
    check_specs=[contract_spec("raw_catalog"), contract_spec("catalog_quarantine")],
)
def raw_catalog(context: dg.AssetExecutionContext, storage: StorageResource):
    """Read the batch's stored file (local or s3://), split good rows from quarantined ones."""
    batch = context.partition_key
    path = find_batch_file(storage.batches_dir(), batch, storage.storage_options)
    with stopwatch() as t:
        rows, quarantine = read_catalog(path, storage_options=storage.storage_options)
    n_q = quarantine["row"].nunique() if len(quarantine) else 0
    n_in = len(rows) + n_q
    labeled = int(rows["price"].notna().sum())
    if len(quarantine):
        context.log.warning(
            f"batch {batch}: {n_q} of {n_in} rows quarantined: {quarantine['reason'].value_counts().head(5).to_dict()}"
        )
    checks = [
        enforce_contract(rows, RawCatalog, "raw_catalog"),
        enforce_contract(quarantine, CatalogQuarantine, "catalog_quarantine"),
    ]
    yield dg.Output(
        rows,
        output_name="raw_catalog",
        metadata={
            "source": path,
            "rows_in": n_in,
            "rows": len(rows),
            "labeled_rows": labeled,
            "unlabeled_rows": len(rows) - labeled,
            "quarantined_rows": int(n_q),
            "extra_columns": ", ".join(rows.attrs.get("extra_columns", [])) or "none",
            "seconds": round(t(), 3),
            "preview": preview(rows[["sample_id", "catalog_content", "image_link", "price"]]),
        },
    )
    yield dg.Output(
        quarantine,
        output_name="catalog_quarantine",
        metadata={
            "rows": len(quarantine),
            "reasons": dg.MetadataValue.json(
                quarantine["reason"].value_counts().head(20).to_dict() if len(quarantine) else {}
            ),
            "preview": preview(quarantine, n=10) if len(quarantine) else "no quarantined rows",
        },
    )
    yield from checks


@dg.asset(
    partitions_def=catalog_batches,
    group_name=GROUP,
    io_manager_key="parquet_io_manager",
    check_specs=[contract_spec("catalog_items")],
)
def catalog_items(context: dg.AssetExecutionContext, raw_catalog: pd.DataFrame):
    """Fields parsed from ``catalog_content``: item name, bullets, description, IPQ value/unit, text stats."""
    with stopwatch() as t:
        items = parse_catalog(raw_catalog)
    if len(items) != len(raw_catalog):
        raise ValueError(f"catalog_items: parsed {len(items)} rows from {len(raw_catalog)}")
    check = enforce_contract(items, CatalogItems, "catalog_items")
    yield dg.Output(
        items,
        metadata={
            "rows": len(items),
            "with_ipq_value": int(items["ipq_value"].notna().sum()),
            "with_description": int((items["description"].astype(str).str.len() > 0).sum()) if len(items) else 0,
            "median_text_chars": float(items["text_chars"].median()) if len(items) else 0.0,
            "rows_per_s": round(len(items) / max(t(), 1e-9), 1),
            "preview": preview(items[["sample_id", "item_name", "ipq_value", "ipq_unit", "n_bullets"]]),
        },
    )
    yield check


@dg.definitions
def ingest_defs() -> dg.Definitions:
    """Per-row ingest assets of a catalog batch (loaded by ``load_from_defs_folder``)."""
    return dg.Definitions(assets=[raw_catalog, catalog_items])
