"""Tests for pricing_assets.lib.features.listing: parsers on real catalog strings, features table, and the
leakage guarantee of out-of-fold target encoding."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.catalog.parsing import parse_catalog, read_catalog
from pricing_assets.lib.features.listing import (
    CATEGORIES,
    GRAMS_PER_OUNCE,
    IPQ_INCREASING_FEATURES,
    ML_PER_FL_OUNCE,
    NUMERIC_FEATURES,
    build_listing_features,
    categorise,
    extract_brand,
    normalise_quantity,
    parse_pack_count,
    quantities_from_text,
)
from pricing_tests.helpers import LABELED_CSV as LABELED

# ------------------------------------------------------------------ pack count (real item names)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Chex Mix Muddy Buddies, Mint Chocolate, 4.5 Oz (Pack of 7)", 7),
        ("Popchips Potato Chips, Sea Salt Flavor, Snack Size Bags, 0.8oz (Pack of 24)", 24),
        ("Polar Seltzer Water Raspberry Lime, 12 fl oz cans, 18 pack", 18),
        ("Apple & Eve, Juice Very Berry, 8 Pack, 6.75 Fl Oz", 8),
        ("Suja Essentials Mighty Juice, 12 Ounce -- 6 per case.", 6),
        ("Superior Crystal Salt 26 oz (pk of 6)", 6),
        ("Nature's Legacy VitaSpelt Non-GMO White Unbleached Spelt Flour 5lb bags (Case of six)", 6),
        ("Panda Licorice, All Natural Raspberry Licorice, 7 oz (200 g) -- 2PC", 2),
        ("2 x 10oz Lil's Dutch Maid Old Fashioned Ginger Snaps Cookies (Two Bags per order)", 2),
        ("Oats Overnight - Peach Upside Down Cake (2.7 oz per meal) (16 Pack)", 16),
        ("Barebells Vegan Protein Bars Hazelnut & Nougat - 12 Count, Pack of 2", 2),
        ("Imozai Organic Green Tea Bags 100 Count Individually Wrapped", 100),
        ("Crystal Light On The Go Packets, Classic Orange With Vitamin C and Calcium, 10 CT", 10),
        ("Uncle Lee's Legends of China White Tea - 100 Tea Bags", 100),
        ("Monster Energy Lo Carbonated 24 Cans 384 fl.oz, 384 fl. oz.", 24),
        ("Party Set of 3 sprinkles", 3),
        ("Gefen Pure Gluten Free Potato Starch, 24oz (2 Pack = 3Lbs)", 2),
        ("FRONTIER Organic Bulk Garlic Flakes, 1 LB", 1),
        ("La Tourangelle Oil Avocado", 1),
        ("Mrs. Miller's Homemade Noodles, Garlic-Parsley, 14 OZ (Pack of 1)", 1),
        ("", 1),
    ],
)
def test_parse_pack_count_real_names(name, expected):
    assert parse_pack_count(name) == float(expected)


def test_parse_pack_count_ignores_zero_and_none():
    assert parse_pack_count("Pack of 0") == 1.0
    assert parse_pack_count(None) == 1.0  # type: ignore[arg-type]


# ------------------------------------------------------------------ units


@pytest.mark.parametrize(
    ("value", "unit", "amount", "family"),
    [
        (31.5, "Ounce", 31.5 * 28.349523125, "g"),
        (1.0, "ounce", 28.349523125, "g"),
        (2.0, "OZ", 2 * 28.349523125, "g"),
        (2.0, "Oz", 2 * 28.349523125, "g"),
        (32.0, "Fl Oz", 32 * 29.5735295625, "ml"),
        (1.0, "Fl. Oz", 29.5735295625, "ml"),
        (1.0, "fl. oz", 29.5735295625, "ml"),
        (1.0, "FL OZ", 29.5735295625, "ml"),
        (1.0, "Fluid Ounce", 29.5735295625, "ml"),
        (2.0, "pound", 2 * 453.59237, "g"),
        (1.0, "lbs", 453.59237, "g"),
        (1.5, "Kg", 1500.0, "g"),
        (250.0, "gram", 250.0, "g"),
        (250.0, "gramm", 250.0, "g"),
        (500.0, "mg", 0.5, "g"),
        (2.0, "Liters", 2000.0, "ml"),
        (1.0, "L", 1000.0, "ml"),
        (330.0, "millilitre", 330.0, "ml"),
        (1.0, "gallon", 3785.411784, "ml"),
        (1.0, "Quart", 946.352946, "ml"),
        (1.0, "pint", 473.176473, "ml"),
        (24.0, "Count", 24.0, "count"),
        (6.0, "ct", 6.0, "count"),
        (1.0, "Each", 1.0, "count"),
        (40.0, "pieces", 40.0, "count"),
        (2.0, "Pack", 2.0, "count"),
        (1.0, "Jar", 1.0, "count"),
        (20.0, "Tea Bags", 20.0, "count"),
        (12.0, "inch", 12.0, "other"),
    ],
)
def test_normalise_quantity(value, unit, amount, family):
    got_amount, got_family = normalise_quantity(value, unit)
    assert got_family == family
    assert got_amount == pytest.approx(amount, rel=1e-12)


@pytest.mark.parametrize(
    ("value", "unit", "family"),
    [
        (5.0, "None", "unknown"),
        (5.0, "", "unknown"),
        (5.0, "furlongs", "unknown"),
        (5.0, "200 Capsules - Packed Bulk", "unknown"),
        (float("nan"), "Ounce", "g"),
        (0.0, "Ounce", "g"),
        (-1.0, "Count", "count"),
    ],
)
def test_normalise_quantity_unknown_or_bad_values(value, unit, family):
    amount, got_family = normalise_quantity(value, unit)
    assert got_family == family
    assert math.isnan(amount)


@pytest.mark.parametrize(
    ("text", "value", "unit_family", "canonical"),
    [
        ("Chex Mix Muddy Buddies, Mint Chocolate, 4.5 Oz (Pack of 7)", 4.5, "g", 4.5 * GRAMS_PER_OUNCE),
        ("Marmite 250g (3 Pack)", 250.0, "g", 250.0),
        ("FRONTIER Organic Bulk Garlic Flakes, 1 LB", 1.0, "g", 453.59237),
        ("1 pound bulk bag (16 ounces)", 1.0, "g", 453.59237),
        ("Eden Toasted Sesame Oil, Unrefined, 10 fl oz", 10.0, "ml", 10 * ML_PER_FL_OUNCE),
        (
            "Mio Cherry & Blackberry Liquid water Enhancer (1.62fl.oz Bottles, Pack of 12)",
            1.62,
            "ml",
            1.62 * ML_PER_FL_OUNCE,
        ),
        ("Aloha Maid Juice 11.5-Ounce (Pack of 24)", 11.5, "g", 11.5 * GRAMS_PER_OUNCE),
        ("Rani Curry Powder Mild 5lbs (2.27kg) PET Jar", 5.0, "g", 5 * 453.59237),
        ("TSAR CAVIAR Imperial Osetra Caviar 4 oz (113G)", 4.0, "g", 4 * GRAMS_PER_OUNCE),
        ("Hellmann's Vinaigrette Jug, 1 gallon, Pack of 2", 1.0, "ml", 3785.411784),
        ("Rani Jamun Shikanji 6.7 fl oz (200 ml) Glass Bottle", 6.7, "ml", 6.7 * ML_PER_FL_OUNCE),
        ("NATURAL VALUE Organic Canned Black Beans, 432 GR", 432.0, "g", 432.0),
    ],
)
def test_quantities_from_text_first_mention(text, value, unit_family, canonical):
    q = quantities_from_text(text)
    assert q["value"] == pytest.approx(value)
    assert q["family"] == unit_family
    assert q["canonical"] == pytest.approx(canonical)
    assert q["n_mentions"] >= 1


def test_quantities_from_text_reports_max_of_same_family_and_none():
    q = quantities_from_text("1 pound bulk bag (16 ounces), also 2 lb")
    assert q["n_mentions"] == 3
    assert q["max_canonical"] == pytest.approx(2 * 453.59237)
    empty = quantities_from_text("Snyder's of Hanover Mini Pretzels, 100 Count")
    assert empty["n_mentions"] == 0 and empty["family"] == "unknown"
    assert math.isnan(empty["canonical"])
    # words that merely start with a unit letter are not units
    assert quantities_from_text("Pack of 2 Large Lemons")["n_mentions"] == 0


# ------------------------------------------------------------------ brand


@pytest.mark.parametrize(
    ("name", "brand"),
    [
        ("Chex Mix Muddy Buddies, Mint Chocolate, 4.5 Oz (Pack of 7)", "chex mix"),
        ("FRONTIER Organic Bulk Garlic Flakes, 1 LB", "frontier"),
        ("Starbucks Dark Roast K-Cup Coffee Pods — Sumatra for Keurig Brewers", "starbucks"),
        ("Annie's Organic Macaroni and Cheese, Shells and White Cheddar, 6 oz", "annies"),
        ("Annies Homegrown Shiitake & Sesame Vinaigrette, 8 Ounce", "annies homegrown"),
        ("REESE'S Assorted Flavored Snack Size, Halloween Candy Bulk Bag", "reeses"),
        ("Keto Chianti Wine Pasta Sauce by Yo Mama's Foods, No Sugar Added", "yo mamas foods"),
        ("Herbs of Provence All Natural by Its Delish, 2 oz", "its delish"),
        ("Kitchen Basics® Organic Vegetable Stock, 32 oz. Carton", "kitchen basics"),
        ("Del Monte Pear Halves, Lite, 15 Ounce (Pack of 12)", "del monte"),
        ("Lenny & Larry's Pizza Palooza FITZELS- Savory Pretzel Snacks", "lenny & larrys"),
        ("Virgil’s, Zero Sugar Black Cherry Soda", "virgils"),
        ("Lipton, Soup Dip Mix Kosher Ranch, 2.4 Oz", "lipton"),
        ("Organic Rye & Spelt, 17.6 oz, pack of 6", "unknown"),
        ("100% Pure Cane Syrup 16fl. Oz - No Additives", "unknown"),
        ("", "unknown"),
    ],
)
def test_extract_brand_real_names(name, brand):
    assert extract_brand(name) == brand


@pytest.mark.parametrize("recase", [str.upper, str.lower, str.title])
def test_extract_brand_ignores_case(recase):
    names = pd.read_csv(LABELED, usecols=["catalog_content"]).head(400)
    items = parse_catalog(names.assign(sample_id=[str(i) for i in range(len(names))]))
    for n, b in zip(items["item_name"], items["bullets"]):
        assert extract_brand(recase(n), recase(b)) == extract_brand(n, b), n
    assert extract_brand("FOOD TO LIVE Organic Raisins") == extract_brand("Food to Live Organic Raisins") == "food"
    assert extract_brand("PRINCE OF PEACE Ginseng Tea") == "prince"


def test_ipq_increasing_features_are_numeric_features():
    assert set(IPQ_INCREASING_FEATURES) <= set(NUMERIC_FEATURES)
    assert "pack_count" not in IPQ_INCREASING_FEATURES and "upper_ratio" not in NUMERIC_FEATURES


def test_extract_brand_uses_short_brand_field_only():
    assert extract_brand("Medium Roast K-Cups, 24 ct", "Brand: Green Mountain\nFlavor: Nutty") == "green mountain"
    prose = "Brand: Made by Nestle, a trusted brand since 1866"
    assert extract_brand("Carnation Hot Cocoa Mix", prose) == "carnation"


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("Starbucks K-Cup Coffee Pods, Medium Roast Coffee, House Blend", "coffee_tea"),
        ("Minute Maid 100% Orange Juice, 10 Fl Oz Bottles, Pack of 6", "beverage"),
        ("Seattle Chocolates - Crunchy Peanut Butter Chocolate Bar, 2.5 Ounces", "candy"),
        ("Popchips Potato Chips, Sea Salt Flavor", "snacks"),
        ("Newman's Own Paprika, Sweet Paprika, 2.13 Oz", "spices"),
        ("SMOKE 'N MAGIC - Spicy BBQ Sauce - Level Up 20.5 oz", "sauces"),
        ("Gefen Pure Gluten Free Potato Starch, 24oz", "baking"),
        ("Progresso Vegetable Classics, Minestrone Canned Soup, 19 oz.", "pantry"),
        ("Twisted X Men's Ruff Stock Western Boot Square Toe Dark Brown", "other"),
    ],
)
def test_categorise_real_names(name, category):
    assert categorise(name) == category
    assert category in CATEGORIES


# ------------------------------------------------------------------ features table


@pytest.fixture(scope="module")
def sample_items() -> pd.DataFrame:
    rows, _ = read_catalog(str(LABELED))
    return parse_catalog(rows.iloc[:400].reset_index(drop=True))


def test_build_listing_features_on_real_rows(sample_items):
    feats = build_listing_features(sample_items)
    assert len(feats) == 400
    assert feats["sample_id"].tolist() == sample_items["sample_id"].tolist()
    for col in NUMERIC_FEATURES:
        assert feats[col].dtype == np.float32, col
    for col in ("brand", "category", "ipq_unit_family"):
        assert feats[col].map(type).eq(str).all(), col
    assert set(feats["category"]) <= set(CATEGORIES)
    assert set(feats["ipq_unit_family"]) <= {"g", "ml", "count", "other", "unknown"}
    assert (feats["pack_count"] >= 1).all()

    chex = feats.iloc[0]  # "Chex Mix ..., 4.5 Oz (Pack of 7)", Value 31.5 Ounce
    assert chex["brand"] == "chex mix"
    assert chex["pack_count"] == 7
    assert chex["ipq_unit_family"] == "g"
    assert chex["qty_canonical"] == pytest.approx(31.5 * GRAMS_PER_OUNCE, rel=1e-6)
    assert chex["qty_per_pack"] == pytest.approx(4.5 * GRAMS_PER_OUNCE, rel=1e-6)
    assert chex["name_qty"] == pytest.approx(4.5 * GRAMS_PER_OUNCE, rel=1e-6)
    assert chex["log_qty"] == pytest.approx(np.log1p(31.5 * GRAMS_PER_OUNCE), rel=1e-6)
    assert chex["log_grams"] == chex["log_qty"]
    assert np.isnan(chex["log_ml"]) and np.isnan(chex["log_count"])
    assert chex["n_bullets"] == 4 and chex["has_description"] == 0

    frontier = feats.iloc[1]  # "FRONTIER Organic Bulk Garlic Flakes, 1 LB"
    assert frontier["brand"] == "frontier"
    assert frontier["is_organic"] == 1 and frontier["is_bulk"] == 1
    assert frontier["category"] == "spices"
    # most real rows have a brand and a known unit
    assert (feats["brand"] != "unknown").mean() > 0.85
    assert (feats["ipq_unit_family"] != "unknown").mean() > 0.95


def test_build_listing_features_errors(sample_items):
    with pytest.raises(KeyError, match="item_name"):
        build_listing_features(sample_items.drop(columns=["item_name"]))
    dup = pd.concat([sample_items.iloc[:2], sample_items.iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate sample_id"):
        build_listing_features(dup)


# ------------------------------------------------------------------ target encoding
