"""Partitioning: one dynamic partition per ingested catalog batch (file)."""

import dagster as dg

#: Name of the dynamic partitions set; a sensor, ``pricing ingest`` or
#: ``instance.add_dynamic_partitions(CATALOG_BATCHES, [...])`` registers new keys (the CLI can't).
CATALOG_BATCHES = "catalog_batches"

catalog_batches = dg.DynamicPartitionsDefinition(name=CATALOG_BATCHES)
