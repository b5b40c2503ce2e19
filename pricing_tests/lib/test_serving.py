"""The serving path (``lib.serving``): a new product scored with the fitted artifacts gets exactly the
features and prices the training path gives the same row as an unlabeled row of the same labels."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.blend import apply_blend
from pricing_assets.lib.distributional import predict_lightgbm_dist, train_lightgbm_dist_cv
from pricing_assets.lib.knn import build_knn_features, fit_knn_reference, knn_features_for_new_rows
from pricing_assets.lib.lightgbm_regression import model_input, predict_lightgbm, refit_lightgbm, train_lightgbm_cv
from pricing_assets.lib.mlp import MLPConfig, MLPInputs, TabularTransform, predict_mlp, tabular_matrix, train_mlp_cv
from pricing_assets.lib.model_predictions import predictions_frame
from pricing_assets.lib.serving import ServingModel, labeled_fingerprint, mlp_branches, mlp_tab_exclude, model_version, score_new_rows, to_price
from pricing_assets.lib.tfidf_ridge import predict_tfidf_ridge, product_text, tfidf_ridge_every_row
from pricing_assets.lib.training_data import build_feature_matrix_and_space, feature_rows_for_new_items
from pricing_tests.lib.test_feature_assembly import N_UNLABELED, inputs  # noqa: F401 (fixture)


def _split(items, bf, embs):
    lab = (items["fold"] >= 0).to_numpy()
    new = items[~lab].reset_index(drop=True)
    new_embs = [(n, m, v[~lab], h[~lab]) for n, m, v, h in embs]
    return lab, new, bf[~lab].reset_index(drop=True), new_embs


@pytest.fixture(scope="module")
def trained(inputs):  # noqa: F811
    """The training path over labeled + unlabeled rows (unlabeled rows scored there), and a
    ServingModel of the same fits."""
    items, bf, embs = inputs
    lab = (items["fold"] >= 0).to_numpy()
    ref = fit_knn_reference(items, bf, embs, k=5, unit_k=8, n_folds=4)
    knn = build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4, reference=ref)
    ridge_log, ridge_cv = tfidf_ridge_every_row(product_text(items), np.log1p(items["price"].to_numpy(dtype=float)), items["fold"].to_numpy())
    fm, _, space = build_feature_matrix_and_space(items, bf, knn, predictions_frame(items, ridge_log[lab], ridge_log[~lab]), embs, text_pca_components=4, image_pca_components=3)
    X = model_input(fm)
    y = np.log1p(fm.loc[lab, "price"].to_numpy(dtype=float))
    folds = fm.loc[lab, "fold"].to_numpy()
    params = {"learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 5}
    cv = train_lightgbm_cv(X[lab], y, folds, params=params, num_boost_round=60, early_stopping_rounds=10, categorical=["category"], n_bags=1)
    final = refit_lightgbm(X[lab], y, cv.best_iterations, params=params, categorical=["category"], n_bags=1)
    dist = train_lightgbm_dist_cv(X[lab], y, folds, n_bins=6, params={"learning_rate": 0.2, "num_leaves": 7}, early_stopping_rounds=5, categorical=["category"])
    tab = TabularTransform.fit(fm[lab], exclude_prefixes=mlp_tab_exclude(["fake_text", "fake_image"]))
    text, image, has_image = mlp_branches(embs)
    mlp_in = MLPInputs(text, image, has_image, tab.transform(fm), list(tab.names))
    mlp = train_mlp_cv(mlp_in.take(lab), y, folds, MLPConfig(max_epochs=2, patience=1, text_hidden=8, image_hidden=4, tab_hidden=8, head_hidden=8))
    train_path = {
        "tfidf_ridge": to_price(ridge_log[~lab]),
        "lightgbm": to_price(predict_lightgbm(final, X[~lab])),
        "lightgbm_dist": to_price(predict_lightgbm_dist(dist.models, X[~lab])),
        "fusion_mlp": to_price(predict_mlp(mlp.models, mlp_in.take(~lab))),
    }
    fp = labeled_fingerprint(items, 4, 42)
    model = ServingModel(
        version=model_version(fp, pd.Timestamp("2026-11-29T12:00:00Z").to_pydatetime()), fitted_at="2026-11-29T12:00:00+00:00",
        labeled_rows=int(lab.sum()), fingerprint=fp, embedding_models=[("fake_text", "text", 16), ("fake_image", "image", 8)],
        knn=ref, space=space, tfidf_ridge=ridge_cv.models, lightgbm=final, lightgbm_dist=dist.models,
        fusion_mlp={"models": mlp.models, "tab": tab}, blend={"fusion_mlp": 0.1, "lightgbm": 0.5, "lightgbm_dist": 0.2, "tfidf_ridge": 0.2},
    )
    return knn, fm, train_path, model


def test_knn_features_of_new_rows_equal_the_training_paths(inputs, trained):  # noqa: F811
    items, bf, embs = inputs
    knn, _, _, model = trained
    lab, new, new_bf, new_embs = _split(items, bf, embs)
    served = knn_features_for_new_rows(model.knn, new, new_bf, new_embs)
    expected = knn[~lab].reset_index(drop=True)
    assert list(served.columns) == list(expected.columns)
    assert served.shape == (N_UNLABELED, knn.shape[1])
    pd.testing.assert_frame_equal(served, expected, check_exact=False, rtol=1e-5, atol=1e-6)
    assert served.filter(like="knn_image").notna().any().any()  # rows with a photo searched the image view


def test_feature_rows_of_new_items_equal_the_training_paths(inputs, trained):  # noqa: F811
    items, bf, embs = inputs
    knn, fm, _, model = trained
    lab, new, new_bf, new_embs = _split(items, bf, embs)
    new_knn = knn_features_for_new_rows(model.knn, new, new_bf, new_embs)
    rows = feature_rows_for_new_items(model.space, new, new_bf, new_knn, predict_tfidf_ridge(model.tfidf_ridge, product_text(new)), new_embs)
    expected = fm[~lab].reset_index(drop=True)
    assert list(rows.columns) == list(expected.columns) == model.space.columns
    pd.testing.assert_frame_equal(rows, expected, check_exact=False, rtol=1e-5, atol=1e-5, check_dtype=False)


def test_scored_prices_equal_the_training_paths_unlabeled_predictions(inputs, trained):  # noqa: F811
    items, bf, embs = inputs
    _, _, train_path, model = trained
    _, new, new_bf, new_embs = _split(items, bf, embs)
    scored = score_new_rows(model, new, new_bf, new_embs)
    assert scored["sample_id"].tolist() == new["sample_id"].tolist()
    assert (scored["model_version"] == model.version).all() and model.version.startswith("20261129T120000Z-")
    for name, expected in train_path.items():
        np.testing.assert_allclose(scored[f"pred_{name}"].to_numpy(), expected, rtol=1e-5, err_msg=name)
    names = list(model.blend)
    blend = apply_blend(np.column_stack([train_path[n] for n in names]), np.array([model.blend[n] for n in names]))
    np.testing.assert_allclose(scored["price"].to_numpy(), blend, rtol=1e-5)
    assert (scored["price"] > 0).all()


def test_scoring_one_row_gives_the_same_price_as_in_a_batch(inputs, trained):  # noqa: F811
    """No transductive step: a product's price does not depend on the others scored with it."""
    items, bf, embs = inputs
    _, _, _, model = trained
    _, new, new_bf, new_embs = _split(items, bf, embs)
    batch = score_new_rows(model, new, new_bf, new_embs)
    one = score_new_rows(model, new.iloc[[7]], new_bf.iloc[[7]], [(n, m, v[[7]], h[[7]]) for n, m, v, h in new_embs])
    assert one["price"].iloc[0] == pytest.approx(batch["price"].iloc[7], rel=1e-6)


