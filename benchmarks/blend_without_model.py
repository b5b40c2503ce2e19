"""Blend OOF SMAPE with and without the fusion MLP, from an instance's stored OOF predictions, through
lib.models.blend (the price_blend asset's own functions: weights fitted on every labeled row's OOF).

    DAGSTER_HOME=<a home where the fusion MLP was materialised> python benchmarks/blend_without_model.py

Prints JSON: per variant the blend weights, blend OOF SMAPE and each model's OOF SMAPE (0-200).
Used for the fusion-MLP opt-in decision (docs/experiments.md)."""

import json
import os

import pandas as pd

from pricing_assets.lib.models.blend import align_predictions, apply_blend, fit_blend_weights
from pricing_assets.lib.models.metrics import smape

A = f"{os.environ['DAGSTER_HOME']}/storage/assets"
names = [
    "fusion_mlp_predictions",
    "lightgbm_distributional_predictions",
    "lightgbm_predictions",
    "tfidf_ridge_predictions",
]
preds = {n: pd.read_parquet(f"{A}/{n}.parquet") for n in names}
out = {}
for label, use in (("with_mlp", names), ("without_mlp", [n for n in names if not n.startswith("fusion")])):
    base, mats = align_predictions({n: preds[n] for n in use})
    lab = (base["fold"] >= 0).to_numpy()
    y = base.loc[lab, "price"].to_numpy()
    w = fit_blend_weights(mats[lab], y, names=sorted(use))
    out[label] = {
        "weights": {n: round(float(x), 4) for n, x in zip(sorted(use), w)},
        "blend_oof_smape": round(float(smape(y, apply_blend(mats[lab], w))), 3),
        "labeled_rows": int(lab.sum()),
        "model_oof_smape": {n: round(float(smape(y, mats[lab, i])), 3) for i, n in enumerate(sorted(use))},
    }
print(json.dumps(out, indent=1))
