"""Price drivers (``lib.serving.drivers``): readable names and values, grouped contributions, ranks."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.serving.drivers import (
    DRIVER_COLUMNS,
    booster_contributions,
    driver_of,
    driver_value,
    feature_contributions,
    format_effect,
    path_contributions,
    top_drivers,
)


@pytest.mark.parametrize(
    "column, name",
    [
        ("ipq_value", "pack quantity"),
        ("log_grams", "pack quantity"),
        ("knn_tfidf_median", "similar products' median price (TF-IDF)"),
        ("knn_tfidf_top1_sim", "similar products' median price (TF-IDF)"),
        ("knn_minilm_l6_top1", "similar products' median price (text embedding minilm_l6)"),
        ("knn_image_effnet_lite0_std", "similar products' median price (photo embedding effnet_lite0)"),
        ("uknn_tfidf_unit_wmean", "similar products' unit price x this quantity (TF-IDF)"),
        ("uknn_minilm_l6_unit_n", "similar products' unit price x this quantity (text embedding minilm_l6)"),
        ("is_organic", "organic"),
        ("is_gluten_free", "gluten free"),
        ("te_brand", "brand's typical price"),
        ("stack_tfidf_ridge", "text model's price (TF-IDF ridge)"),
        ("width", "photo"),
        ("text_words", "listing length"),
        ("a_new_feature", "a_new_feature"),
    ],
)
def test_every_column_has_a_readable_driver(column, name):
    assert driver_of(column) == name


def test_values_are_readable_prices_and_quantities():
    row = pd.Series(
        {
            "ipq_value": 12.0,
            "pack_count": 3.0,
            "knn_tfidf_median": np.log1p(14.2),
            "knn_tfidf_top1_sim": 0.812,
            "uknn_tfidf_unit_wmean": np.log1p(2.5),
            "te_brand": np.log1p(9.99),
            "is_organic": 1.0,
            "width": np.nan,
            "height": np.nan,
            "category": "snacks",
            "n_bytes": 1234.0,
        }
    )
    assert driver_value("pack quantity", ["ipq_value", "pack_count"], row) == "12, pack of 3"
    assert (
        driver_value("x", ["knn_tfidf_median", "knn_tfidf_top1_sim"], row) == "14.20 USD (best match similarity 0.81)"
    )
    assert driver_value("x", ["uknn_tfidf_unit_wmean"], row) == "2.50 USD"
    assert driver_value("brand's typical price", ["te_brand"], row) == "9.99 USD"
    assert driver_value("organic", ["is_organic"], row) == "yes"
    assert driver_value("photo", ["width", "height"], row) == "no photo"
    assert driver_value("category", ["category"], row) == "snacks"
    assert format_effect(1.8) == "x1.80" and format_effect(0.5) == "x0.50"


def test_top_drivers_group_sum_and_rank_by_absolute_effect():
    X = pd.DataFrame(
        {
            "ipq_value": [12.0, 1.0],
            "pack_count": [1.0, 1.0],
            "knn_tfidf_median": [np.log1p(14.2), np.log1p(3.0)],
            "knn_tfidf_std": [0.5, 0.5],
            "is_organic": [1.0, 0.0],
        }
    )
    contrib = np.array([[0.4, 0.2, 0.1, 0.15, -0.05], [-0.1, 0.0, -0.6, 0.0, 0.3]])
    bias = np.array([2.0, 2.0])
    out = top_drivers(np.array(["a", "b"]), X, contrib, bias, "v1", top=2)
    assert list(out.columns) == list(DRIVER_COLUMNS) and len(out) == 4
    a, b = out[out["sample_id"] == "a"], out[out["sample_id"] == "b"]
    assert a["feature"].tolist() == ["pack quantity", "similar products' median price (TF-IDF)"]
    assert a["contribution"].tolist() == pytest.approx([0.6, 0.25])  # grouped columns summed
    assert a["value"].iloc[0] == "12"
    assert b["feature"].tolist() == ["similar products' median price (TF-IDF)", "organic"]
    assert b["effect"].tolist() == pytest.approx([np.exp(-0.6), np.exp(0.3)]) and b["value"].iloc[1] == "no"
    assert out["rank"].tolist() == [1, 2, 1, 2] and out["base_price"].tolist() == pytest.approx([np.exp(2.0)] * 4)
    assert (out["model_version"] == "v1").all()


def test_bad_shapes_and_empty_input():
    X = pd.DataFrame({"ipq_value": [1.0]})
    with pytest.raises(ValueError, match="contributions"):
        top_drivers(np.array(["a"]), X, np.zeros((1, 2)), np.zeros(1), "v")
    with pytest.raises(ValueError, match="top must be >= 1"):
        top_drivers(np.array(["a"]), X, np.zeros((1, 1)), np.zeros(1), "v", top=0)
    empty = top_drivers(np.array([], dtype=str), pd.DataFrame(), np.zeros((0, 0)), np.zeros(0), "v")
    assert len(empty) == 0 and list(empty.columns) == list(DRIVER_COLUMNS)
    with pytest.raises(ValueError, match="no booster"):
        feature_contributions([], X)
    with pytest.raises(ValueError, match="no booster"):
        path_contributions([], X)
    with pytest.raises(ValueError, match="method 'shapley'"):
        booster_contributions([object()], X, "shapley")


def test_contributions_of_boosters_add_up_to_their_mean_log_price():
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"ipq_value": rng.uniform(1, 20, 300), "knn_tfidf_median": rng.normal(2.5, 0.5, 300)})
    y = 0.1 * X["ipq_value"] + X["knn_tfidf_median"] + rng.normal(0, 0.1, 300)
    boosters = [
        lgb.train({"verbosity": -1, "seed": s, "bagging_fraction": 0.8, "bagging_freq": 1}, lgb.Dataset(X, y), 30)
        for s in (1, 2)
    ]
    contrib, bias = feature_contributions(boosters, X)
    assert contrib.shape == (300, 2) and bias.shape == (300,)
    mean_log = np.mean([b.predict(X) for b in boosters], axis=0)
    np.testing.assert_allclose(bias + contrib.sum(axis=1), mean_log, rtol=1e-9, atol=1e-9)
    assert np.corrcoef(contrib[:, 0], X["ipq_value"])[0, 1] > 0.9  # the quantity's effect grows with it


def _boosters(n=300, with_category=False):
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"ipq_value": rng.uniform(1, 20, n), "knn_tfidf_median": rng.normal(2.5, 0.5, n)})
    X["text_chars"] = rng.normal(size=n)  # noise the trees may split on
    if with_category:
        X["category"] = pd.Categorical(rng.choice(["food", "toys", "home"], n))
    y = 0.1 * X["ipq_value"] + X["knn_tfidf_median"] + rng.normal(0, 0.1, n)
    if with_category:
        y = y + 0.7 * (X["category"] == "toys").to_numpy()
    params = {"verbosity": -1, "bagging_fraction": 0.8, "bagging_freq": 1, "num_leaves": 15}
    return X, [lgb.train({**params, "seed": s}, lgb.Dataset(X, y), 40) for s in (1, 2)]


@pytest.mark.parametrize("with_category", [False, True])
def test_path_contributions_add_up_exactly_and_agree_with_treeshap(with_category):
    """Decision-path contributions sum, with their bias, to the boosters' mean log price (as TreeSHAP's
    do), over numeric and categorical splits; per row they rank the same strong feature first and
    are not TreeSHAP's values (a different method)."""
    X, boosters = _boosters(with_category=with_category)
    contrib, bias = path_contributions(boosters, X)
    shap, shap_bias = feature_contributions(boosters, X)
    assert contrib.shape == shap.shape == (len(X), X.shape[1]) and bias.shape == (len(X),)
    mean_log = np.mean([b.predict(X) for b in boosters], axis=0)
    np.testing.assert_allclose(bias + contrib.sum(axis=1), mean_log, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(bias, shap_bias, rtol=1e-6)  # both: the trees' expected value (dump_model rounds)
    assert not np.allclose(contrib, shap)
    assert np.corrcoef(contrib[:, 1], shap[:, 1])[0, 1] > 0.95  # the strong feature: the same story
    assert np.corrcoef(contrib[:, 0], X["ipq_value"])[0, 1] > 0.9
    block, _ = path_contributions(boosters, X.iloc[:7])  # rows are independent of the batch
    np.testing.assert_allclose(block, contrib[:7], rtol=1e-12, atol=1e-12)


def test_path_contributions_in_blocks_equal_one_pass(monkeypatch):
    from pricing_assets.lib.serving import drivers

    X, boosters = _boosters(n=250)
    whole, _ = path_contributions(boosters, X)
    monkeypatch.setattr(drivers, "PATH_BLOCK_ROWS", 64)  # 4 blocks, the last one short
    np.testing.assert_allclose(path_contributions(boosters, X)[0], whole, rtol=1e-12, atol=1e-12)
    assert booster_contributions(boosters, X, "treeshap")[0].shape == whole.shape
