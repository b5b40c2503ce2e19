"""Every asset's pandera contract accepts real sample rows and rejects a row that breaks it."""

import numpy as np
import pandas as pd
import pytest

import data_contracts as dc
from pricing_assets.checks import contract_result, validate_contract
from pricing_assets.lib.catalog.parsing import parse_catalog, read_catalog
from pricing_assets.lib.features.listing import build_listing_features
from pricing_assets.lib.images.fetch import FetchConfig, fetch_images
from pricing_assets.lib.retrieval.knn import knn_price_features
from pricing_tests.helpers import IMAGES, LABELED_CSV, sample_slice


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Real frames of every stage, built by the pipeline's pure functions from real sample rows."""
    d = tmp_path_factory.mktemp("contracts")
    lab, _ = sample_slice(n_labeled=40, n_with_image=3, n_unlabeled=0)
    lab.to_csv(d / "lab.csv", index=False)
    rows, _ = read_catalog(str(d / "lab.csv"))
    bad = pd.read_csv(LABELED_CSV, dtype=str).head(5)
    bad.loc[1, "price"] = "-3"
    bad.loc[2, "catalog_content"] = "   "
    bad.to_csv(d / "bad.csv", index=False)
    _, quarantine = read_catalog(str(d / "bad.csv"))
    items = parse_catalog(rows)
    images = fetch_images(
        rows[["sample_id", "image_link"]],
        FetchConfig(store_base=str(d / "store"), mirror_dir=str(IMAGES), offline=True),
    )
    ocr = pd.DataFrame(
        {"sample_id": items["sample_id"], "ocr_status": "no_image", "ocr_text": "", "n_lines": 0, "mean_conf": np.nan}
    )
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(len(items), 384)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    emb = pd.DataFrame({"sample_id": items["sample_id"], "cache_key": items["content_hash"], "embedding": list(vec)})
    folds = np.arange(len(items)) % 5
    products = items.assign(batch="b1", is_labeled=True, fold=folds)
    brand = build_listing_features(items)
    knn = pd.concat([items[["sample_id"]], knn_price_features(vec, np.log1p(items["price"].to_numpy()), folds)], axis=1)
    fm = pd.DataFrame({"sample_id": items["sample_id"], "fold": folds, "price": items["price"], "x": 1.0})
    preds = pd.DataFrame(
        {"sample_id": items["sample_id"], "fold": folds, "price": items["price"], "pred_price": items["price"] * 1.1}
    )
    out = pd.DataFrame(
        {"sample_id": items["sample_id"], "price": items["price"] * 0.9, "batch": "b1", "model_version": "v1"}
    )
    return {
        "raw_catalog": rows,
        "catalog_quarantine": quarantine,
        "catalog_items": items,
        "product_images": images,
        "ocr_text": ocr,
        "embeddings": emb,
        "products": products,
        "listing_features": brand,
        "knn_features": knn,
        "feature_matrix": fm,
        "model_predictions": preds,
        "promoted_blend": preds,
        "price_predictions": out,
        "batch_predictions": out.drop(columns=["batch"]).assign(pred_lightgbm=1.0),
        "blend_weights": pd.DataFrame(
            {"model": ["lightgbm", "tfidf_ridge"], "weight": [0.75, 0.25], "oof_smape": [54.7, 62.1]}
        ),
        "served_prices": out.drop(columns=["batch"]).assign(batch="b1", served_at="2026-12-06T10:00:00+00:00"),
        "price_explanations": pd.DataFrame(
            {
                "sample_id": ["a", "a", "b"],
                "rank": [1, 2, 1],
                "comparable_id": ["x", "y", "x"],
                "comparable_name": ["X", "Y", "X"],
                "comparable_price": [5.0, 7.5, 5.0],
                "similarity": [0.9, 0.8, 0.7],
                "view": ["text:m", "tfidf", "text:m"],
            }
        ),
        "price_drivers": pd.DataFrame(
            {
                "sample_id": ["a", "a", "b"],
                "rank": [1, 2, 1],
                "feature": ["pack quantity", "brand's typical price", "pack quantity"],
                "value": ["12", "9.99 USD", "1"],
                "contribution": [0.59, -0.1, -0.2],
                "effect": np.exp([0.59, -0.1, -0.2]),
                "base_price": [14.9, 14.9, 14.9],
                "model_version": "v1",
                "model": "lightgbm",
            }
        ),
        "served_accuracy": pd.DataFrame(
            {
                "model_version": ["v1", "v2"],
                "batch": "b1",
                "rows": [3, 4],
                "smape": [40.0, 38.5],
                "median_ape": [30.0, 28.0],
                "interval_coverage": [np.nan, 0.8],
            }
        ),
    }


def _set(col, value, row=0):
    def f(df):
        df = df.copy()
        df.loc[df.index[row], col] = value
        return df

    return f


def _dup_id(df):
    df = df.copy()
    df.loc[df.index[1], "sample_id"] = df.loc[df.index[0], "sample_id"]
    return df


