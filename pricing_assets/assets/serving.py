"""Serving stage: ``price_predictions`` (competition format) and ``evaluation_report``."""

import dagster as dg
import pandas as pd

from data_contracts import PricePredictions
from pricing_assets.assets.common import preview
from pricing_assets.checks import contract_spec, enforce_contract
from pricing_assets.resources import StorageResource

GROUP = "serving"


@dg.asset(group_name=GROUP, io_manager_key="parquet_io_manager", check_specs=[contract_spec("price_predictions")])
def price_predictions(context: dg.AssetExecutionContext, price_blend: pd.DataFrame, storage: StorageResource):
    """``sample_id,price`` for every unlabeled product (USD), from the blend: each id exactly once.

    Runs only after ``price_blend``'s blocking checks passed (contract and ``model_gate``); storing it
    *promotes* that blend: it becomes the champion the next retrain is compared with."""
    from pricing_assets.lib.model_gate import champion_path, write_champion

    test = price_blend[price_blend["fold"] < 0]
    out = pd.DataFrame({"sample_id": test["sample_id"].astype(str).to_numpy(), "price": test["pred_price"].astype(float).to_numpy()})
    _contract = enforce_contract(out, PricePredictions, "price_predictions")  # before storing: a violation raises, nothing is written
    yield dg.Output(out, metadata={
        "rows": len(out),
        "median_price_usd": round(float(out["price"].median()), 2) if len(out) else 0.0,
        "min_price_usd": round(float(out["price"].min()), 2) if len(out) else 0.0,
        "max_price_usd": round(float(out["price"].max()), 2) if len(out) else 0.0,
        "preview": preview(out),
    })
    # promoted only once the predictions are stored (an output is written when it is yielded)
    write_champion(price_blend, champion_path(storage.models_dir()), storage.storage_options or None)
    yield _contract


def build_evaluation_asset(prediction_assets: list[str]) -> dg.AssetsDefinition:
    """``evaluation_report``: OOF SMAPE per model, blend and price bin; worst rows; plots."""

    @dg.asset(
        group_name=GROUP,
        io_manager_key="parquet_io_manager",
        ins={"price_blend": dg.AssetIn("price_blend"), "products": dg.AssetIn("products"), **{n: dg.AssetIn(n) for n in prediction_assets}},
    )
    def evaluation_report(context: dg.AssetExecutionContext, price_blend: pd.DataFrame, products: pd.DataFrame, **preds):
        """SMAPE table (one row per model + blend), with plots as PNG in the markdown metadata."""
        from pricing_assets.lib.evaluation import plot_error_by_bin, plot_pred_vs_actual, png_markdown, smape_table, worst_predictions
        from pricing_assets.lib.metrics import smape_by_bin

        table = smape_table({**{n.removesuffix("_predictions"): p for n, p in sorted(preds.items())}, "blend": price_blend})
        worst = worst_predictions(price_blend, products.set_index("sample_id")["item_name"])
        blend_smape = float(table.loc[table["model"] == "blend", "oof_smape"].iloc[0])
        lab = price_blend[price_blend["fold"] >= 0]
        bins = smape_by_bin(lab["price"].to_numpy(), lab["pred_price"].to_numpy())
        yield dg.Output(table, metadata={
            "blend_oof_smape": blend_smape,
            "model_oof_smape": dg.MetadataValue.json(dict(zip(table["model"], table["oof_smape"].astype(float)))),
            "rows_per_price_bin": dg.MetadataValue.json({b["bin"]: b["rows"] for b in bins}),
            "smape_table": dg.MetadataValue.md(table.to_markdown(index=False)),
            "worst_predictions": dg.MetadataValue.md(worst[["sample_id", "price", "pred_price", "row_smape", "item_name"]].to_markdown(index=False)),
            "pred_vs_actual": dg.MetadataValue.md(png_markdown(plot_pred_vs_actual(price_blend, f"blend, OOF SMAPE {blend_smape:.2f}"))),
            "error_by_price_bin": dg.MetadataValue.md(png_markdown(plot_error_by_bin(table))),
        })

    return evaluation_report
