"""The serving path (``lib.serving.scoring``): products of a held-out fold, priced by a serving model fitted
on the other folds, get what the training path's out-of-fold computation gives them where the two
are the same computation (dense kNN features, target encodings), and prices that follow their OOF
predictions; a product's price does not depend on the others scored with it."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.features.training_data import (
    ProductEmbeddings,
    build_feature_matrix_and_space,
    feature_rows_for_new_items,
)
from pricing_assets.lib.models.blend import align_predictions, blend_oof_predictions
from pricing_assets.lib.models.metrics import smape
from pricing_assets.lib.models.mlp import MLPConfig, TabularTransform, tabular_matrix
from pricing_assets.lib.models.registry import (
    PRICE_MODELS,
    DistributionalConfig,
    LightGBMConfig,
    ModelInputs,
    TfidfRidgeConfig,
    oof_predictions_frame,
    stacked_model,
    training_inputs,
)
from pricing_assets.lib.models.tfidf_ridge import product_text
from pricing_assets.lib.retrieval.knn import build_knn_features, knn_features_for_new_rows
from pricing_assets.lib.retrieval.reference import fit_knn_reference
from pricing_assets.lib.serving.intervals import fit_intervals
from pricing_assets.lib.serving.scoring import (
    ServingModel,
    drivers_model,
    explain_new_rows,
    labeled_fingerprint,
    model_version,
    score_new_rows,
)
from pricing_tests.lib.features.test_feature_assembly import inputs  # noqa: F401 (the shared fixture)

HELD_OUT = 0
#: Small, fast settings of every registry model (the fusion MLP included).
CONFIGS = {
    "lightgbm": LightGBMConfig(
        learning_rate=0.1, num_leaves=7, min_data_in_leaf=5, num_boost_round=60, early_stopping_rounds=10, n_bags=1
    ),
    "lightgbm_distributional": DistributionalConfig(n_bins=6, learning_rate=0.2, num_leaves=7, early_stopping_rounds=5),
    "fusion_mlp": MLPConfig(max_epochs=2, patience=1, text_hidden=8, image_hidden=4, tab_hidden=8, head_hidden=8),
    "tfidf_ridge": TfidfRidgeConfig(),
}
KNN = {"k": 5, "unit_k": 8, "n_folds": 4}


def _take(items, bf, embs, mask):
    return (
        items[mask].reset_index(drop=True),
        bf[mask].reset_index(drop=True),
        [(n, m, v[mask], h[mask]) for n, m, v, h in embs],
    )


def _train(items, bf, embs):
    """What the training assets compute from labeled ``items``, through the same lib functions and the
    price-model registry: (knn features, feature matrix, OOF predictions per model, ServingModel)."""
    ref = fit_knn_reference(items, bf, embs, **KNN)
    knn = build_knn_features(items, bf, embs, reference=ref, **KNN)
    product_embeddings = ProductEmbeddings(items["sample_id"].astype(str).to_numpy(), list(embs))
    fitted, oof = {}, {}

    def fit(spec, feature_matrix=None):
        rows, model_in, y, folds = training_inputs(
            spec.reads, feature_matrix=feature_matrix, products=items, product_embeddings=product_embeddings
        )
        result = spec.train(model_in, y, folds, CONFIGS[spec.name])
        fitted[spec.name], oof[spec.name] = result.fitted, oof_predictions_frame(rows, result.cv.oof_log)

    stacked = stacked_model()
    fit(stacked)  # its OOF predictions are a feature of the feature matrix
    fm, _, space = build_feature_matrix_and_space(
        items, bf, knn, oof[stacked.name], embs, text_pca_components=4, image_pca_components=3
    )
    for name in sorted(PRICE_MODELS):
        if name != stacked.name:
            fit(PRICE_MODELS[name], fm)
    base, model_prices = align_predictions(oof)
    blended, weights = blend_oof_predictions(base, model_prices, sorted(oof))
    intervals = fit_intervals(blended["price"], blended["pred_price"], model_prices, sorted(oof))
    fp = labeled_fingerprint(items, 4, 42)
    model = ServingModel(
        version=model_version(fp, pd.Timestamp("2026-11-29T12:00:00Z").to_pydatetime()),
        fitted_at="2026-11-29T12:00:00+00:00",
        labeled_rows=len(items),
        fingerprint=fp,
        embedding_models=[("fake_text", "text", 16), ("fake_image", "image", 8)],
        knn=ref,
        space=space,
        models=fitted,
        blend=dict(zip(weights["model"], weights["weight"])),
        intervals=intervals,
    )
    return knn, fm, oof, model


@pytest.fixture(scope="module")
def trained(inputs):  # noqa: F811
    """The training path over every row (its OOF results for the held-out fold) and a serving model
    fitted on the other folds only; the held-out fold's rows as new products."""
    items, bf, embs = inputs
    held = (items["fold"] == HELD_OUT).to_numpy()
    knn, fm, oof, _ = _train(items, bf, embs)
    *_, model = _train(*_take(items, bf, embs, ~held))
    return {
        "knn": knn[held].reset_index(drop=True),
        "fm": fm[held].reset_index(drop=True),
        "oof": {n: p[held].reset_index(drop=True) for n, p in oof.items()},
        "model": model,
        "new": _take(items, bf, embs, held),
    }


