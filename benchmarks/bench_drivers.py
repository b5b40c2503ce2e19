"""Price drivers by decision path vs TreeSHAP on a materialised instance's serving model: time, exact
additivity (``bias + sum`` against the boosters' mean log price), and how often the two methods name
the same drivers (top-5 overlap, same top driver).

Usage: ``.venv/bin/python benchmarks/bench_drivers.py <storage>/assets/ ROWS`` (``serving_model.pkl``
and ``feature_matrix.parquet`` of a ``make demo`` or ``bench_scale.py`` instance; ROWS sampled with
seed 0). Prints the figures; writes nothing. Results: docs/experiments.md, "Price drivers by decision
path".
"""

import pickle
import sys
import time

import numpy as np
import pandas as pd

from pricing_assets.lib.models.lightgbm_regression import model_input
from pricing_assets.lib.serving.drivers import feature_contributions, path_contributions, top_drivers

st = sys.argv[1]
m = pickle.load(open(st + "serving_model.pkl", "rb"))
fm = pd.read_parquet(st + "feature_matrix.parquet")
bs = m.models["lightgbm"]
n = int(sys.argv[2])
X = model_input(fm.sample(n, random_state=0))[bs[0].feature_name()]
print("trees", [b.num_trees() for b in bs])
t = time.time()
c1, b1 = feature_contributions(bs, X)
t1 = time.time() - t
t = time.time()
c2, b2 = path_contributions(bs, X)
t2 = time.time() - t
pred = np.mean([b.predict(X) for b in bs], axis=0)
print(f"treeshap {t1:.2f} s, path {t2:.2f} s, rows {n}")
print("additivity max err", np.abs(b1 + c1.sum(1) - pred).max(), np.abs(b2 + c2.sum(1) - pred).max())
sid = np.arange(n).astype(str)
d1 = top_drivers(sid, X, c1, b1, "v", 5)
d2 = top_drivers(sid, X, c2, b2, "v", 5)
s1 = d1.groupby("sample_id")["feature"].apply(set)
s2 = d2.groupby("sample_id")["feature"].apply(set)
agree = np.mean([len(s1[i] & s2[i]) / max(len(s1[i]), 1) for i in s1.index])
top1 = (
    d1[d1["rank"] == 1].set_index("sample_id")["feature"] == d2[d2["rank"] == 1].set_index("sample_id")["feature"]
).mean()
print(f"top-5 overlap {agree:.3f}, same top-1 {top1:.3f}")
