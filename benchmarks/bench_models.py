"""Baselines vs the pipeline's models, OOF SMAPE on the same folds, in one process.

    DAGSTER_HOME=/tmp/bench_models_home PRICING_IMAGES_OFFLINE=1 OMP_NUM_THREADS=1 \
        .venv/bin/python benchmarks/bench_models.py            # materialises the sample once if needed
    .venv/bin/python benchmarks/bench_models.py --lgbm-grid     # + the LightGBM configurations tried
    .venv/bin/python benchmarks/bench_models.py --mlp-grid      # + the MLP configurations tried
    .venv/bin/python benchmarks/bench_models.py --seed-spread   # + single-seed LightGBM runs (noise level)
    .venv/bin/python benchmarks/bench_models.py --refit         # + fold-average vs refit on held-out folds
    .venv/bin/python benchmarks/bench_models.py --learning-curve  # only: the gap with 25/50/75/100% of prices known
    .venv/bin/python benchmarks/bench_models.py --serving-check   # only: each fold priced by the serving path vs its OOF

Inputs come from a materialised Dagster instance (``products``, ``feature_matrix``, the embedding
assets): the script ingests the bundled labeled + unlabeled sample and runs ``pricing materialize``
into ``$DAGSTER_HOME`` when ``feature_matrix`` is missing there. Every model below is then trained
here by the same pure functions the assets call, on the folds stored in ``products.fold``
(``lib.models.cross_validation.assign_folds``: grouped by image link, 5 folds, seed 42):

- median price (of the training folds);
- TF-IDF + ridge on the raw ``catalog_content`` (word 1-2-grams, alpha 1: the issue's baseline);
- tfidf_ridge: the pipeline's word + char TF-IDF ridge on the parsed text;
- LightGBM on ``feature_matrix`` (log-price regression); the distributional LightGBM (price-bin
  classifier + expected-SMAPE decision, ``lib.models.distributional``); fusion MLP; their blend (weights
  fitted on OOF; also reported with cross-fitted weights: for each fold, weights fitted on the other
  folds' OOF predictions).
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _materialise_if_missing() -> None:
    import dagster as dg

    from pricing_assets import cli

    inst = cli.get_instance()
    if inst.get_latest_materialization_event(dg.AssetKey("feature_matrix")) is not None:
        return
    os.environ.setdefault("PRICING_IMAGES_OFFLINE", "1")
    cli.ingest(inst, str(REPO / "data/sample/amazon_pricing_sample.csv"), "labeled")
    cli.ingest(inst, str(REPO / "data/sample/amazon_pricing_unlabeled.csv"), "unlabeled")
    from pricing_assets.definitions import defs

    cli.materialize(inst, defs)


def load_inputs():
    """(products, feature_matrix, {embedding name: (modality, vectors, has)}) of the labeled rows, aligned."""
    from pricing_assets import cli
    from pricing_assets.definitions import defs

    products, _, embs = load_all_products()
    fm = defs.load_asset_value("feature_matrix", instance=cli.get_instance())
    fm = fm.set_index("sample_id").loc[products["sample_id"]].reset_index()
    return products, fm, {name: (modality, vec, has) for name, modality, vec, has in embs}


def baseline_oof(raw_text: pd.Series, y_log1p: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The issue's two baselines, OOF on ``folds``: (median of the training folds' ``log1p`` prices,
    TF-IDF (word 1-2-grams, min_df 2, sublinear tf) + ridge (alpha 1) on the raw ``catalog_content``),
    each (n,) float64 ``log1p(price USD)``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    raw_text = pd.Series(raw_text).fillna("").reset_index(drop=True)
    med, ridge = np.zeros(len(y_log1p)), np.zeros(len(y_log1p))
    for f in np.unique(folds):
        tr, va = folds != f, folds == f
        med[va] = np.median(y_log1p[tr])
        m = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), Ridge(alpha=1.0)).fit(
            raw_text[tr], y_log1p[tr]
        )
        ridge[va] = m.predict(raw_text[va])
    return med, ridge


def raw_catalog_text(products: pd.DataFrame) -> pd.Series:
    """The CSV's raw ``catalog_content`` for the products (by sample_id)."""
    raw = pd.read_csv(REPO / "data/sample/amazon_pricing_sample.csv", dtype={"sample_id": str})
    return (
        raw.set_index("sample_id")["catalog_content"].reindex(products["sample_id"]).fillna("").reset_index(drop=True)
    )


