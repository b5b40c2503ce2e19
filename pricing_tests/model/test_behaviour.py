"""Behavioural tests of the served model (the ``serving_model`` that ``batch_predictions`` uses),
trained by the pipeline on the fixed real slice of ``materialized_home``:

* more units in a pack (a larger catalog ``Value``, the item pack quantity) never lower the price
  of the same listing;
* whitespace and letter case never change a price;
* the blend beats the median price and the TF-IDF + ridge model out of fold, with blend weights
  cross-fitted (each fold weighted by the other folds' OOF predictions, so the blend is not scored
  on the rows its weights were fitted on).

How the model is made to behave so: ``lib.catalog.parsing.normalise_whitespace``,
``lib.features.listing.canonical_case``, ``lib.models.lightgbm_regression.monotone_constraints``,
``lib.models.distributional.quantity_blind``; the figures on the full sample: docs/experiments.md."""

import re

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pricing_assets.definitions import build_defs
from pricing_assets.lib.models.blend import align_predictions, apply_blend, fit_blend_weights
from pricing_assets.lib.models.metrics import smape
from pricing_assets.settings import load_settings


@pytest.fixture(scope="module")
def served(materialized_home, slice_files):
    """``price(texts) -> (n,) USD`` for the slice's unlabeled rows with edited ``catalog_content``."""
    from pricing_assets.lib.embeddings.encoders import load_encoder
    from pricing_assets.lib.embeddings.registry import load_registry
    from pricing_assets.lib.serving.scoring import score_catalog_rows

    home = str(materialized_home["home"])
    defs = build_defs(load_settings({"DAGSTER_HOME": home, "PRICING_IMAGES_OFFLINE": "1"}))
    instance = dg.DagsterInstance.from_config(home)
    model = defs.load_asset_value("serving_model", instance=instance)
    batch = "unlabeled"
    images = defs.load_asset_value("product_images", instance=instance, partition_key=batch)
    ocr = defs.load_asset_value("ocr_text", instance=instance, partition_key=batch)
    specs = load_registry()
    encoders = {
        n: load_encoder(specs[n], device="cpu") for n, modality, _ in model.embedding_models if modality == "text"
    }
    image_embeddings = {
        n: defs.load_asset_value(["embeddings", "image", n], instance=instance, partition_key=batch)
        for n, modality, _ in model.embedding_models
        if modality == "image"
    }
    rows = pd.read_csv(slice_files["unlabeled"], dtype={"sample_id": str})

    def price(texts: list[str]) -> np.ndarray:
        return score_catalog_rows(model, rows.assign(catalog_content=texts), images, ocr, encoders, image_embeddings)[
            "price"
        ].to_numpy()

    return price, rows["catalog_content"].tolist()


def _scale_value(text: str, factor: float) -> str:
    return re.sub(
        r"(?m)^(\s*Value:\s*)([0-9.]+)", lambda m: f"{m.group(1)}{float(m.group(2)) * factor:g}", text, count=1
    )


def test_the_slice_has_listings_with_a_pack_quantity(served):
    price, texts = served
    with_value = [t for t in texts if _scale_value(t, 2) != t]
    assert len(with_value) >= 20  # the property below is tested on real listings, not on none
    base = price(texts)
    assert base.shape == (len(texts),) and (base > 0).all() and np.unique(base.round(6)).size > len(texts) // 2


@pytest.mark.parametrize("factor", [2.0, 4.0, 12.0])
def test_more_units_in_a_pack_never_lower_the_price(served, factor):
    price, texts = served
    base = price(texts)
    more = price([_scale_value(t, factor) for t in texts])
    lower = np.flatnonzero(more < base * (1 - 1e-9))
    assert lower.size == 0, f"x{factor:g} units priced lower for rows {lower.tolist()}: {base[lower]} -> {more[lower]}"


def _spaced(text: str) -> str:
    return "\n\n".join("  " + "  ".join(line.split(" ")) + " \t" for line in text.split("\n")) + "\n"


@pytest.mark.parametrize(
    "edit",
    [
        _spaced,
        str.upper,
        str.lower,
        lambda t: re.sub(r"(?m)^(Item Name:)(.*)$", lambda m: m.group(1) + m.group(2).upper(), t, count=1),
    ],
    ids=["whitespace", "upper", "lower", "upper_name"],
)
def test_whitespace_and_case_do_not_change_the_price(served, edit):
    price, texts = served
    edited = [edit(t) for t in texts]
    assert edited != texts
    np.testing.assert_allclose(price(edited), price(texts), rtol=1e-9)


def test_the_blend_beats_median_and_tfidf_ridge_out_of_fold(materialized_home):
    home = str(materialized_home["home"])
    defs = build_defs(load_settings({"DAGSTER_HOME": home, "PRICING_IMAGES_OFFLINE": "1"}))
    instance = dg.DagsterInstance.from_config(home)
    names = [
        "lightgbm_predictions",
        "lightgbm_distributional_predictions",
        "tfidf_ridge_predictions",
    ]  # price_blend's inputs (MLP opt-in)
    preds = {n: defs.load_asset_value(n, instance=instance) for n in names}
    preds = {n: p[p["price"].notna()] for n, p in preds.items()}
    base, mats = align_predictions(preds)
    y, folds = base["price"].to_numpy(), base["fold"].to_numpy()
    crossfit = np.zeros(len(y))
    median = np.zeros(len(y))
    for f in np.unique(folds):
        va = folds == f
        w = fit_blend_weights(mats[~va], y[~va], sorted(preds))
        crossfit[va] = apply_blend(mats[va], w)
        median[va] = np.median(y[~va])
    ridge = mats[:, sorted(preds).index("tfidf_ridge_predictions")]
    scores = {"blend": smape(y, crossfit), "median": smape(y, median), "tfidf_ridge": smape(y, ridge)}
    assert len(y) >= 100, len(y)
    assert scores["blend"] < scores["median"] and scores["blend"] < scores["tfidf_ridge"], scores
