"""Training table assembly: latest batch wins, embedding alignment, PCA, leak-free target encodings
(on real sample rows)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.training_data import embedding_matrix, latest_wins, pca_components, target_encodings

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "amazon_pricing_sample.csv"


@pytest.fixture(scope="module")
def real():
    """First 600 real labeled rows: brand-ish key = first word of the item name, 5 folds."""
    from pricing_assets.lib.catalog import parse_catalog_content
    from pricing_assets.lib.cross_validation import assign_folds

    df = pd.read_csv(SAMPLE, dtype={"sample_id": str}, nrows=600)
    names = df["catalog_content"].map(lambda t: parse_catalog_content(t)["item_name"])
    key = names.str.split().str[0].str.lower().fillna("none")
    folds = assign_folds(df["sample_id"], df["image_link"], 5, 42)
    return key, np.log1p(df["price"].to_numpy(dtype=float)), folds


def test_latest_wins_keeps_the_latest_batch_row():
    f = pd.DataFrame({"sample_id": ["1", "2", "1", "3", "2"], "batch": ["b1", "b1", "b2", "b2", "b3"], "price": [1.0, 2.0, 10.0, 3.0, 20.0]})
    out, replaced = latest_wins(f, ["b1", "b2", "b3"])
    assert replaced == 2
    assert out.set_index("sample_id")["price"].to_dict() == {"1": 10.0, "2": 20.0, "3": 3.0}
    # ingestion order, not row order, decides
    out2, _ = latest_wins(f, ["b3", "b2", "b1"])
    assert out2.set_index("sample_id")["price"].to_dict() == {"1": 1.0, "2": 2.0, "3": 3.0}


def test_embedding_matrix_aligns_and_masks():
    emb = pd.DataFrame({"sample_id": ["b", "a"], "embedding": [np.array([0.0, 1.0]), np.array([1.0, 0.0])]})
    vec, has = embedding_matrix(emb, pd.Series(["a", "x", "b"]), 2)
    assert vec.dtype == np.float32 and vec.shape == (3, 2)
    assert vec.tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
    assert has.tolist() == [True, False, True]


def test_pca_components_nan_where_missing():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(20, 6)).astype(np.float32)
    mask = np.ones(20, bool)
    mask[[3, 7]] = False
    pcs = pca_components(v, mask, 4, "e")
    assert list(pcs.columns) == ["e_pc0", "e_pc1", "e_pc2", "e_pc3"]
    assert pcs.loc[[3, 7]].isna().all().all() and pcs.drop(index=[3, 7]).notna().all().all()


def test_target_encoding_never_sees_own_price(real):
    key, y, folds = real
    base = target_encodings({"brand": key}, y, folds)
    for i in (0, 17, 250):
        y2 = y.copy()
        y2[i] = 20.0  # absurd log price
        new = target_encodings({"brand": key}, y2, folds)
        assert new.loc[i, "te_brand"] == base.loc[i, "te_brand"]
        same = folds == folds[i]
        assert np.array_equal(new.loc[same, "te_brand"].to_numpy(), base.loc[same, "te_brand"].to_numpy())
        assert not np.array_equal(new["te_brand"].to_numpy(), base["te_brand"].to_numpy())


def test_target_encoding_unlabeled_rows_use_all_labeled(real):
    key, y, folds = real
    k = pd.concat([key, pd.Series(["zz-unseen", key.iloc[0]])], ignore_index=True)
    yy = np.concatenate([y, [np.nan, np.nan]])
    ff = np.concatenate([folds, [-1, -1]])
    te = target_encodings({"brand": k}, yy, ff, smoothing=10.0)
    assert te.shape == (602, 1) and te["te_brand"].dtype == np.float32
    prior = y.mean()
    assert te["te_brand"].iloc[600] == pytest.approx(prior, rel=1e-6)
    sel = key.to_numpy() == key.iloc[0]
    expected = (y[sel].sum() + 10.0 * prior) / (sel.sum() + 10.0)
    assert te["te_brand"].iloc[601] == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(te["te_brand"]).all()
