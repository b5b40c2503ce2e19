"""Price drivers (``lib.serving.drivers``): readable names and values, grouped contributions, ranks."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.serving.drivers import (
    DRIVER_COLUMNS,
    driver_of,
    driver_value,
    feature_contributions,
    format_effect,
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