def test_empty_batch_and_missing_embedding(inputs, trained):  # noqa: F811
    items, bf, embs = inputs
    _, _, _, model = trained
    _, new, new_bf, new_embs = _split(items, bf, embs)
    empty = score_new_rows(model, new.iloc[:0], new_bf.iloc[:0], [(n, m, v[:0], h[:0]) for n, m, v, h in new_embs])
    assert len(empty) == 0 and {"sample_id", "price", "model_version"} <= set(empty.columns)
    with pytest.raises(ValueError, match="no embeddings of models \\['fake_image'\\]"):
        score_new_rows(model, new, new_bf, new_embs[:1])


def test_tabular_transform_applies_the_training_rows_quantiles():
    train = pd.DataFrame({"sample_id": list("abcd"), "q": [1.0, 2.0, 3.0, np.nan], "cat": ["x", "y", "x", "y"]})
    t = TabularTransform.fit(train, exclude_prefixes=("sample_id",))
    assert t.names == ["q", "q__isna", "cat=x", "cat=y"]
    X, names = tabular_matrix(train, exclude_prefixes=("sample_id",))
    np.testing.assert_array_equal(t.transform(train), X)
    new = pd.DataFrame({"sample_id": ["e"], "q": [100.0], "cat": ["z"]})  # beyond the fitted range, unseen category
    row = t.transform(new)[0]
    assert row[0] == pytest.approx(X[:, 0].max()) and row[1] == 0 and row[2] == row[3] == 0


