"""Drift checks on ``batch_predictions`` (issue #30, part 2).

Unit tests of ``lib.serving.drift`` (PSI / KS values checkable by hand, small batches, bad input);
batches of real sample rows: one drawn like the training rows passes every measure, each shifted
one (no photos, no OCR, no quantity, texts 3x longer, one category, prices x10) warns on its
measure; then a Dagster run of stand-in assets named like the real ones with the real
``batch_drift`` checks: a shifted batch gives WARN results with ``passed=False``, a clean one passes,
and the run succeeds either way (the checks are non-blocking).
"""

import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pricing_assets.defs.drift import CHECK_NAMES, DRIFT_INPUTS, batch_drift
from pricing_assets.lib.catalog.parsing import parse_catalog
from pricing_assets.lib.features.listing import build_listing_features
from pricing_assets.lib.features.training_data import join_images_and_ocr
from pricing_assets.lib.serving.drift import (
    MEASURES,
    DriftThresholds,
    batch_rows,
    categorical_psi,
    compare_with_training,
    ks_statistic,
    numeric_psi,
    psi_from_shares,
    quantile_edges,
    training_rows,
)
from pricing_assets.partitions import catalog_batches
from pricing_assets.resources import DriftResource
from pricing_tests.helpers import LABELED_CSV

N_TRAIN, N_BATCH = 2000, 300

# ------------------------------------------------------------------------------------------------
# the statistics, by hand
# ------------------------------------------------------------------------------------------------


