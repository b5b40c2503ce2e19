"""A bounded hyperparameter search for the distributional LightGBM under the pipeline's folds (#32 step 2).

    pip install -e '.[bench]'     # optuna
    DAGSTER_HOME=<a materialised instance> .venv/bin/python benchmarks/tune_distributional.py [--trials 30]

The distributional model is in the product as a partner of the blend, so the objective is the blend's
OOF SMAPE: Optuna's TPE sampler (seed 0) searches :data:`SPACE` for the parameters whose OOF prices
(``lib.models.distributional.train_lightgbm_dist_cv``, the instance's ``feature_matrix``, the same
grouped 5 folds, seed 42), blended with the instance's stored LightGBM and TF-IDF ridge OOF predictions
(``lib.models.blend.blend_oof_predictions``, weights fitted on every OOF row as the pipeline does),
score lowest. Trial 0 is today's ``DIST_PARAMS`` / ``N_BINS``. The best trial and today's parameters
are then re-run with seeds 7 and 123, so a gain is compared with the seed spread before anything is
adopted. Not part of ``make demo``; results go to ``docs/experiments.md``. Prints every trial and a
final table; writes ``--out`` (JSON, default under /tmp).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: The search space: (low, high, log scale) per parameter; integers for leaves, leaf size and bins.
SPACE = {
    "learning_rate": (0.02, 0.1, True),
    "num_leaves": (7, 31, False),
    "min_data_in_leaf": (10, 80, False),
    "feature_fraction": (0.3, 0.9, False),
    "lambda_l2": (0.1, 20.0, True),
    "n_bins": (12, 32, False),
}
#: The models whose stored OOF predictions the distributional model is blended with.
PARTNERS = ("lightgbm", "tfidf_ridge")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="/tmp/tune_distributional.json")
    args = ap.parse_args()

    import optuna

    from benchmarks.tune_lightgbm import SEEDS, suggest
    from pricing_assets import cli
    from pricing_assets.definitions import defs
    from pricing_assets.lib.models.blend import align_predictions, blend_oof_predictions
    from pricing_assets.lib.models.distributional import DIST_PARAMS, N_BINS, train_lightgbm_dist_cv
    from pricing_assets.lib.models.lightgbm_regression import model_input
    from pricing_assets.lib.models.metrics import smape

    instance = cli.get_instance()
    fm = defs.load_asset_value("feature_matrix", instance=instance)
    stored = {n: defs.load_asset_value(f"{n}_predictions", instance=instance) for n in PARTNERS}
    X, folds = model_input(fm), fm["fold"].to_numpy()
    y = np.log1p(fm["price"].to_numpy(dtype=float))
    price = fm["price"].to_numpy(dtype=float)
    cat = ["category"] if "category" in X else None

    def scores(params: dict, seed: int) -> tuple[float, float, dict, float]:
        """(distributional OOF SMAPE, blend OOF SMAPE, blend weights, seconds)."""
        t0 = time.perf_counter()
        p = dict(params)
        n_bins = int(p.pop("n_bins"))
        cv = train_lightgbm_dist_cv(
            X, y, folds, params=p, n_bins=n_bins, seed=seed, num_threads=args.threads, categorical=cat
        )
        pred = np.expm1(cv.oof_log)
        dist = fm[["sample_id", "fold", "price"]].assign(pred_price=pred)
        base, mats = align_predictions({**stored, "lightgbm_distributional": dist})
        blended, w = blend_oof_predictions(base, mats, sorted([*PARTNERS, "lightgbm_distributional"]))
        weights = dict(zip(w["model"], w["weight"].round(3)))
        seconds = time.perf_counter() - t0
        return float(smape(price, pred)), float(smape(blended["price"], blended["pred_price"])), weights, seconds

    def objective(trial) -> float:
        params = suggest(trial, SPACE)
        alone, blend, weights, seconds = scores(params, SEEDS[0])
        trial.set_user_attr("alone", alone)
        print(
            f"trial {trial.number}: blend {blend:.3f} alone {alone:.3f} ({seconds:.0f} s) {weights} {params}",
            flush=True,
        )
        return blend

    today = {**{k: DIST_PARAMS[k] for k in SPACE if k in DIST_PARAMS}, "n_bins": N_BINS}
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial(today)  # trial 0: today's parameters
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=args.trials)
    best = study.best_params
    report = {"trials": args.trials, "best_trial": study.best_trial.number, "best_params": best, "today": today}
    for label, params in (("today", today), ("best", best)):
        runs = [scores(params, s) for s in SEEDS]
        blends, alones = [r[1] for r in runs], [r[0] for r in runs]
        report[label] = {
            "blend_per_seed": dict(zip(map(str, SEEDS), blends)),
            "alone_per_seed": dict(zip(map(str, SEEDS), alones)),
            "blend_mean": float(np.mean(blends)),
            "blend_spread": float(max(blends) - min(blends)),
            "alone_mean": float(np.mean(alones)),
            "weights_seed_42": runs[0][2],
        }
        print(f"{label}: {report[label]}", flush=True)
    report["blend_gain"] = report["today"]["blend_mean"] - report["best"]["blend_mean"]
    Path(args.out).write_text(json.dumps(report, indent=2, default=float))
    print(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