def test_dense_knn_features_of_new_rows_equal_the_held_out_folds_oof(trained):
    """The OOF search of a held-out row and the serving search are the same search over the other
    folds' rows in the dense views (the TF-IDF views differ only by their vocabulary's rows)."""
    new, new_bf, new_embs = trained["new"]
    served = knn_features_for_new_rows(trained["model"].knn, new, new_bf, new_embs)
    expected = trained["knn"]
    assert list(served.columns) == list(expected.columns) and len(served) == len(new) > 0
    dense = [c for c in served.columns if c.startswith(("knn_fake_text_", "uknn_fake_text_", "knn_image_fake_image_"))]
    assert len(dense) >= 10
    pd.testing.assert_frame_equal(served[dense], expected[dense], check_exact=False, rtol=1e-5, atol=1e-6)
    assert served.filter(like="knn_image").notna().any().any()  # rows with a photo searched the image view


def test_feature_rows_of_new_items_match_the_held_out_folds_oof_rows(trained):
    new, new_bf, new_embs = trained["new"]
    model = trained["model"]
    new_knn = knn_features_for_new_rows(model.knn, new, new_bf, new_embs)
    stacked = stacked_model()
    ridge = stacked.predict(
        model.models[stacked.name], ModelInputs(new["sample_id"].to_numpy(), text=product_text(new))
    )
    rows = feature_rows_for_new_items(model.space, new, new_bf, new_knn, ridge, new_embs)
    expected = trained["fm"]
    assert list(rows.columns) == list(expected.columns) == model.space.columns
    same = [
        "te_brand",
        "te_category",
        *[c for c in rows.columns if c.startswith(("knn_fake_text_", "uknn_fake_text_"))],
    ]
    pd.testing.assert_frame_equal(
        rows[same], expected[same], check_exact=False, rtol=1e-5, atol=1e-5, check_dtype=False
    )


def test_served_prices_follow_the_held_out_folds_oof_predictions(trained):
    new, new_bf, new_embs = trained["new"]
    model = trained["model"]
    scored = score_new_rows(model, new, new_bf, new_embs)
    assert scored["sample_id"].tolist() == new["sample_id"].tolist()
    assert (scored["model_version"] == model.version).all() and model.version.startswith("20261129T120000Z-")
    assert set(model.blend) == set(PRICE_MODELS) and (scored["price"] > 0).all()
    assert (scored["price_low"] <= scored["price"]).all() and (scored["price"] <= scored["price_high"]).all()
    assert (scored["price_high"] / scored["price_low"] > 1).all()  # every price has a real interval
    truth = new["price"].to_numpy()
    for name, oof in trained["oof"].items():
        served = scored[f"pred_{name}"].to_numpy()
        assert oof["sample_id"].tolist() == new["sample_id"].tolist()
        expected = oof["pred_price"].to_numpy()
        # fitted on the same rows by other fold splits: close, not equal (a 2-epoch MLP is near constant,
        # so only its level is compared)
        assert np.median(np.abs(np.log(served / expected))) < 0.3, name
        assert abs(smape(truth, served) - smape(truth, expected)) < 12, name
        if not PRICE_MODELS[name].opt_in:
            assert np.corrcoef(np.log(served), np.log(expected))[0, 1] > 0.75, name


def test_scoring_one_row_gives_the_same_price_as_in_a_batch(trained):
    """No transductive step: a product's price does not depend on the others scored with it."""
    new, new_bf, new_embs = trained["new"]
    batch = score_new_rows(trained["model"], new, new_bf, new_embs)
    one = score_new_rows(
        trained["model"], new.iloc[[7]], new_bf.iloc[[7]], [(n, m, v[[7]], h[[7]]) for n, m, v, h in new_embs]
    )
    assert one["price"].iloc[0] == pytest.approx(batch["price"].iloc[7], rel=1e-6)


def test_empty_batch_missing_embedding_and_missing_model(trained):
    import dataclasses

    new, new_bf, new_embs = trained["new"]
    model = trained["model"]
    empty = score_new_rows(model, new.iloc[:0], new_bf.iloc[:0], [(n, m, v[:0], h[:0]) for n, m, v, h in new_embs])
    assert len(empty) == 0 and {"sample_id", "price", "model_version", "pred_lightgbm"} <= set(empty.columns)
    with pytest.raises(ValueError, match="no embeddings of models \\['fake_image'\\]"):
        score_new_rows(model, new, new_bf, new_embs[:1])
    partial = dataclasses.replace(model, models={k: v for k, v in model.models.items() if k != "lightgbm"})
    with pytest.raises(ValueError, match="blend needs models \\['lightgbm'\\]"):
        score_new_rows(partial, new, new_bf, new_embs)


