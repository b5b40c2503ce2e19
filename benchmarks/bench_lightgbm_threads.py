"""How LightGBM's trainings should share the cores: one fold trained on 2 threads, on 1 thread, and two
folds side by side on 1 thread each (what ``lib.models.lightgbm_regression.training_slots`` does).

Usage: ``.venv/bin/python benchmarks/bench_lightgbm_threads.py <storage>/assets/feature_matrix.parquet``
(the ``feature_matrix`` of a ``make demo`` instance). Prints wall seconds and the early-stopping
iterations (equal iterations: the same boosters). Writes nothing. Figures: docs/experiments.md,
"LightGBM trainings side by side, one thread each".
"""

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from pricing_assets.lib.models.lightgbm_regression import LGBM_PARAMS, _constrained, model_input


def main() -> None:
    import lightgbm as lgb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("feature_matrix", help="feature_matrix.parquet of a demo instance")
    args = ap.parse_args()
    fm = pd.read_parquet(args.feature_matrix)
    X, y, folds = model_input(fm), np.log(fm["price"].to_numpy()), fm["fold"].to_numpy()
    tr, va = folds != 0, folds == 0  # one fold's training, early stopping on the held-out fold

    def train(threads: int, seed: int = 42) -> int:
        params = {**_constrained(LGBM_PARAMS, X), "seed": seed, "num_threads": threads}  # as the pipeline trains
        dtr = lgb.Dataset(X[tr], y[tr], categorical_feature=["category"], free_raw_data=False)
        dva = lgb.Dataset(X[va], y[va], reference=dtr)
        booster = lgb.train(
            params, dtr, num_boost_round=3000, valid_sets=[dva], callbacks=[lgb.early_stopping(150, verbose=False)]
        )
        return booster.best_iteration

    for threads in (2, 1):
        t = time.perf_counter()
        it = train(threads)
        print(f"one training, {threads} thread(s): {time.perf_counter() - t:.1f} s, best iteration {it}")
    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        its = list(pool.map(lambda s: train(1, s), [42, 43]))
    print(f"two trainings side by side, 1 thread each: {time.perf_counter() - t:.1f} s, best iterations {its}")


if __name__ == "__main__":
    main()