def refit_check(X: pd.DataFrame, y: np.ndarray, price: np.ndarray, folds: np.ndarray, cat) -> None:
    """How rows without a price should be predicted: each fold in turn plays the products without a price; a
    K-1-fold CV on the other rows gives (a) its fold boosters' average and (b) a refit on all of them
    (``refit_lightgbm``, rounds from the CV). Prints SMAPE on the held-out rows per fold and overall."""
    from pricing_assets.lib.models.lightgbm_regression import predict_lightgbm, refit_lightgbm, train_lightgbm_cv
    from pricing_assets.lib.models.metrics import smape

    for seed in (42, 7):
        avg, refit = np.zeros(len(y)), np.zeros(len(y))
        for h in np.unique(folds):
            rest, held = folds != h, folds == h
            inner = np.unique(folds[rest], return_inverse=True)[1]
            cv = train_lightgbm_cv(X[rest], y[rest], inner, seed=seed, categorical=cat, num_threads=1)
            avg[held] = predict_lightgbm(cv.models, X[held])
            final = refit_lightgbm(X[rest], y[rest], cv.best_iterations, seed=seed, categorical=cat, num_threads=1)
            refit[held] = predict_lightgbm(final, X[held])
            print(
                f"  refit check seed {seed} held-out fold {h}: fold-average {smape(price[held], np.expm1(avg[held])):.2f}"
                f"  refit {smape(price[held], np.expm1(refit[held])):.2f}",
                flush=True,
            )
        print(
            f"  refit check seed {seed}: fold-average {smape(price, np.expm1(avg)):.2f}  refit {smape(price, np.expm1(refit)):.2f}",
            flush=True,
        )


def load_all_products():
    """(products: the labeled rows, listing_features, [(name, modality, vectors, has)]) from the
    materialised instance; the embeddings from ``product_embeddings``, aligned to ``products``."""
    from pricing_assets import cli
    from pricing_assets.definitions import defs

    inst = cli.get_instance()
    products = defs.load_asset_value("products", instance=inst).reset_index(drop=True)
    bf = defs.load_asset_value("listing_features", instance=inst)
    embs = defs.load_asset_value("product_embeddings", instance=inst).aligned_to(products["sample_id"])
    return products, bf, embs


@dataclass
class Rebuilt:
    """What :func:`rebuild_features` fits on labeled rows: their ``feature_matrix``, the full-text
    TF-IDF ridge's OOF prices (n,) float64 USD as ``tfidf_ridge_predictions`` holds them, and what
    prices a product without a price (:func:`served_features`): the ridge's fold pipelines, the
    ``KnnReference`` and the ``FeatureSpace``."""

    fm: pd.DataFrame
    ridge: np.ndarray
    ridge_models: list
    knn_reference: object
    space: object


def rebuild_features(products: pd.DataFrame, bf: pd.DataFrame, embs: list) -> Rebuilt:
    """``feature_matrix`` rebuilt from the labeled rows ``products`` (their prices and folds) by the
    functions the assets call, with the assets' default config (``KnnConfig``,
    ``FeatureMatrixConfig``, ``CrossValidationResource``); ``embs`` aligned to ``products``."""
    from pricing_assets.defs.training import FeatureMatrixConfig, KnnConfig
    from pricing_assets.lib.features.training_data import build_feature_matrix_and_space
    from pricing_assets.lib.models.tfidf_ridge import product_text, train_tfidf_ridge_cv
    from pricing_assets.lib.retrieval.knn import build_knn_features
    from pricing_assets.lib.retrieval.reference import fit_knn_reference
    from pricing_assets.resources import CrossValidationResource

    knn_cfg, fm_cfg, cv = KnnConfig(), FeatureMatrixConfig(), CrossValidationResource()
    products = products.reset_index(drop=True)
    ridge_cv = train_tfidf_ridge_cv(
        product_text(products), np.log1p(products["price"].to_numpy(dtype=float)), products["fold"].to_numpy()
    )
    ridge = np.clip(np.expm1(ridge_cv.oof_log), 0.01, None)
    ref = fit_knn_reference(products, bf, embs, k=knn_cfg.knn_k, unit_k=knn_cfg.knn_unit_k, n_folds=cv.n_folds)
    knn = build_knn_features(
        products, bf, embs, k=knn_cfg.knn_k, unit_k=knn_cfg.knn_unit_k, n_folds=cv.n_folds, reference=ref
    )
    ridge_frame = pd.DataFrame({"sample_id": products["sample_id"].to_numpy(), "pred_price": ridge})
    fm, _, space = build_feature_matrix_and_space(
        products, bf, knn, ridge_frame, embs, fm_cfg.text_pca_components, fm_cfg.image_pca_components, cv.seed
    )
    return Rebuilt(fm, ridge, ridge_cv.models, ref, space)


