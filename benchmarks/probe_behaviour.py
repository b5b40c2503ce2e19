"""Probe of the served model's behaviour on N real unlabeled products that state a quantity
(``Value:``), scored through ``lib.serving.scoring.score_new_rows`` (the ``batch_predictions`` path):

* ``x2`` / ``x4``: the ``Value:`` line doubled / quadrupled (more units) -- should never be cheaper;
* ``spaces``: every space doubled and trailing spaces added -- should not change the price;
* ``upper``: the item name in capitals -- should not change the price.

    DAGSTER_HOME=<a home with a serving_model, e.g. after `make demo`> python benchmarks/probe_behaviour.py 60

Prints JSON counts (rows cheaper with more units, rows changed by > 0.1 %, largest relative change).
Findings and the planned behavioural tests: docs/experiments.md."""

import json
import os
import pickle
import re
import sys

import numpy as np
import pandas as pd

from pricing_assets.lib.embeddings.encoders import load_encoder
from pricing_assets.lib.embeddings.registry import load_registry
from pricing_assets.lib.serving.scoring import score_catalog_rows

home = os.environ["DAGSTER_HOME"]
A = f"{home}/storage/assets"
model = pickle.load(open(f"{A}/serving_model.pkl", "rb"))
n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
raw = pd.read_csv("data/sample/amazon_pricing_unlabeled.csv", dtype={"sample_id": str})
raw = raw[raw["catalog_content"].str.contains(r"\nValue: \d", regex=True)].head(n).reset_index(drop=True)
imgs = pd.read_parquet(f"{A}/product_images/sample_unlabeled.parquet")
ocr = pd.read_parquet(f"{A}/ocr_text/sample_unlabeled.parquet")
specs = load_registry()
encoders = {
    name: load_encoder(specs[name], device="cpu") for name, modality, _ in model.embedding_models if modality == "text"
}
image_embeddings = {
    name: pd.read_parquet(f"{A}/embeddings/image/{name}/sample_unlabeled.parquet")
    for name, modality, _ in model.embedding_models
    if modality == "image"
}


def scale_value(t, f):
    return re.sub(r"\nValue: ([0-9.]+)", lambda m: f"\nValue: {float(m.group(1)) * f:g}", t, count=1)


def spaces(t):
    return "\n".join("  ".join(line.split(" ")) + "  " for line in t.split("\n"))


def upper_name(t):
    return re.sub(r"^(Item Name: )(.*)$", lambda m: m.group(1) + m.group(2).upper(), t, count=1, flags=re.M)


variants = {
    "base": lambda t: t,
    "x2": lambda t: scale_value(t, 2),
    "x4": lambda t: scale_value(t, 4),
    "spaces": spaces,
    "upper": upper_name,
}


def score(texts):
    return score_catalog_rows(model, raw.assign(catalog_content=texts), imgs, ocr, encoders, image_embeddings)[
        "price"
    ].to_numpy()


out = {k: score([f(t) for t in raw["catalog_content"]]) for k, f in variants.items()}
b = out["base"]
rep = {"rows": len(b), "model_version": model.version, "blend": model.blend}
rep["x2_lower_than_base"] = int((out["x2"] < b * (1 - 1e-9)).sum())
rep["x4_lower_than_x2"] = int((out["x4"] < out["x2"] * (1 - 1e-9)).sum())
rep["x2_median_ratio"] = float(np.median(out["x2"] / b))
rep["x4_median_ratio"] = float(np.median(out["x4"] / b))
for k in ("spaces", "upper"):
    rel = np.abs(out[k] / b - 1)
    rep[f"{k}_changed_rows(>0.1%)"] = int((rel > 1e-3).sum())
    rep[f"{k}_max_rel_change"] = float(rel.max())
print(json.dumps(rep, indent=1))
