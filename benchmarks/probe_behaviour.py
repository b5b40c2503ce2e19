"""Probe of the served model's behaviour on N real unlabeled products that state a quantity
(``Value:``), scored through ``lib.serving.score_new_rows`` (the ``batch_predictions`` path):

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

from pricing_assets.lib.catalog import parse_catalog
from pricing_assets.lib.embedding_registry import load_registry
from pricing_assets.lib.embedding_text import text_for_embedding
from pricing_assets.lib.encoders import load_encoder
from pricing_assets.lib.features import build_brand_features
from pricing_assets.lib.serving import score_new_rows
from pricing_assets.lib.training_data import embedding_matrix, join_images_and_ocr

home = os.environ["DAGSTER_HOME"]
A = f"{home}/storage/assets"
model = pickle.load(open(f"{A}/serving_model.pkl", "rb"))
n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
raw = pd.read_csv("data/sample/amazon_pricing_unlabeled.csv", dtype={"sample_id": str})
raw = raw[raw["catalog_content"].str.contains(r"\nValue: \d", regex=True)].head(n).reset_index(drop=True)
imgs = pd.read_parquet(f"{A}/product_images/sample_unlabeled.parquet")
ocr = pd.read_parquet(f"{A}/ocr_text/sample_unlabeled.parquet")
img_emb = pd.read_parquet(f"{A}/embeddings/image/effnet_lite0/sample_unlabeled.parquet")
reg = {k: v for k, v in load_registry().items() if v.enabled}
text_spec = [s for s in reg.values() if s.modality == "text"][0]
enc = load_encoder(text_spec, device="cpu")

def scale_value(t, f):
    return re.sub(r"\nValue: ([0-9.]+)", lambda m: f"\nValue: {float(m.group(1)) * f:g}", t, count=1)
def spaces(t):
    return "\n".join("  ".join(line.split(" ")) + "  " for line in t.split("\n"))
def upper_name(t):
    return re.sub(r"^(Item Name: )(.*)$", lambda m: m.group(1) + m.group(2).upper(), t, count=1, flags=re.M)
variants = {"base": lambda t: t, "x2": lambda t: scale_value(t, 2), "x4": lambda t: scale_value(t, 4), "spaces": spaces, "upper": upper_name}

def score(texts):
    rows = raw.assign(catalog_content=texts)
    items = parse_catalog(rows)
    items = join_images_and_ocr(items, imgs, ocr)
    tx = [text_for_embedding(r.item_name, r.bullets, r.description, (o or None)) for r, o in zip(items.itertuples(index=False), items["ocr_text"].fillna(""))]
    vec = enc.encode(tx)
    embs = []
    for s in reg.values():
        if s.modality == "text":
            embs.append((s.name, "text", vec.astype(np.float32), np.ones(len(items), bool)))
        else:
            embs.append((s.name, "image", *embedding_matrix(img_emb, items["sample_id"], s.dim)))
    return score_new_rows(model, items, build_brand_features(items), embs)["price"].to_numpy()

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