def test_psi_of_shares_by_hand():
    # (0.75 - 0.5) ln(0.75/0.5) + (0.25 - 0.5) ln(0.25/0.5) = 0.25 (ln 1.5 + ln 2) = 0.25 ln 3
    assert psi_from_shares([0.5, 0.5], [0.75, 0.25]) == pytest.approx(0.25 * math.log(3))
    assert psi_from_shares([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty bin is floored at epsilon: (1 - .5) ln(1/.5) + (eps - .5) ln(eps/.5)
    eps = 1e-4
    assert psi_from_shares([0.5, 0.5], [1.0, 0.0], eps) == pytest.approx(
        0.5 * math.log(2) + (eps - 0.5) * math.log(eps / 0.5)
    )
    with pytest.raises(ValueError, match="bins"):
        psi_from_shares([0.5, 0.5], [1.0])


def test_numeric_psi_bins_are_training_quantiles():
    train = np.arange(100.0)  # 2 bins: the median 49.5 splits it in halves
    assert list(quantile_edges(train, 2)) == [49.5]
    assert numeric_psi(train, np.arange(100.0), bins=2) == pytest.approx(0.0)
    # 75 batch values below the median, 25 above
    batch = np.r_[np.zeros(75), np.full(25, 99.0)]
    assert numeric_psi(train, batch, bins=2) == pytest.approx(0.25 * math.log(3))
    # every batch value beyond the training range lands in the open last bin
    assert numeric_psi(train, np.full(10, 1e6), bins=2) == pytest.approx(psi_from_shares([0.5, 0.5], [0.0, 1.0]))
    # NaN / inf dropped; nothing finite left raises
    assert numeric_psi(np.r_[train, np.nan], np.r_[np.arange(100.0), np.inf], bins=2) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="batch"):
        numeric_psi(train, [np.nan])


def test_categorical_psi_counts_unseen_categories():
    eps = 1e-4
    psi, d = categorical_psi(["a"] * 50 + ["b"] * 50, ["a"] * 50 + ["c"] * 50, eps)
    # bins a, b, c: training (.5, .5, eps), batch (.5, eps, .5)
    assert psi == pytest.approx(2 * (0.5 - eps) * math.log(0.5 / eps))
    assert d["unseen"] == ["c"] and d["unseen_share"] == 0.5
    assert d["training_shares"] == {"a": 0.5, "b": 0.5} and d["batch_shares"] == {"a": 0.5, "c": 0.5}
    psi, _ = categorical_psi(["a", "b"] * 50, ["a"] * 75 + ["b"] * 25, eps)
    assert psi == pytest.approx(0.25 * math.log(3))


def test_ks_statistic_is_the_largest_cdf_gap():
    # at x = 2 the training ECDF is 0.5, the batch's 0; nowhere is the gap larger
    assert ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    assert ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0
    assert ks_statistic([1, 2], [10, 20]) == 1.0
    with pytest.raises(ValueError):
        ks_statistic([1, 2], [np.nan])


def test_thresholds_are_validated_and_the_resource_carries_the_defaults():
    with pytest.raises(ValueError):
        DriftThresholds(max_share_change=0)
    with pytest.raises(ValueError):
        DriftThresholds(psi_bins=1)
    assert DriftResource().thresholds() == DriftThresholds()
    assert DriftResource(max_psi=0.1, min_rows=30).thresholds() == DriftThresholds(max_psi=0.1, min_rows=30)


# ------------------------------------------------------------------------------------------------
# batches of real rows
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def draw():
    """2300 real sample rows (a seeded draw) parsed as ``catalog_items``, with stand-in photo and
    OCR rows drawn by one process for all of them (85 % photos; half of those with OCR text)."""
    df = pd.read_csv(LABELED_CSV, dtype={"sample_id": str}).sample(N_TRAIN + N_BATCH * 4, random_state=7)
    items = parse_catalog(df.reset_index(drop=True))
    rng = np.random.default_rng(7)
    ok = rng.random(len(items)) < 0.85
    has_text = ok & (rng.random(len(items)) < 0.5)
    images = pd.DataFrame({"sample_id": items["sample_id"], "status": np.where(ok, "ok", "missing")})
    ocr = pd.DataFrame(
        {
            "sample_id": items["sample_id"],
            "ocr_status": np.where(ok, "ok", "no_image"),
            "ocr_text": np.where(has_text, "NET WT 12 OZ", ""),
            "n_lines": has_text.astype(int),
        }
    )
    return items, images, ocr


def _training(draw):
    """(training rows, training prices): the first N_TRAIN rows as ``products`` + ``listing_features``."""
    items, images, ocr = draw
    train = items.head(N_TRAIN)
    products = join_images_and_ocr(train, images, ocr)
    return training_rows(products, build_listing_features(train)), train["price"].to_numpy()


def _batch(draw, start: int = N_TRAIN, n: int = N_BATCH, items=None, images=None, ocr=None):
    """(batch rows, its prices) of ``n`` rows after the training rows, unlabeled as a batch is."""
    all_items, all_images, all_ocr = draw
    items = all_items.iloc[start : start + n] if items is None else items
    prices = items["price"].to_numpy()
    rows = batch_rows(
        items.assign(price=np.nan), all_images if images is None else images, all_ocr if ocr is None else ocr
    )
    return rows, prices


def _flagged(results) -> dict[str, float]:
    return {r.name: r.statistic for r in results if not r.passed}


def _compare(draw, batch, prices):
    train, train_prices = _training(draw)
    results = compare_with_training(batch, train, prices, train_prices)
    assert [r.name for r in results] == list(MEASURES)
    return results


@pytest.mark.parametrize("start", [N_TRAIN, N_TRAIN + N_BATCH, N_TRAIN + 2 * N_BATCH])
def test_a_batch_drawn_like_the_training_set_passes_every_measure(draw, start):
    results = _compare(draw, *_batch(draw, start))
    assert _flagged(results) == {}, [r.description for r in results]
    assert all(r.batch_rows == N_BATCH and r.training_rows == N_TRAIN for r in results)
    assert all(0 <= r.statistic < r.threshold for r in results)


def test_no_photos_warns_on_the_photo_share(draw):
    items, images, ocr = draw
    no_photo = images.assign(status="missing")
    no_ocr = ocr.assign(ocr_status="no_image", ocr_text="", n_lines=0)  # no photo, nothing to read
    results = _compare(draw, *_batch(draw, images=no_photo, ocr=no_ocr))
    assert set(_flagged(results)) == {"photo_share", "ocr_share"}
    photo = results[0]
    assert photo.batch_value == 0.0 and photo.training_value == pytest.approx(0.85, abs=0.03)


def test_no_ocr_text_warns_on_the_ocr_share(draw):
    results = _compare(draw, *_batch(draw, ocr=draw[2].assign(ocr_text="")))
    assert set(_flagged(results)) == {"ocr_share"}


def test_no_parsed_quantity_warns_on_the_quantity_share(draw):
    items = draw[0].iloc[N_TRAIN : N_TRAIN + N_BATCH].assign(ipq_value=np.nan, ipq_unit=None)
    results = _compare(draw, *_batch(draw, items=items))
    assert set(_flagged(results)) == {"quantity_share"}
    assert results[2].batch_value == 0.0 and results[2].training_value > 0.9


def test_texts_three_times_longer_warn_on_the_text_length(draw):
    items = draw[0].iloc[N_TRAIN : N_TRAIN + N_BATCH]
    results = _compare(draw, *_batch(draw, items=items.assign(text_chars=items["text_chars"] * 3)))
    assert set(_flagged(results)) == {"text_length"}
    assert results[3].batch_value == pytest.approx(3 * results[3].training_value, rel=0.3)


def test_one_category_warns_on_the_category_mix(draw):
    items = draw[0].iloc[N_TRAIN:]
    cats = build_listing_features(items)["category"].to_numpy()
    coffee = items[cats == "coffee_tea"]
    assert len(coffee) >= 100
    results = _compare(draw, *_batch(draw, items=coffee))
    flagged = _flagged(results)
    assert "category_mix" in flagged
    mix = results[4]
    assert mix.details["top_category"] == "coffee_tea" and mix.batch_value == 1.0 and mix.training_value < 0.25
    # the shares of the batch stay what they were: only its mix (and maybe its prices) moved
    assert not {"photo_share", "ocr_share", "quantity_share"} & set(flagged)


def test_prices_ten_times_higher_warn_on_the_price_distribution(draw):
    batch, prices = _batch(draw)
    results = _compare(draw, batch, prices * 10)
    assert set(_flagged(results)) == {"price_distribution"}
    price = results[5]
    assert price.batch_value == pytest.approx(10 * price.training_value, rel=0.3)
    assert price.details["ks"] > 0.5


def test_small_batches_pass_with_too_few_rows(draw):
    items, images, ocr = draw
    batch, prices = _batch(draw, n=20, images=images.assign(status="missing"))
    results = _compare(draw, batch, prices * 10)
    assert all(r.passed for r in results)
    assert all("too few rows" in r.description and math.isnan(r.statistic) for r in results)
    # the same drift over enough rows is flagged, and min_rows is the threshold's
    train, train_prices = _training(draw)
    few = compare_with_training(batch, train, prices * 10, train_prices, DriftThresholds(min_rows=10))
    assert {"photo_share", "price_distribution"} <= set(_flagged(few))


def test_missing_columns_are_named(draw):
    train, _ = _training(draw)
    with pytest.raises(KeyError, match="category"):
        compare_with_training(train.drop(columns="category"), train)


# ------------------------------------------------------------------------------------------------
# the Dagster checks
# ------------------------------------------------------------------------------------------------


def test_checks_are_non_blocking_partitioned_and_in_the_scoring_job():
    from pricing_assets.defs.schedules import scoring_job

    specs = list(batch_drift.check_specs)
    assert sorted(s.name for s in specs) == sorted(CHECK_NAMES.values())
    assert all(not s.blocking and s.asset_key == dg.AssetKey("batch_predictions") for s in specs)
    assert all(s.partitions_def == catalog_batches for s in specs)

    @dg.asset(name="batch_predictions", partitions_def=catalog_batches, group_name="scoring")
    def _scored(): ...

    stand_ins = [dg.AssetSpec(name) for name in DRIFT_INPUTS]
    defs = dg.Definitions(
        assets=[_scored, *stand_ins],
        asset_checks=[batch_drift],
        jobs=[scoring_job],
        resources={"drift": DriftResource()},
    )
    job = defs.resolve_job_def("scoring_job")
    assert {k.name for k in job.asset_layer.asset_graph.asset_check_keys} >= set(CHECK_NAMES.values())


def _stand_ins(draw) -> list:
    """Stand-in assets named like the real ones, parquet-stored: the training side unpartitioned, the
    per-batch ones partitioned; batch ``clean`` holds rows drawn like the training rows, batch
    ``shifted`` the same rows with no photos and prices x10."""
    items, images, ocr = draw
    train = items.head(N_TRAIN)
    batch = items.iloc[N_TRAIN : N_TRAIN + N_BATCH]
    shifted = {"shifted"}

    def part(context) -> str:
        return context.partition_key

    @dg.asset(name="products", io_manager_key="parquet_io_manager", group_name="training")
    def _products():
        return join_images_and_ocr(train, images, ocr)

    @dg.asset(name="listing_features", io_manager_key="parquet_io_manager", group_name="training")
    def _listing_features():
        return build_listing_features(train)

    @dg.asset(name="price_blend", io_manager_key="parquet_io_manager", group_name="models")
    def _price_blend():
        return pd.DataFrame({"sample_id": train["sample_id"], "pred_price": train["price"]})

    per_batch = dict(io_manager_key="parquet_io_manager", partitions_def=catalog_batches)

    @dg.asset(name="catalog_items", group_name="ingest", **per_batch)
    def _items(context: dg.AssetExecutionContext):
        return batch.assign(price=np.nan)

    @dg.asset(name="product_images", group_name="images", **per_batch)
    def _images(context: dg.AssetExecutionContext):
        out = images[images["sample_id"].isin(batch["sample_id"])]
        return out.assign(status="missing") if part(context) in shifted else out

    @dg.asset(name="ocr_text", group_name="images", **per_batch)
    def _ocr(context: dg.AssetExecutionContext):
        out = ocr[ocr["sample_id"].isin(batch["sample_id"])]
        return out.assign(ocr_status="no_image", ocr_text="", n_lines=0) if part(context) in shifted else out

    @dg.asset(name="batch_predictions", group_name="scoring", **per_batch)
    def _scored(context: dg.AssetExecutionContext):
        price = batch["price"].to_numpy() * (10 if part(context) in shifted else 1)
        return pd.DataFrame({"sample_id": batch["sample_id"], "price": price, "model_version": "v1"})

    return [_products, _listing_features, _price_blend, _items, _images, _ocr, _scored, batch_drift]


@pytest.fixture(scope="module")
def drift_runs(draw, tmp_path_factory):
    """One run per batch of the per-row stand-ins and ``batch_predictions`` (the checks ride along),
    after one run of the training side: ``{batch: ExecuteInProcessResult}``."""
    from pricing_assets.io_managers import PricingIOManager

    base = str(tmp_path_factory.mktemp("drift") / "assets")
    resources = {
        "parquet_io_manager": PricingIOManager(base_path=base, kind="parquet"),
        "io_manager": PricingIOManager(base_path=base, kind="pickle"),
        "drift": DriftResource(),
    }
    assets = _stand_ins(draw)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(catalog_batches.name, ["clean", "shifted"])
    assert dg.materialize(
        assets, instance=instance, resources=resources, selection=["products", "listing_features", "price_blend"]
    ).success
    return {
        b: dg.materialize(
            assets,
            instance=instance,
            resources=resources,
            partition_key=b,
            selection=dg.AssetSelection.groups("ingest", "images", "scoring"),
            raise_on_error=False,
        )
        for b in ("clean", "shifted")
    }


def _evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_clean_batch_passes_every_drift_check(drift_runs):
    res = drift_runs["clean"]
    assert res.success
    evals = _evaluations(res)
    assert set(evals) == set(CHECK_NAMES.values())
    assert all(e.passed for e in evals.values()), {k: e.description for k, e in evals.items()}
    assert all(e.target_materialization_data is not None for e in evals.values())  # evaluated the stored batch


def test_a_shifted_batch_warns_and_the_run_still_succeeds(drift_runs):
    res = drift_runs["shifted"]
    assert res.success  # non-blocking: batch_predictions stored, nothing stops
    evals = _evaluations(res)
    failed = {k for k, e in evals.items() if not e.passed}
    assert failed == {"drift_photo_share", "drift_ocr_share", "drift_price_distribution"}
    for name in failed:
        assert evals[name].severity == dg.AssetCheckSeverity.WARN
    price = evals["drift_price_distribution"].metadata
    assert price["statistic"].value > price["threshold"].value == DriftThresholds().max_psi
    assert price["batch_rows"].value == N_BATCH and price["training_rows"].value == N_TRAIN
    photo = evals["drift_photo_share"].metadata
    assert photo["batch_value"].value == 0.0 and photo["training_value"].value > 0.8


def test_inputs_it_cannot_compare_warn_without_failing_the_run(draw, tmp_path):
    from pricing_assets.io_managers import PricingIOManager

    @dg.asset(name="listing_features", io_manager_key="parquet_io_manager", group_name="training")
    def _no_category():
        return build_listing_features(draw[0].head(N_TRAIN)).drop(columns="category")

    assets = [_no_category if dg.AssetKey("listing_features") in a.keys else a for a in _stand_ins(draw)]
    base = str(tmp_path / "assets")
    resources = {
        "parquet_io_manager": PricingIOManager(base_path=base, kind="parquet"),
        "io_manager": PricingIOManager(base_path=base, kind="pickle"),
        "drift": DriftResource(),
    }
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(catalog_batches.name, ["clean"])
    training = ["products", "listing_features", "price_blend"]
    assert dg.materialize(assets, instance=instance, resources=resources, selection=training).success
    res = dg.materialize(
        assets,
        instance=instance,
        resources=resources,
        partition_key="clean",
        selection=dg.AssetSelection.groups("ingest", "images", "scoring"),
        raise_on_error=False,
    )
    assert res.success
    evals = _evaluations(res)
    assert set(evals) == set(CHECK_NAMES.values())
    assert all(not e.passed and e.severity == dg.AssetCheckSeverity.WARN for e in evals.values())
    assert all("drift not evaluated: KeyError" in e.description and "category" in e.description for e in evals.values())
