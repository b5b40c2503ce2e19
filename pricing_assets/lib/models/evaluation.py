"""Evaluation report: SMAPE tables and plots (PNG, base64-embedded for Dagster markdown metadata)."""

import base64
import io

import numpy as np
import pandas as pd

from pricing_assets.lib.models.metrics import smape, smape_by_bin


def smape_table(preds: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """OOF SMAPE (percent) of each model overall and per true-price bin.

    Args:
        preds: model name -> ModelPredictions frame of labeled rows (sample_id, fold, price, pred_price USD).

    Returns:
        DataFrame with one row per model: ``model``, ``oof_smape``, then one column per price bin.
    """
    rows = []
    for name, p in preds.items():
        y, yhat = p["price"].to_numpy(), p["pred_price"].to_numpy()
        row = {"model": name, "rows": len(p), "oof_smape": round(smape(y, yhat), 3)}
        row.update({b["bin"]: round(b["smape"], 2) for b in smape_by_bin(y, yhat)})
        rows.append(row)
    return pd.DataFrame(rows)


def worst_predictions(pred: pd.DataFrame, texts: pd.Series | None = None, n: int = 10) -> pd.DataFrame:
    """The ``n`` rows of a ModelPredictions frame with the largest per-row SMAPE term (percent), with
    item text (``texts``: sample_id -> str) if given."""
    lab = pred.copy()
    lab["row_smape"] = 200 * np.abs(lab["pred_price"] - lab["price"]) / (lab["price"].abs() + lab["pred_price"].abs())
    out = lab.sort_values("row_smape", ascending=False).head(n)
    if texts is not None:
        out["item_name"] = out["sample_id"].map(texts).astype(str).str.slice(0, 80)
    return out.round(3)


def png_markdown(fig) -> str:
    """Render a matplotlib figure as an inline markdown image (base64 PNG)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return f"![plot](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def plot_pred_vs_actual(pred: pd.DataFrame, title: str):
    """Scatter of predicted vs actual price on log axes (labeled rows, OOF). Returns a Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lab = pred
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(lab["price"], lab["pred_price"], s=3, alpha=0.3)
    lo, hi = float(lab[["price", "pred_price"]].min().min()), float(lab[["price", "pred_price"]].max().max())
    ax.plot([lo, hi], [lo, hi], "r--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="actual price (USD)", ylabel="OOF predicted price (USD)", title=title)
    plt.close(fig)
    return fig


def plot_error_by_bin(table: pd.DataFrame):
    """Grouped bars of SMAPE per price bin for each model (rows of :func:`smape_table`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [c for c in table.columns if c.startswith("[")]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(table), 1)
    for i, (_, r) in enumerate(table.iterrows()):
        ax.bar(np.arange(len(bins)) + i * width, [r[b] for b in bins], width, label=r["model"])
    ax.set_xticks(np.arange(len(bins)) + 0.4 - width / 2, bins, rotation=20)
    ax.set(ylabel="SMAPE (%)", title="OOF SMAPE by true-price bin (USD)")
    ax.legend(fontsize=8)
    plt.close(fig)
    return fig


def plot_interval_coverage(table: pd.DataFrame, level: float):
    """Bars of interval coverage per true-price quintile (rows of
    ``lib.serving.intervals.coverage_by_quintile``) against the nominal ``level``, median width
    (``high / low``) annotated. Returns a Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table[table["quintile"] != "all"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(t["quintile"], t["coverage"], color="tab:blue")
    ax.axhline(level, color="r", ls="--", lw=1, label=f"nominal {level:.0%}")
    for i, (_, r) in enumerate(t.iterrows()):
        ax.text(i, r["coverage"] + 0.01, f"x{r['median_width']:.2f}", ha="center", fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="OOF coverage", title="Interval coverage by true-price quintile (width: high / low)")
    ax.legend(fontsize=8, loc="lower right")
    plt.close(fig)
    return fig