def test_fingerprint_names_the_labels():
    a = pd.DataFrame({"sample_id": ["1", "2", "3"], "price": [1.0, 2.0, np.nan]})
    assert labeled_fingerprint(a, 5, 42) == labeled_fingerprint(a.iloc[::-1], 5, 42)  # order does not matter
    assert labeled_fingerprint(a, 5, 42) == labeled_fingerprint(a.assign(price=[1.0, 2.0, 9.0]).iloc[:2], 5, 42)  # unlabeled rows do not count
    assert labeled_fingerprint(a, 5, 42) != labeled_fingerprint(a.assign(price=[1.0, 2.5, np.nan]), 5, 42)
    assert labeled_fingerprint(a, 5, 42) != labeled_fingerprint(a, 5, 7)
    assert len(labeled_fingerprint(a, 5, 42)) == 64


def test_knn_features_reuse_the_references_tfidf_rows(inputs):  # noqa: F811
    """``build_knn_features`` takes the labeled rows' TF-IDF rows from the reference fitted on the
    same products (one tokenising pass, ``fit_transform``) instead of tokenising them again: those
    rows equal the re-tokenised ones to rounding, so the features are the same but where two
    neighbours tie in similarity; the labeled-only frame of the training path works too."""
    import dataclasses

    from pricing_assets.lib.knn import _transform, _view_texts

    items, bf, embs = inputs
    lab = (items["fold"] >= 0).to_numpy()
    ref = fit_knn_reference(items, bf, embs, k=5, unit_k=8, n_folds=4)
    texts = _view_texts(items[lab].reset_index(drop=True))
    for view, rows in ref.sparse.items():
        again = _transform(ref.vectorizers[view], texts[view])
        assert rows.shape == again.shape and abs(rows - again).max() < 1e-12, view
    reused = build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4, reference=ref)
    # other ids on the same fitted reference: no reuse, every row tokenised by the fitted vectorizers
    other = dataclasses.replace(ref, sample_ids=np.array([f"x{i}" for i in range(ref.n)]))
    tokenised = build_knn_features(items, bf, embs, k=5, unit_k=8, n_folds=4, reference=other)
    a, b = reused.drop(columns="sample_id").to_numpy(), tokenised.drop(columns="sample_id").to_numpy()
    assert np.isclose(a, b, rtol=1e-6, equal_nan=True).mean() > 0.998  # ties may flip, nothing else
    assert np.array_equal(np.isnan(a), np.isnan(b))
    labeled = items[lab].reset_index(drop=True)
    l_embs = [(n, m, v[lab], h[lab]) for n, m, v, h in embs]
    only = build_knn_features(labeled, bf, l_embs, k=5, unit_k=8, n_folds=4, reference=fit_knn_reference(labeled, bf, l_embs, k=5, unit_k=8, n_folds=4))
    assert only["sample_id"].tolist() == labeled["sample_id"].tolist() and list(only.columns) == list(reused.columns)
    assert np.isfinite(only.filter(regex="^knn_tfidf_").to_numpy()).all()
