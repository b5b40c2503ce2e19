"""#32 step 1 experiment (not adopted, docs/experiments.md): the distributional model gets the pack
quantity through its target.

    .venv/bin/python benchmarks/exp_distributional_offset.py <storage>/assets/feature_matrix.parquet blind,offset

target' = log price - beta_family * log_qty (beta >= 0 per unit family, fitted on the training folds),
quantity-blind features as today; decision + beta_family * log_qty. Compared with today's blind model,
3 seeds each, same folds (the feature_matrix of a materialised instance; the blend is re-fitted with the
LightGBM and TF-IDF ridge OOF predictions stored beside it)."""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pricing_assets.lib.models import distributional as D
from pricing_assets.lib.models.lightgbm_regression import model_input
from pricing_assets.lib.models.metrics import smape

fm = pd.read_parquet(sys.argv[1])
X = model_input(fm)
y1p = np.log1p(fm["price"].to_numpy(float))
folds = fm["fold"].to_numpy()
price = fm["price"].to_numpy(float)
y = np.log(price)
fam = np.where(
    X["log_grams"].notna(), "g", np.where(X["log_ml"].notna(), "ml", np.where(X["log_count"].notna(), "count", "none"))
)
lq = X["log_qty"].to_numpy(float)
lq = np.where(np.isfinite(lq), lq, np.nan)


def fit_beta(tr):
    betas = {}
    for f in ("g", "ml", "count"):
        m = tr & (fam == f) & np.isfinite(lq)
        if m.sum() < 30:
            betas[f] = 0.0
            continue
        x, t = lq[m], y[m]
        b = np.cov(x, t)[0, 1] / np.var(x)
        betas[f] = float(np.clip(b, 0.0, 1.0))
    return betas


def offset(betas, rows):
    b = np.array([betas.get(f, 0.0) for f in fam[rows]])
    q = np.nan_to_num(lq[rows], nan=0.0)
    return b * q


def run(seed, mode):
    import lightgbm as lgb

    Xb = D.quantity_blind(X)
    cat = ["category"] if "category" in Xb else []
    oof = np.zeros(len(y))
    betas_all = []
    for f in np.unique(folds):
        tr_all = np.flatnonzero(folds != f)
        va = folds == f
        trmask = np.zeros(len(y), bool)
        trmask[tr_all] = True
        if mode == "offset":
            betas = fit_beta(trmask)
            betas_all.append(betas)
            o = offset(betas, np.arange(len(y)))
        else:
            o = np.zeros(len(y))
        t = y - o
        edges, labels = D.price_bins(t[tr_all], D.N_BINS)
        K = len(edges) - 1
        per_bin = D.bin_log_prices(t[tr_all], labels)
        grid = np.linspace(t[tr_all].min(), t[tr_all].max(), D.GRID_POINTS)
        loss = D.bin_loss_matrix(per_bin, grid)
        inner = D.inner_split(len(tr_all), 0.1, seed + int(f))
        p = {**D.DIST_PARAMS, "num_class": K, "seed": seed, "num_threads": 2}
        dtr = lgb.Dataset(
            Xb.iloc[tr_all[~inner]], labels[~inner], categorical_feature=cat or "auto", free_raw_data=False
        )
        des = lgb.Dataset(Xb.iloc[tr_all[inner]], labels[inner], reference=dtr)
        bst = lgb.train(
            p,
            dtr,
            num_boost_round=D.DIST_NUM_BOOST_ROUND,
            valid_sets=[des],
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        oof[va] = D.expected_smape_decision(bst.predict(Xb[va], num_iteration=bst.best_iteration), loss, grid) + o[va]
    return smape(price, np.exp(oof)), oof, betas_all


res = {}
for mode in sys.argv[2].split(","):
    for seed in (42, 7, 123):
        t0 = time.perf_counter()
        s, oof, betas = run(seed, mode)
        res[(mode, seed)] = s
        np.save(f"/tmp/oof_{mode}_{seed}.npy", oof)
        print(mode, seed, round(s, 3), round(time.perf_counter() - t0, 1), "s", betas[:1], flush=True)
for mode in sys.argv[2].split(","):
    v = [res[(mode, s)] for s in (42, 7, 123)]
    print(mode, "mean", round(np.mean(v), 3), "spread", round(max(v) - min(v), 3))

# the blend with the stored LightGBM and TF-IDF ridge OOF predictions of the same demo instance
from pricing_assets.lib.models.blend import align_predictions, blend_oof_predictions  # noqa: E402

A = str(Path(sys.argv[1]).parent) + "/"
stored = {
    n: pd.read_parquet(f"{A}{n}_predictions.parquet") for n in ("lightgbm", "tfidf_ridge", "lightgbm_distributional")
}
for mode in sys.argv[2].split(","):
    out = []
    for seed in (42, 7, 123):
        d = fm[["sample_id", "fold", "price"]].assign(pred_price=np.exp(np.load(f"/tmp/oof_{mode}_{seed}.npy")))
        base, mats = align_predictions({**stored, "lightgbm_distributional": d})
        blended, w = blend_oof_predictions(base, mats, sorted(stored))
        out.append(smape(blended["price"], blended["pred_price"]))
        print(mode, seed, "blend", round(out[-1], 3), dict(zip(w["model"], w["weight"].round(3))))
    print(mode, "blend mean", round(np.mean(out), 3), "spread", round(max(out) - min(out), 3))
base, mats = align_predictions(stored)
blended, w = blend_oof_predictions(base, mats, sorted(stored))
print("stored blend", round(smape(blended["price"], blended["pred_price"]), 3))
