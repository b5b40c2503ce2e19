"""#32 step 3 experiment (not adopted, docs/experiments.md): a level-2 model on the OOF model prices
instead of the weighted geometric mean.

    .venv/bin/python benchmarks/exp_level2_blend.py <storage>/assets/

Cross-fitted: for each fold f, fitted on the other folds' OOF rows, applied to fold f."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lightgbm as lgb  # noqa: E402

from pricing_assets.lib.models.blend import align_predictions, apply_blend, blend_oof_predictions, fit_blend_weights
from pricing_assets.lib.models.metrics import smape

A = sys.argv[1].rstrip("/") + "/"
stored = {
    n: pd.read_parquet(f"{A}{n}_predictions.parquet") for n in ("lightgbm", "tfidf_ridge", "lightgbm_distributional")
}
names = sorted(stored)
base, mats = align_predictions(stored)
fm = pd.read_parquet(A + "feature_matrix.parquet").set_index("sample_id").loc[base["sample_id"]]
y = np.log(base["price"].to_numpy())
folds = base["fold"].to_numpy()
L = np.log(mats)
blended, w = blend_oof_predictions(base, mats, names)
print("geometric blend (weights on all OOF)", round(smape(base["price"], blended["pred_price"]), 3))
# cross-fitted geometric blend
cf = np.zeros(len(y))
for f in np.unique(folds):
    tr = folds != f
    ww = fit_blend_weights(mats[tr], base["price"].to_numpy()[tr], names=names)
    cf[folds == f] = np.log(apply_blend(mats[folds == f], ww))
print("geometric blend cross-fitted", round(smape(np.exp(y), np.exp(cf)), 3))


def feats(extra):
    X = pd.DataFrame({f"l_{n}": L[:, j] for j, n in enumerate(names)})
    X["std"] = L.std(axis=1)
    X["d_lgbm_dist"] = L[:, names.index("lightgbm")] - L[:, names.index("lightgbm_distributional")]
    if extra:
        for c in ("knn_minilm_l6_top1_sim", "knn_tfidf_top1_sim", "knn_minilm_l6_std", "text_words"):
            X[c] = fm[c].to_numpy()
        X["category"] = pd.Categorical(fm["category"].to_numpy())
    return X


for extra in (False, True):
    X = feats(extra)
    mono = [1 if c == "l_lightgbm" else 0 for c in X.columns]
    for seed in (42, 7, 123):
        oof = np.zeros(len(y))
        for f in np.unique(folds):
            tr, va = folds != f, folds == f
            p = {
                "objective": "huber",
                "alpha": 0.3,
                "learning_rate": 0.03,
                "num_leaves": 7,
                "min_data_in_leaf": 50,
                "feature_fraction": 0.9,
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "lambda_l2": 5.0,
                "verbosity": -1,
                "seed": seed,
                "monotone_constraints": mono,
                "monotone_constraints_method": "basic",
                "num_threads": 2,
            }
            # inner split for early stopping
            rng = np.random.default_rng(seed + f)
            idx = np.flatnonzero(tr)
            rng.shuffle(idx)
            n_in = len(idx) // 10
            dtr = lgb.Dataset(X.iloc[idx[n_in:]], y[idx[n_in:]])
            dva = lgb.Dataset(X.iloc[idx[:n_in]], y[idx[:n_in]], reference=dtr)
            b = lgb.train(p, dtr, 2000, valid_sets=[dva], callbacks=[lgb.early_stopping(100, verbose=False)])
            oof[va] = b.predict(X[va], num_iteration=b.best_iteration)
        print(
            "level-2 lgbm",
            "extra" if extra else "preds only",
            seed,
            round(smape(np.exp(y), np.exp(oof)), 3),
            flush=True,
        )