def _vector(v):
    def f(df):
        df = df.copy()
        df["embedding"] = df["embedding"].astype(object)
        df.at[df.index[0], "embedding"] = v
        return df

    return f


CASES = [
    ("raw_catalog", _dup_id, "sample_id"),
    ("raw_catalog", _set("price", -1.0), "price"),
    ("raw_catalog", _set("catalog_content", "   "), "catalog_content"),
    ("catalog_quarantine", _set("reason", ""), "reason"),
    ("catalog_items", _set("text_chars", -1), "text_chars"),
    ("catalog_items", _set("n_bullets", -1), "n_bullets"),
    ("product_images", _set("status", "exploded"), "status"),
    ("product_images", lambda df: _set("image_uri", None, int(np.flatnonzero(df["status"].eq("ok"))[0]))(df), None),
    ("ocr_text", _set("mean_conf", 1.5), "mean_conf"),
    ("embeddings", _vector(np.full(384, 2.0, np.float32)), "embedding"),
    ("embeddings", _vector(np.ones(10, np.float32) / np.sqrt(10)), "embedding"),
    ("products", _set("price", np.nan), "price"),
    ("products", _set("fold", -1), "fold"),
    ("products", _set("is_labeled", False), "is_labeled"),
    ("listing_features", _set("pack_count", 0.0), "pack_count"),
    ("knn_features", lambda df: _set(df.columns[1], np.nan)(df), None),
    ("feature_matrix", _set("price", np.nan), "price"),
    ("feature_matrix", _set("fold", -1), "fold"),
    ("model_predictions", _set("pred_price", np.inf), "pred_price"),
    ("promoted_blend", _set("fold", -1), "fold"),
    ("model_predictions", _set("fold", -1), "fold"),
    ("model_predictions", _set("price", np.nan), "price"),
    ("blend_weights", _set("weight", -0.1), "weight"),
    ("blend_weights", lambda df: df.assign(weight=[0.5, 0.25]), None),  # not convex: the weights sum to 0.75
    ("blend_weights", lambda df: df.assign(model=["lightgbm", "lightgbm"]), "model"),
    ("price_explanations", _set("similarity", 1.5), "similarity"),
    ("price_explanations", _set("comparable_price", 0.0), "comparable_price"),
    ("price_explanations", lambda df: df.assign(rank=[1, 1, 1]), None),  # rank 1 twice for one product
    ("price_drivers", _set("effect", 0.0), "effect"),
    ("price_drivers", _set("contribution", np.inf), "contribution"),
    ("price_drivers", _set("feature", ""), "feature"),
    ("price_drivers", lambda df: df.assign(feature="pack quantity"), None),  # one driver twice for a product
    ("served_prices", _dup_id, "sample_id"),
    ("served_prices", _set("price", -1.0), "price"),
    ("served_prices", _set("model_version", ""), "model_version"),
    ("served_accuracy", _set("smape", 250.0), "smape"),
    ("served_accuracy", _set("interval_coverage", 1.5), "interval_coverage"),
    ("served_accuracy", lambda df: df.assign(model_version="v1"), None),  # a (model version, batch) pair twice
    (
        "price_predictions",
        lambda df: df.assign(price_low=df["price"] * 1.1, price_high=df["price"] * 2),
        None,
    ),  # price outside
    ("price_predictions", _dup_id, "sample_id"),
    ("price_predictions", _set("price", 0.0), "price"),
    ("price_predictions", lambda df: df.assign(extra=1), None),
    ("price_predictions", _set("model_version", ""), "model_version"),
    ("batch_predictions", _dup_id, "sample_id"),
    ("batch_predictions", _set("price", -1.0), "price"),
]


def _schema(name):
    return dc.embedding_schema(384) if name == "embeddings" else dc.CONTRACTS[name]


@pytest.mark.parametrize("name", sorted({c[0] for c in CASES}))
def test_contract_accepts_real_rows(frames, name):
    df = frames[name]
    assert len(df) > 0
    assert validate_contract(df, _schema(name)) is None


@pytest.mark.parametrize("name,breaker,column", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_contract_rejects_a_bad_row(frames, name, breaker, column):
    failures = validate_contract(breaker(frames[name]), _schema(name))
    assert failures is not None and len(failures) >= 1
    if column is not None:
        assert column in set(failures["column"].astype(str)), failures


def test_every_asset_contract_is_covered():
    assert set(dc.CONTRACTS) | {"embeddings"} == {c[0] for c in CASES}


def test_failed_contract_is_an_error_severity_blocking_result(frames):
    res = contract_result(_dup_id(frames["price_predictions"]), dc.PricePredictions, "price_predictions")
    assert res.passed is False and res.severity.value == "ERROR"
    assert res.metadata["failures"].value >= 1
    ok = contract_result(frames["price_predictions"], dc.PricePredictions, "price_predictions")
    assert ok.passed is True and ok.metadata["rows"].value == len(frames["price_predictions"])
