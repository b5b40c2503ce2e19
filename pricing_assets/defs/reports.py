"""``embedding_signal_report``: a linear-probe table of the price signal in every embedding asset."""

import dagster as dg
import numpy as np
import pandas as pd

from pricing_assets.defs.common import all_batches_in, merge_batches, stopwatch
from pricing_assets.defs.embeddings import embedding_key
from pricing_assets.settings import current_registry

GROUP = "training"


def build_signal_report_asset(registry: dict) -> dg.AssetsDefinition:
    """The report asset, wired to every enabled embedding asset of ``registry``."""
    specs = [s for s in registry.values() if s.enabled]

    @dg.asset(
        group_name=GROUP,
        io_manager_key="parquet_io_manager",
        ins={"products": dg.AssetIn("products"), **{f"emb__{s.name}": all_batches_in(embedding_key(s)) for s in specs}},
    )
    def embedding_signal_report(context: dg.AssetExecutionContext, products: pd.DataFrame, **embeddings):
        """Per embedding model: OOF ridge SMAPE and R² on log price over the labeled rows that have a
        vector, and the strongest single-dimension correlation (same CV folds as the models)."""
        from pricing_assets.lib.signal import embedding_price_signal
        from pricing_assets.lib.training_data import embedding_matrix

        lab = products[products["fold"] >= 0].reset_index(drop=True)
        rows = []
        with stopwatch() as t:
            for s in specs:
                emb = merge_batches(context, embeddings[f"emb__{s.name}"], f"emb__{s.name}")
                vec, has = embedding_matrix(emb, lab["sample_id"], s.dim)
                if has.sum() < 10 or len(np.unique(lab.loc[has, "fold"])) < 2:
                    rows.append({"model": s.name, "modality": s.modality, "rows": int(has.sum()), "note": "too few labeled rows with a vector"})
                    continue
                sig = embedding_price_signal(vec[has], np.log1p(lab.loc[has, "price"].to_numpy(float)), lab.loc[has, "fold"].to_numpy())
                rows.append({"model": s.name, "modality": s.modality, **sig, "note": ""})
        table = pd.DataFrame(rows)
        yield dg.Output(
            table,
            metadata={
                "models": len(table),
                "signal_table": dg.MetadataValue.md(table.to_markdown(index=False)),
                "seconds": round(t(), 2),
            },
        )

    return embedding_signal_report


@dg.definitions
def reports_defs() -> dg.Definitions:
    """The signal report over every registry embedding."""
    return dg.Definitions(assets=[build_signal_report_asset(current_registry())])