def test_the_stored_index_is_searched_and_must_hold_the_reference(trained):
    """A model promoted with its text index (``product_index``) prices exactly as one searching an
    index built from the reference's vectors; an index of other products is refused."""
    import dataclasses

    from pricing_assets.lib.retrieval.search import build_index

    new, new_bf, new_embs = trained["new"]
    model = trained["model"]
    assert model.indexes is None
    stored = dataclasses.replace(model, indexes={"fake_text": build_index(model.knn.text["fake_text"])})
    pd.testing.assert_frame_equal(
        score_new_rows(stored, new, new_bf, new_embs), score_new_rows(model, new, new_bf, new_embs)
    )
    wrong = dataclasses.replace(model, indexes={"fake_text": build_index(model.knn.text["fake_text"][:-1])})
    with pytest.raises(ValueError, match="stored index of 'fake_text'"):
        score_new_rows(wrong, new, new_bf, new_embs)


def test_drivers_rebuild_the_served_lightgbm_price_and_leave_the_prices_alone(trained):
    """Every feature's effect times the base price is LightGBM's served price (both methods are exact
    in sum); the top 5 are the largest |log effects|; explaining changes no served price."""
    new, new_bf, new_embs = trained["new"]
    model = trained["model"]
    before = score_new_rows(model, new, new_bf, new_embs)
    every = explain_new_rows(model, new, new_bf, new_embs, top=1000)
    after = score_new_rows(model, new, new_bf, new_embs)
    pd.testing.assert_frame_equal(before, after)  # scoring with explanations = without
    assert drivers_model(model) == "lightgbm" and (every["model"] == "lightgbm").all()
    rebuilt = every.groupby("sample_id", sort=False).apply(
        lambda g: g["base_price"].iloc[0] * np.prod(g["effect"]), include_groups=False
    )
    np.testing.assert_allclose(rebuilt.loc[before["sample_id"]].to_numpy(), before["pred_lightgbm"], rtol=1e-6)
    shap = explain_new_rows(model, new, new_bf, new_embs, top=1000, method="treeshap")
    rebuilt = shap.groupby("sample_id", sort=False).apply(
        lambda g: g["base_price"].iloc[0] * np.prod(g["effect"]), include_groups=False
    )
    np.testing.assert_allclose(rebuilt.loc[before["sample_id"]].to_numpy(), before["pred_lightgbm"], rtol=1e-6)
    with pytest.raises(ValueError, match="method 'lime'"):
        explain_new_rows(model, new, new_bf, new_embs, method="lime")
    top = explain_new_rows(model, new, new_bf, new_embs)
    assert (top.groupby("sample_id").size() == 5).all() and top["sample_id"].unique().tolist() == new[
        "sample_id"
    ].tolist()
    assert top.groupby("sample_id")["contribution"].apply(lambda c: c.abs().is_monotonic_decreasing).all()
    np.testing.assert_allclose(top["effect"], np.exp(top["contribution"]))
    assert (top["model_version"] == model.version).all()
    # grouped: one row per readable driver, no raw kNN column name left
    assert not top["feature"].str.startswith(("knn_", "uknn_")).any()
    same = every.merge(top, on=["sample_id", "feature"], suffixes=("", "_top"))
    assert len(same) == len(top)
    np.testing.assert_allclose(same["contribution"], same["contribution_top"])


def test_drivers_of_an_empty_batch_and_missing_inputs(trained):
    import dataclasses

    new, new_bf, new_embs = trained["new"]
    model = trained["model"]
    empty = explain_new_rows(model, new.iloc[:0], new_bf.iloc[:0], [(n, m, v[:0], h[:0]) for n, m, v, h in new_embs])
    assert len(empty) == 0 and {"sample_id", "feature", "effect", "model"} <= set(empty.columns)
    with pytest.raises(ValueError, match="no embeddings of models \\['fake_image'\\]"):
        explain_new_rows(model, new, new_bf, new_embs[:1])
    no_lgbm = dataclasses.replace(model, blend={k: v for k, v in model.blend.items() if k != "lightgbm"})
    assert drivers_model(no_lgbm) is None
    with pytest.raises(ValueError, match="attributes its prices"):
        explain_new_rows(no_lgbm, new, new_bf, new_embs)


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
    assert labeled_fingerprint(a, 5, 42) == labeled_fingerprint(
        a.assign(price=[1.0, 2.0, 9.0]).iloc[:2], 5, 42
    )  # unlabeled rows do not count
    assert labeled_fingerprint(a, 5, 42) != labeled_fingerprint(a.assign(price=[1.0, 2.5, np.nan]), 5, 42)
    assert labeled_fingerprint(a, 5, 42) != labeled_fingerprint(a, 5, 7)
    assert len(labeled_fingerprint(a, 5, 42)) == 64
