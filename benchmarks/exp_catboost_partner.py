"""#32 step 3 experiment: CatBoost with its own text features as a partner in the blend.

    pip install -e '.[bench]'     # catboost
    .venv/bin/python benchmarks/exp_catboost_partner.py <storage>/assets/ [SEEDS...]

CatBoost (RMSE on log price, depth 6, early stopping on an inner 10 % of the training folds) over the
``feature_matrix`` columns (``category`` categorical) plus the product text as a CatBoost text feature
(its own tokenizer, bag of words and naive-Bayes estimates), monotone (+1) in the pack-quantity columns
LightGBM is constrained on; the same 5 grouped folds. Its OOF prices are then blended with the stored
LightGBM, distributional and TF-IDF ridge OOF predictions (weights fitted as ``price_blend`` fits them).
Results: docs/experiments.md ("CatBoost as a blend partner").
"""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    from catboost import CatBoostRegressor, Pool

    from pricing_assets.lib.models.blend import align_predictions, blend_oof_predictions
    from pricing_assets.lib.models.cross_validation import inner_split
    from pricing_assets.lib.models.lightgbm_regression import model_input, monotone_constraints
    from pricing_assets.lib.models.metrics import smape
    from pricing_assets.lib.models.tfidf_ridge import product_text

    assets = Path(sys.argv[1])
    seeds = [int(s) for s in sys.argv[2:]] or [42]
    fm = pd.read_parquet(assets / "feature_matrix.parquet")
    products = pd.read_parquet(assets / "products.parquet").set_index("sample_id")
    X = model_input(fm).reset_index(drop=True)
    X["category"] = X["category"].astype(str)
    X["text"] = product_text(products.loc[fm["sample_id"]].reset_index()).fillna("").to_numpy()
    y, folds, price = np.log(fm["price"].to_numpy(float)), fm["fold"].to_numpy(), fm["price"].to_numpy(float)
    mono = {c: 1 for c, m in zip(X.columns, monotone_constraints(X.columns)) if m}
    stored = {
        n: pd.read_parquet(assets / f"{n}_predictions.parquet")
        for n in ("lightgbm", "lightgbm_distributional", "tfidf_ridge")
    }
    for seed in seeds:
        t0, oof = time.perf_counter(), np.zeros(len(y))
        for f in np.unique(folds):
            tr, va = np.flatnonzero(folds != f), folds == f
            inner = inner_split(len(tr), 0.1, seed + int(f))

            def pool(rows, label=True):
                return Pool(X.iloc[rows], y[rows] if label else None, cat_features=["category"], text_features=["text"])

            model = CatBoostRegressor(
                loss_function="RMSE",
                depth=6,
                learning_rate=0.06,
                iterations=3000,
                random_seed=seed,
                thread_count=2,
                monotone_constraints=mono,
                od_type="Iter",
                od_wait=150,
                verbose=False,
                allow_writing_files=False,  # no catboost_info/ folder in the working tree
            )
            model.fit(pool(tr[~inner]), eval_set=pool(tr[inner]), use_best_model=True)
            oof[va] = model.predict(pool(np.flatnonzero(va), label=False))
        alone = smape(price, np.exp(oof))
        pred = fm[["sample_id", "fold", "price"]].assign(pred_price=np.exp(oof))
        base, mats = align_predictions({**stored, "catboost": pred})
        blended, weights = blend_oof_predictions(base, mats, sorted({**stored, "catboost": 1}))
        print(
            f"seed {seed}: catboost {alone:.3f}, blend {smape(blended['price'], blended['pred_price']):.3f} "
            f"{dict(zip(weights['model'], weights['weight'].round(3)))} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    base, mats = align_predictions(stored)
    blended, _ = blend_oof_predictions(base, mats, sorted(stored))
    print(f"blend without catboost: {smape(blended['price'], blended['pred_price']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
