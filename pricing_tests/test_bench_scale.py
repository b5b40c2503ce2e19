"""The scale benchmark's pure parts: the synthetic catalog and the growth fit
(``benchmarks/bench_scale.py``; its figures are measurements, not asserted here)."""

import sys

import numpy as np
import pytest

from pricing_tests.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_scale  # noqa: E402


def test_scaled_catalog_is_unique_half_labeled_and_prices_follow_the_pack():
    cat = bench_scale.scaled_catalog(15000, seed=1)  # 7216 listings: copies 0, 1 and 2
    assert len(cat) == 15000 and cat["sample_id"].is_unique and not cat["catalog_content"].duplicated().any()
    assert 0.45 < cat["price"].isna().mean() < 0.55
    from pricing_assets.lib.catalog.parsing import MAX_PRICE_USD

    assert cat["price"].dropna().between(0.01, MAX_PRICE_USD).all()  # every labeled row passes ingestion
    t = cat[cat["template"] == 0].set_index(cat[cat["template"] == 0].index // 7216)
    assert list(t.index) == [0, 1, 2]
    value = t["catalog_content"].str.extract(r"Value: ([0-9.]+)")[0].astype(float)
    assert value[1] == pytest.approx(value[0] * bench_scale.FACTORS[1]) and value[2] == pytest.approx(
        value[0] * bench_scale.FACTORS[2]
    )
    base = bench_scale.scaled_catalog(15000, seed=1)
    assert base["catalog_content"].equals(cat["catalog_content"])  # seeded: the same catalog every time
    with pytest.raises(ValueError, match="n_rows"):
        bench_scale.scaled_catalog(10)


def test_scaled_catalog_copies_are_other_listings_not_near_copies():
    """Copies k > 0: words dropped and a bullet borrowed (the texts overlap, not match), prices
    scattered around ``price * factor ** 0.8`` by the seller factor (log sd PRICE_NOISE_SIGMA)."""
    import pandas as pd

    cat = bench_scale.scaled_catalog(14432, seed=3)  # copies 0 and 1 of every listing
    sample = pd.read_csv(bench_scale.LABELED_CSV, dtype={"sample_id": str})
    first, second = cat.iloc[:7216].reset_index(drop=True), cat.iloc[7216:].reset_index(drop=True)
    assert (first["catalog_content"] == sample["catalog_content"]).all()  # copy 0 is the listing itself

    def words(t: str) -> set:
        return set(t.split())

    jac = np.array(
        [
            len(words(a) & words(b)) / len(words(a) | words(b))
            for a, b in zip(first.catalog_content, second.catalog_content)
        ]
    )
    assert 0.4 < jac.mean() < 0.9  # neighbours, yet not the same text
    value0 = first["catalog_content"].str.extract(r"Value: ([0-9.]+)")[0].astype(float)
    value1 = second["catalog_content"].str.extract(r"Value: ([0-9.]+)")[0].astype(float)
    factor = (value1 / value0).fillna(1.0).to_numpy()
    from pricing_assets.lib.catalog.parsing import MAX_PRICE_USD

    both = second["price"].between(1.0, 0.99 * MAX_PRICE_USD).to_numpy()  # labeled, neither rounded nor clipped
    expected = sample["price"].to_numpy() * factor**bench_scale.PRICE_ELASTICITY
    seller = np.log(second["price"].to_numpy()[both] / expected[both])
    assert abs(seller.mean()) < 0.05 and abs(seller.std() - bench_scale.PRICE_NOISE_SIGMA) < 0.05


def test_growth_exponent_and_largest_fitting_size():
    rows = [10_000, 20_000, 40_000]
    assert bench_scale.growth_exponent(rows, [5.0, 10.0, 20.0]) == pytest.approx(1.0)
    assert bench_scale.growth_exponent(rows, [1.0, 4.0, 16.0]) == pytest.approx(2.0)
    assert bench_scale.growth_exponent(rows[:1], [3.0]) is None
    # memory linear in rows, 1 GB at 40k rows: 24 GB at 960k rows
    assert bench_scale.largest_fitting(rows, [256.0, 512.0, 1024.0], 24) == pytest.approx(960_000, rel=1e-3)
    assert np.isfinite(bench_scale.growth_exponent(rows, [2.0, float("nan"), 8.0]))


def test_fed_frames_of_two_batches_share_a_listings_base_vector():
    """The labeled and unlabeled halves are fed one batch at a time: a listing's copies in both
    batches must stay neighbours (same base vector), and every frame passes its contract."""
    from pricing_assets.lib.embeddings.registry import load_registry

    cat = bench_scale.scaled_catalog(14432, seed=2)  # every listing twice: copies 0 and 1
    reg = load_registry()
    text = next(s for s in reg.values() if s.enabled and s.modality == "text")
    key = None
    halves = {}
    for half, part in (("lab", cat[cat["price"].notna()]), ("unl", cat[cat["price"].isna()])):
        part = part[part["template"] < 1500].reset_index(drop=True)  # both copies of listings 0-1499
        frames = bench_scale.fed_per_row_frames(part, reg, n_templates=int(cat["template"].max()) + 1)
        key = next(k for k in frames if isinstance(k, tuple) and k[-1] == text.name)
        assert len(frames["product_images"]) == len(frames["ocr_text"]) == len(part)
        halves[half] = (part["template"].to_numpy(), np.stack(frames[key]["embedding"].to_numpy()))
    (t1, v1), (t2, v2) = halves["lab"], halves["unl"]
    shared = np.intersect1d(t1, t2)
    assert shared.size > 100
    i1 = {t: i for i, t in enumerate(t1)}
    i2 = {t: i for i, t in enumerate(t2)}
    same = np.array([v1[i1[t]] @ v2[i2[t]] for t in shared])
    other = np.array([v1[i1[a]] @ v2[i2[b]] for a, b in zip(shared[:-1], shared[1:])])
    assert same.mean() > 0.8 and abs(other.mean()) < 0.1  # copies of a listing are each other's neighbours
