"""The composed feature builders behind ``knn_features`` and ``feature_matrix`` on real labeled sample
rows: a row's features (and those of every row in its fold) never depend on its own price, other
folds' rows do; shapes, column groups, the fitted feature space, and errors (a row without a price or
fold is refused)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.catalog.parsing import parse_catalog
from pricing_assets.lib.features.listing import NUMERIC_FEATURES, build_listing_features
from pricing_assets.lib.features.training_data import build_feature_matrix, build_feature_matrix_and_space
from pricing_assets.lib.models.cross_validation import assign_folds
from pricing_assets.lib.models.tfidf_ridge import product_text, train_tfidf_ridge_cv
from pricing_assets.lib.retrieval.knn import build_knn_features
from pricing_assets.lib.retrieval.reference import fit_knn_reference

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample" / "amazon_pricing_sample.csv"
N = 240


@pytest.fixture(scope="module")
def inputs():
    """240 real labeled rows, 4 grouped folds, a fake 16-d text embedding and a fake 8-d image
    embedding present on 60 rows."""
    raw = pd.read_csv(SAMPLE, dtype={"sample_id": str}, nrows=N)
    items = parse_catalog(raw)
    items["price"] = raw["price"].to_numpy(dtype=float)
    items["fold"] = assign_folds(items["sample_id"], raw["image_link"], 4, 42)
    items["is_labeled"] = True
    rng = np.random.default_rng(0)
    has_img = np.zeros(N, bool)
    has_img[rng.choice(N, 60, replace=False)] = True
    items["status"] = np.where(has_img, "ok", "missing")
    for col in ("width", "height", "n_bytes"):
        items[col] = np.where(has_img, rng.integers(100, 1000, N), np.nan)
    items["n_lines"] = np.where(has_img, rng.integers(0, 5, N), np.nan)
    bf = build_listing_features(items)
    text = rng.normal(size=(N, 16)).astype(np.float32)
    image = rng.normal(size=(N, 8)).astype(np.float32) * has_img[:, None]
    image[has_img] /= np.linalg.norm(image[has_img], axis=1, keepdims=True)
    embs = [
        ("fake_text", "text", text / np.linalg.norm(text, axis=1, keepdims=True), np.ones(N, bool)),
        ("fake_image", "image", image, has_img),
    ]
    return items, bf, embs


def _ridge_frame(items):
    """The ``tfidf_ridge_predictions`` columns the feature matrix reads: OOF prices (USD) of the full-text ridge."""
    cv = train_tfidf_ridge_cv(
        product_text(items), np.log1p(items["price"].to_numpy(dtype=float)), items["fold"].to_numpy()
    )
    return pd.DataFrame({"sample_id": items["sample_id"], "pred_price": np.clip(np.expm1(cv.oof_log), 0.01, None)})


def _features(items, bf, embs):
    knn = build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4)
    fm, groups = build_feature_matrix(
        items, bf, knn, _ridge_frame(items), embs, text_pca_components=4, image_pca_components=3
    )
    return knn, fm, groups


def test_shapes_columns_and_groups(inputs):
    items, bf, embs = inputs
    knn, fm, groups = _features(items, bf, embs)
    assert len(knn) == len(fm) == N
    assert knn["sample_id"].tolist() == fm["sample_id"].tolist() == items["sample_id"].tolist()
    for prefix in (
        "knn_fake_text_",
        "knn_tfidf_",
        "knn_title_char_",
        "knn_title_word_",
        "knn_image_fake_image_",
        "uknn_fake_text_unit_",
        "uknn_tfidf_unit_",
    ):
        assert any(c.startswith(prefix) for c in knn.columns), prefix
    # image neighbours exist only where there is a photo
    img_cols = [c for c in knn.columns if c.startswith("knn_image_")]
    has = embs[1][3]
    assert knn.loc[~has, img_cols].isna().all().all() and knn.loc[has, img_cols].notna().all().all()
    assert groups == {
        "engineered": len(NUMERIC_FEATURES),
        "target_encoding": 2,
        "knn": knn.shape[1] - 1,
        "stacked": 2,
        "image": 5,
        "embedding_pca": 7,
    }
    assert fm.shape[1] == 3 + sum(groups.values()) + 1  # sample_id, fold, price + features + category
    assert fm.columns[:3].tolist() == ["sample_id", "fold", "price"] and fm["category"].dtype == object
    # the PCA of the image model is NaN where there is no photo
    assert fm.loc[~has, "fake_image_pc0"].isna().all() and fm.loc[has, "fake_image_pc0"].notna().all()


def test_a_labeled_price_never_reaches_its_own_fold(inputs):
    items, bf, embs = inputs
    _, base, _ = _features(items, bf, embs)
    i = 5
    changed = items.copy()
    changed.loc[i, "price"] = 9000.0  # absurd
    _, new, _ = _features(changed, bf, embs)
    feats = [c for c in base.columns if c not in ("sample_id", "fold", "price", "category")]
    folds = items["fold"].to_numpy()
    same = folds == folds[i]
    a, b = base[feats].to_numpy(float), new[feats].to_numpy(float)
    assert np.allclose(a[same], b[same], equal_nan=True, rtol=0, atol=1e-6)
    # the change is live: other folds' target encodings / kNN / ridges move
    assert not np.allclose(a[~same], b[~same], equal_nan=True)


def test_errors(inputs):
    items, bf, embs = inputs
    with pytest.raises(ValueError, match="no text embedding"):
        build_knn_features(items, bf, [e for e in embs if e[1] == "image"])
    knn = build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4)
    ridge = pd.DataFrame({"sample_id": items["sample_id"], "pred_price": 10.0})
    with pytest.raises(ValueError, match=rf"ridge_predictions lacks sample_ids \['{items['sample_id'][3]}'\]"):
        build_feature_matrix(items, bf, knn, ridge.drop(index=3), embs)


def test_no_pca_columns_by_default(inputs):
    """The pipeline's default: no embedding PCA columns (they made LightGBM worse on the sample)."""
    items, bf, embs = inputs
    knn = build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4)
    ridge = pd.DataFrame({"sample_id": items["sample_id"], "pred_price": 10.0})
    fm, groups = build_feature_matrix(items, bf, knn, ridge, embs)
    assert groups["embedding_pca"] == 0 and not [c for c in fm.columns if "_pc" in c]
    assert fm.shape[1] == 3 + sum(groups.values()) + 1


