"""``embedding_signal_report``: a linear-probe table of the price signal in every embedding asset."""

import dagster as dg
import numpy as np
import pandas as pd

from pricing_assets.defs.common import stopwatch

GROUP = "training"


@dg.asset(group_name=GROUP, io_manager_key="parquet_io_manager")
def embedding_signal_report(context: dg.AssetExecutionContext, products: pd.DataFrame, product_embeddings):
    """Per embedding model: OOF ridge SMAPE and R² on log price over the labeled rows that have a
    vector, and the strongest single-dimension correlation (same CV folds as the models)."""
    from pricing_assets.lib.embeddings.signal import embedding_price_signal

    lab = products[products["fold"] >= 0].reset_index(drop=True)
    rows = []
    with stopwatch() as t:
        for name, modality, vec, has in product_embeddings.aligned_to(lab["sample_id"]):
            if has.sum() < 10 or len(np.unique(lab.loc[has, "fold"])) < 2:
                rows.append(
                    {
                        "model": name,
                        "modality": modality,
                        "rows": int(has.sum()),
                        "note": "too few labeled rows with a vector",
                    }
                )
                continue
            sig = embedding_price_signal(
                vec[has], np.log1p(lab.loc[has, "price"].to_numpy(float)), lab.loc[has, "fold"].to_numpy()
            )
            rows.append({"model": name, "modality": modality, **sig, "note": ""})
    table = pd.DataFrame(rows)
    yield dg.Output(
        table,
        metadata={
            "models": len(table),
            "signal_table": dg.MetadataValue.md(table.to_markdown(index=False)),
            "seconds": round(t(), 2),
        },
    )


@dg.definitions
def reports_defs() -> dg.Definitions:
    """The signal report over every embedding model in ``product_embeddings``."""
    return dg.Definitions(assets=[embedding_signal_report])