def served_features(
    rebuilt: Rebuilt, items: pd.DataFrame, bf: pd.DataFrame, embs: list
) -> tuple[pd.DataFrame, np.ndarray]:
    """The serving path's features of products priced as if they had no price, against what
    ``rebuilt`` fitted (no refit): (their ``feature_matrix``-column rows, (m,) float64 full-text ridge
    prices USD, the fold pipelines' average)."""
    from pricing_assets.lib.features.training_data import feature_rows_for_new_items
    from pricing_assets.lib.models.tfidf_ridge import predict_tfidf_ridge, product_text
    from pricing_assets.lib.retrieval.knn import knn_features_for_new_rows

    items = items.reset_index(drop=True)
    knn = knn_features_for_new_rows(rebuilt.knn_reference, items, bf, embs)
    ridge_log = predict_tfidf_ridge(rebuilt.ridge_models, product_text(items))
    fm = feature_rows_for_new_items(rebuilt.space, items, bf, knn, ridge_log, embs)
    return fm, np.clip(np.expm1(ridge_log), 0.01, None)


def cross_fitted_blend(mats: np.ndarray, price: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """(n,) blended prices (USD), each fold's rows blended with weights fitted on the other folds' OOF
    predictions ``mats`` (n, m) USD."""
    from pricing_assets.lib.models.blend import apply_blend, fit_blend_weights

    out = np.zeros(len(price))
    for k in np.unique(folds):
        w = fit_blend_weights(mats[folds != k], price[folds != k])
        out[folds == k] = apply_blend(mats[folds == k], w)
    return out


LEARNING_CURVE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def learning_curve(fractions=LEARNING_CURVE_FRACTIONS, draws: int = 2) -> pd.DataFrame:
    """How the gap to the baseline grows with the number of known prices.

    For each fraction f of the labeled image-link groups (``draws`` random draws; one at f = 1) only
    the rows of the kept groups are trained on, each in its own fold. Everything is rebuilt from them
    by the pipeline's own functions:
    the full-text ridge, every kNN feature (``build_knn_features``), target encodings and the title
    ridge (``build_feature_matrix``), then LightGBM (3 seed bags), the distributional LightGBM and their
    cross-fitted blend with the ridge (the fusion MLP is left out: its blend weight is 0.00 at f = 1).
    At f = 1 the features are those of the materialised ``feature_matrix``.

    Returns:
        one row per (fraction, draw): labeled rows, OOF SMAPE of median / baseline / LightGBM / dist /
        blend, and the blend's gap to the baseline (SMAPE points).
    """
    from pricing_assets.lib.models.distributional import train_lightgbm_dist_cv
    from pricing_assets.lib.models.lightgbm_regression import model_input, train_lightgbm_cv
    from pricing_assets.lib.models.metrics import smape

    products, bf, embs = load_all_products()
    groups = np.sort(products["image_link"].unique())
    out = []
    for f in fractions:
        for draw in range(1 if f >= 1 else draws):
            t0 = time.perf_counter()
            keep = set(np.random.default_rng(1000 + draw).permutation(groups)[: round(f * len(groups))])
            known = products["image_link"].isin(keep).to_numpy()
            sub = products[known].reset_index(drop=True)
            price = sub["price"].to_numpy(dtype=float)
            y = np.log1p(price)
            folds = sub["fold"].to_numpy()
            med, base = baseline_oof(raw_catalog_text(sub), y, folds)
            rebuilt = rebuild_features(sub, bf, [(n, m, v[known], h[known]) for n, m, v, h in embs])
            X = model_input(rebuilt.fm)
            cat = ["category"]
            lgb = train_lightgbm_cv(X, y, folds, categorical=cat, num_threads=1, n_bags=3).oof_log
            dist = train_lightgbm_dist_cv(X, y, folds, categorical=cat, num_threads=1).oof_log
            mats = np.column_stack(
                [np.clip(np.expm1(lgb), 0.01, None), np.clip(np.expm1(dist), 0.01, None), rebuilt.ridge]
            )
            blend = cross_fitted_blend(mats, price, folds)
            row = {"fraction": f, "draw": draw, "labeled_rows": int(known.sum())}
            for name, pred in (
                ("median", np.expm1(med)),
                ("baseline", np.expm1(base)),
                ("lightgbm", np.expm1(lgb)),
                ("lightgbm_dist", np.expm1(dist)),
                ("blend", blend),
            ):
                row[name] = round(smape(price, np.clip(pred, 0.01, None)), 2)
            row["gap"] = round(row["baseline"] - row["blend"], 2)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"  learning curve {row}", flush=True)
            out.append(row)
    return pd.DataFrame(out)