def test_feature_space_holds_the_maps_of_every_row(inputs):
    """What a product without a price is encoded with: the target-encoding maps fitted on all rows
    (smoothed means, m = 10), the title ridge's fold models, the column order."""
    items, bf, embs = inputs
    knn = build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4)
    fm, _, space = build_feature_matrix_and_space(items, bf, knn, _ridge_frame(items), embs)
    y = np.log1p(items["price"].to_numpy(dtype=float))
    brand = bf.set_index("sample_id").loc[items["sample_id"], "brand"].astype(str).to_numpy()
    mapping, prior = space.target_encoding["brand"]
    assert prior == pytest.approx(y.mean(), rel=1e-12)
    b = brand[0]
    assert mapping[b] == pytest.approx((y[brand == b].sum() + 10.0 * y.mean()) / ((brand == b).sum() + 10.0), rel=1e-9)
    assert len(mapping) == len(set(brand)) and len(space.title_ridge) == 4
    assert space.columns == list(fm.columns)


@pytest.mark.parametrize(
    "column,value,message",
    [
        ("price", np.nan, r"1 rows without a finite price \(first: row 7\)"),
        ("fold", -1, r"1 rows with a fold < 0 \(first: row 7\)"),
    ],
)
def test_a_row_without_a_price_or_fold_is_refused(inputs, column, value, message):
    items, bf, embs = inputs
    bad = items.copy()
    bad.loc[7, column] = value
    with pytest.raises(ValueError, match="fit_knn_reference: " + message):
        fit_knn_reference(bad, bf, embs, k=5, unit_k=8, n_folds=4)
    with pytest.raises(ValueError, match="build_knn_features: " + message):
        build_knn_features(bad, bf, embs, k=5, unit_k=8, n_folds=4)
    knn = build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4)
    ridge = pd.DataFrame({"sample_id": items["sample_id"], "pred_price": 10.0})
    with pytest.raises(ValueError, match="build_feature_matrix: " + message):
        build_feature_matrix(bad, bf, knn, ridge, embs)


def test_a_reference_of_other_products_is_refused(inputs):
    items, bf, embs = inputs
    sub = items.iloc[:200].reset_index(drop=True)
    other = fit_knn_reference(sub, bf, [(n, m, v[:200], h[:200]) for n, m, v, h in embs], k=5, unit_k=8, n_folds=4)
    with pytest.raises(ValueError, match="build_knn_features: the reference was fitted on other products"):
        build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4, reference=other)
    same = fit_knn_reference(items, bf, embs, k=5, unit_k=8, n_folds=4)
    with_ref = build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4, reference=same)
    pd.testing.assert_frame_equal(with_ref, build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4))