def serving_check(num_threads: int = 1) -> pd.DataFrame:
    """Does OOF SMAPE predict the score on products without a price? Each of the 5 folds in turn is
    priced by the serving path, as the pipeline prices a product without a price.

    Per held-out fold h: everything is rebuilt from the other 4 folds (their own 4-fold OOF features,
    models and blend weights) and the held-out rows are priced with what that fit leaves
    (:func:`served_features`: kNN features against all 4 folds' rows, the target-encoding maps and
    the ridges' fold averages; then the LightGBM refit on the 4 folds, the distributional LightGBM's
    fold ensemble, and the blend of the three with weights fitted on the 4 folds' OOF predictions; the
    fusion MLP is left out: blend weight 0.00). Beside it, the same fold's OOF SMAPE from the usual
    5-fold run (models trained on the same 4 folds, features out-of-fold).

    Returns:
        one row per fold and a mean row: SMAPE of LightGBM / dist / blend, served vs OOF.
    """
    from pricing_assets.lib.models.blend import apply_blend, fit_blend_weights
    from pricing_assets.lib.models.distributional import predict_lightgbm_dist, train_lightgbm_dist_cv
    from pricing_assets.lib.models.lightgbm_regression import (
        model_input,
        predict_lightgbm,
        refit_lightgbm,
        train_lightgbm_cv,
    )
    from pricing_assets.lib.models.metrics import smape

    products, bf, embs = load_all_products()
    all_folds = products["fold"].to_numpy()
    cat = ["category"]

    def fit_models(rebuilt: Rebuilt, served=None):
        """OOF prices (n, 3) of LightGBM, dist and ridge on ``rebuilt``'s rows, the folds, the blend
        weights and, given ``served`` (feature rows, ridge prices), those rows' prices (m, 3)."""
        X = model_input(rebuilt.fm)
        y = np.log1p(rebuilt.fm["price"].to_numpy(dtype=float))
        folds = rebuilt.fm["fold"].to_numpy()
        cv = train_lightgbm_cv(X, y, folds, categorical=cat, num_threads=num_threads, n_bags=3)
        dcv = train_lightgbm_dist_cv(X, y, folds, categorical=cat, num_threads=num_threads)
        oof = np.column_stack(
            [np.clip(np.expm1(np.column_stack([cv.oof_log, dcv.oof_log])), 0.01, None), rebuilt.ridge]
        )
        prices = None
        if served is not None:
            final = refit_lightgbm(X, y, cv.best_iterations, categorical=cat, num_threads=num_threads, n_bags=3)
            Xs = model_input(served[0])
            prices = np.column_stack(
                [
                    np.clip(
                        np.expm1(np.column_stack([predict_lightgbm(final, Xs), predict_lightgbm_dist(dcv.models, Xs)])),
                        0.01,
                        None,
                    ),
                    served[1],
                ]
            )
        return oof, prices, folds, fit_blend_weights(oof, np.expm1(y))

    # the usual 5-fold run: OOF per fold
    oof5, _, folds5, _ = fit_models(rebuild_features(products, bf, embs))
    price5 = products["price"].to_numpy(dtype=float)
    blend5 = cross_fitted_blend(oof5, price5, folds5)
    rows = []
    for h in np.unique(folds5):
        t0 = time.perf_counter()
        held = all_folds == h
        rebuilt = rebuild_features(products[~held], bf, [(n, m, v[~held], has[~held]) for n, m, v, has in embs])
        served = served_features(rebuilt, products[held], bf, [(n, m, v[held], has[held]) for n, m, v, has in embs])
        _, served, _, w = fit_models(rebuilt, served)
        price = products.loc[held, "price"].to_numpy(dtype=float)
        at = folds5 == h
        row = {"held_out_fold": int(h), "rows": int(held.sum())}
        for j, name in enumerate(("lightgbm", "lightgbm_dist")):
            row[f"{name}_oof"] = round(smape(price, oof5[at, j]), 2)
            row[f"{name}_served"] = round(smape(price, served[:, j]), 2)
        row["blend_oof"] = round(smape(price, blend5[at]), 2)
        row["blend_served"] = round(smape(price, apply_blend(served, w)), 2)
        row["blend_weights"] = " ".join(f"{x:.2f}" for x in w)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"  serving check {row}", flush=True)
        rows.append(row)
    out = pd.DataFrame(rows)
    num = out.drop(columns=["blend_weights"]).mean(numeric_only=True).round(2)
    return pd.concat([out, num.to_frame().T.assign(held_out_fold="mean", blend_weights="")], ignore_index=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lgbm-grid", action="store_true", help="also report the LightGBM configurations tried")
    ap.add_argument("--mlp-grid", action="store_true", help="also report the MLP configurations tried")
    ap.add_argument("--ridge-grid", action="store_true", help="also report TF-IDF ridge alphas")
    ap.add_argument(
        "--seed-spread", action="store_true", help="also report single-seed LightGBM runs (seeds 42, 7, 123)"
    )
    ap.add_argument(
        "--refit",
        action="store_true",
        help="also compare, on each fold held out as new products, the fold-average of a 4-fold CV with a refit on all other rows (seeds 42, 7)",
    )
    ap.add_argument(
        "--learning-curve",
        action="store_true",
        help="only: rebuild features and models with 25/50/75/100%% of the prices known and print the gap to the baseline",
    )
    ap.add_argument(
        "--serving-check",
        action="store_true",
        help="only: hold each fold out, price it by the serving path as the pipeline does, compare with its OOF SMAPE",
    )
    ap.add_argument("--threads", type=int, default=1, help="LightGBM threads for --serving-check (default 1)")
    args = ap.parse_args(argv)
    os.environ.setdefault("DAGSTER_HOME", "/tmp/bench_models_home")

    from pricing_assets.lib.models.blend import apply_blend, fit_blend_weights
    from pricing_assets.lib.models.lightgbm_regression import model_input, train_lightgbm_cv
    from pricing_assets.lib.models.metrics import smape
    from pricing_assets.lib.models.mlp import MLPConfig, MLPInputs, tabular_matrix, train_mlp_cv
    from pricing_assets.lib.models.tfidf_ridge import product_text, train_tfidf_ridge_cv

    _materialise_if_missing()
    if args.learning_curve:
        curve = learning_curve()
        print()
        print(curve.to_markdown(index=False))
        means = curve.groupby("fraction")[["labeled_rows", "baseline", "blend", "gap"]].mean().round(2)
        print()
        print(means.to_markdown())
        return 0
    if args.serving_check:
        print()
        print(serving_check(args.threads).to_markdown(index=False))
        return 0
    products, fm, embs = load_inputs()
    folds = products["fold"].to_numpy()
    y = np.log1p(products["price"].to_numpy(dtype=float))
    price = products["price"].to_numpy(dtype=float)
    print(
        f"{len(products)} labeled rows, {len(np.unique(folds))} folds (products.fold), rows per fold {np.bincount(folds).tolist()}"
    )
    rows, oofs = [], {}

    def record(name, oof_log, seconds, note=""):
        pred = np.clip(np.expm1(oof_log), 0.01, None)
        rows.append(
            {"model": name, "oof_smape": round(smape(price, pred), 2), "seconds": round(seconds, 1), "note": note}
        )
        print(f"  {name:<34} {rows[-1]['oof_smape']:>7.2f}  ({seconds:.1f} s) {note}", flush=True)
        return pred

    t = time.perf_counter()
    med, oof = baseline_oof(raw_catalog_text(products), y, folds)
    record("median price", med, 0.0)
    base_ridge = record("TF-IDF + ridge (raw text, baseline)", oof, time.perf_counter() - t)

    text = product_text(products)
    if args.ridge_grid:
        for alpha in (1.0, 2.0, 4.0, 8.0):
            cv = train_tfidf_ridge_cv(text, y, folds, params={"alpha": alpha})
            record(f"tfidf_ridge alpha={alpha}", cv.oof_log, cv.seconds, "grid")
    cv = train_tfidf_ridge_cv(text, y, folds)
    oofs["tfidf_ridge"] = record("tfidf_ridge (word+char, pipeline)", cv.oof_log, cv.seconds)

    X = model_input(fm)
    cat = ["category"] if "category" in X else None
    if args.lgbm_grid:
        grid = [
            {"objective": "huber", "alpha": 1.0},
            {"objective": "huber", "alpha": 0.3},
            {"objective": "l1"},
            {"objective": "regression"},
            {"objective": "l1", "num_leaves": 15, "min_data_in_leaf": 30},
            {"objective": "l1", "feature_fraction": 0.4},
        ]
        for g in grid:
            c = train_lightgbm_cv(X, y, folds, params=g, categorical=cat, num_threads=1)
            record("lgbm " + ",".join(f"{k}={v}" for k, v in g.items()), c.oof_log, c.seconds, "grid")
        for col in [c for c in X.columns if c.startswith("stack_")]:
            c = train_lightgbm_cv(X.drop(columns=[col]), y, folds, categorical=cat, num_threads=1)
            record(f"lgbm without {col}", c.oof_log, c.seconds, "ablation")
        c = train_lightgbm_cv(X, y, folds, categorical=cat, num_threads=1, inner_valid_fraction=0.0)
        record("lgbm early-stopped on held-out fold", c.oof_log, c.seconds, "optimistic, for comparison")
    if args.seed_spread:
        # how much one seed moves OOF SMAPE: differences below this spread are not evidence
        for s in (42, 7, 123):
            c = train_lightgbm_cv(X, y, folds, seed=s, categorical=cat, num_threads=1)
            record(f"LightGBM single seed {s}", c.oof_log, c.seconds, "seed spread")
    if args.refit:
        refit_check(X, y, price, folds, cat)
    cv = train_lightgbm_cv(X, y, folds, categorical=cat, num_threads=1, n_bags=3)
    oofs["lightgbm"] = record(
        "LightGBM (feature_matrix, 3 seeds)", cv.oof_log, cv.seconds, f"iters {cv.best_iterations}"
    )

    from pricing_assets.lib.models.distributional import train_lightgbm_dist_cv

    cv = train_lightgbm_dist_cv(X, y, folds, categorical=cat, num_threads=1)
    oofs["lightgbm_dist"] = record(
        "LightGBM dist (expected-SMAPE)", cv.oof_log, cv.seconds, f"iters {cv.best_iterations}"
    )

    text_m = np.hstack([v for mod, v, _ in embs.values() if mod == "text"])
    img = [(v, h) for mod, v, h in embs.values() if mod == "image"]
    image_m = np.hstack([v for v, _ in img]) if img else np.zeros((len(y), 1), np.float32)
    has_image = np.any([h for _, h in img], axis=0) if img else np.zeros(len(y), bool)
    exclude = ("sample_id", "fold", "price", *(f"{n}_pc" for n in embs))
    tab, cols = tabular_matrix(fm, exclude_prefixes=exclude)
    inputs = MLPInputs(text_m, image_m, has_image, tab, cols)
    if args.mlp_grid:
        for g in (
            {"dropout": 0.1},
            {"dropout": 0.3},
            {"lr": 1e-3},
            {"text_hidden": 128, "head_hidden": 128},
            {"weight_decay": 1e-2},
        ):
            c = train_mlp_cv(inputs, y, folds, MLPConfig(**g))
            record("mlp " + ",".join(f"{k}={v}" for k, v in g.items()), c.oof_log, c.seconds, "grid")
    cv = train_mlp_cv(inputs, y, folds, MLPConfig())
    oofs["fusion_mlp"] = record("fusion MLP", cv.oof_log, cv.seconds, f"epochs {cv.best_iterations}")

    names = sorted(oofs)
    mats = np.column_stack([oofs[n] for n in names])
    w = fit_blend_weights(mats, price)
    t = time.perf_counter()
    record(
        "blend (weights fitted on all OOF)",
        np.log1p(apply_blend(mats, w)),
        0.0,
        "w " + ", ".join(f"{n}={x:.2f}" for n, x in zip(names, w)),
    )
    cross = cross_fitted_blend(mats, price, folds)
    record("blend (cross-fitted weights)", np.log1p(cross), time.perf_counter() - t)

    table = pd.DataFrame(rows)
    blend = table.loc[table["model"] == "blend (cross-fitted weights)", "oof_smape"].iloc[0]
    base = smape(price, base_ridge)
    print()
    print(table.to_markdown(index=False))
    print(f"\nblend (cross-fitted) is {base - blend:.2f} SMAPE points below the TF-IDF + ridge baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
