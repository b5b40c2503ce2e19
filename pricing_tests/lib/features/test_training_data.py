"""Training table assembly: latest batch wins, embedding alignment, PCA, leak-free target encodings
(on real sample rows)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.features.training_data import (
    assemble_training_set,
    complete_batches,
    embedding_matrix,
    fit_pca,
    join_images_and_ocr,
    pca_frame,
    target_encodings,
)

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample" / "amazon_pricing_sample.csv"


@pytest.fixture(scope="module")
def real():
    """First 600 real labeled rows: brand-ish key = first word of the item name, 5 folds."""
    from pricing_assets.lib.catalog.parsing import parse_catalog_content
    from pricing_assets.lib.models.cross_validation import assign_folds

    df = pd.read_csv(SAMPLE, dtype={"sample_id": str}, nrows=600)
    names = df["catalog_content"].map(lambda t: parse_catalog_content(t)["item_name"])
    key = names.str.split().str[0].str.lower().fillna("none")
    folds = assign_folds(df["sample_id"], df["image_link"], 5, 42)
    return key, np.log1p(df["price"].to_numpy(dtype=float)), folds


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
    pcs = pca_frame(fit_pca(v, mask, 4, seed=0), v, mask, 4, "e")
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


def test_target_encoding_values_by_hand():
    """Each fold from the other fold's rows, smoothing 1: enc(k) = (sum_k y + prior) / (n_k + 1)."""
    keys = pd.Series(["a", "a", "b", "b", "a", "c"])
    y = np.array([1.0, 2.0, 3.0, 4.0, 7.0, 6.0])
    folds = np.array([0, 1, 0, 1, 0, 1])
    te = target_encodings({"brand": keys}, y, folds, smoothing=1.0)
    assert list(te.columns) == ["te_brand"] and te["te_brand"].dtype == np.float32
    # fold 0 from fold 1 (a: 2, b: 4, c: 6; prior 4); fold 1 from fold 0 (a: 1, 7; b: 3; prior 11/3; c unseen)
    assert te["te_brand"].tolist() == pytest.approx([3.0, 35 / 9, 4.0, 10 / 3, 3.0, 11 / 3], rel=1e-6)


def test_target_encoding_refuses_a_row_without_a_price_or_fold(real):
    key, y, folds = real
    y_nan, folds_neg = y.copy(), folds.copy()
    y_nan[600 - 1] = np.nan
    folds_neg[[2, 5, 8]] = -1
    with pytest.raises(ValueError, match=r"target_encodings: 1 rows without a finite price \(first: row 599\)"):
        target_encodings({"brand": key}, y_nan, folds)
    with pytest.raises(ValueError, match=r"target_encodings: 3 rows with a fold < 0 \(first: row 2\)"):
        target_encodings({"brand": key}, y, folds_neg)


def test_complete_batches_keeps_batches_present_in_every_input():
    frames = {
        "items": pd.DataFrame({"sample_id": ["1", "2", "3"], "batch": ["a", "b", "c"]}),
        "images": pd.DataFrame({"sample_id": ["1", "2"], "batch": ["a", "b"]}),
        "ocr": pd.DataFrame({"sample_id": ["1", "3"], "batch": ["a", "c"]}),
    }
    kept, skipped = complete_batches(frames)
    assert skipped == ["b", "c"]
    assert {n: f["sample_id"].tolist() for n, f in kept.items()} == {"items": ["1"], "images": ["1"], "ocr": ["1"]}


def test_complete_batches_needs_the_assets_read_later_stored_too():
    """A batch whose embeddings are not stored (its run failed between OCR and the encoder, e.g. in a
    database outage) is left out, so no training run starts that ``product_embeddings`` must fail."""
    frames = {
        "items": pd.DataFrame({"sample_id": ["1", "2", "3"], "batch": ["a", "b", "c"]}),
        "ocr": pd.DataFrame({"sample_id": ["1", "2", "3"], "batch": ["a", "b", "c"]}),
    }
    kept, skipped = complete_batches(frames, {"minilm": {"a", "c", "z"}, "effnet": {"a", "b", "c"}})
    assert skipped == ["b"]  # "z" (stored only for one embedding, unknown to the loaded assets) is not a batch here
    assert {n: f["sample_id"].tolist() for n, f in kept.items()} == {"items": ["1", "3"], "ocr": ["1", "3"]}
    assert complete_batches(frames, {"minilm": set()})[1] == ["a", "b", "c"]


def test_assemble_training_set_skips_a_batch_without_its_embeddings():
    items, images, ocr = _batches()
    ts = assemble_training_set(items, images, ocr, ["a", "b"], n_folds=2, seed=0, stored={"minilm": {"a"}})
    assert ts.skipped_batches == ["b"]
    assert set(ts.frame["batch"]) == {"a"} and ts.replaced == 0


def test_assemble_training_set_with_no_complete_batch_has_nothing_to_train_on():
    """Every batch still in flight (or failed): no training set, the batches listed; not an error
    (the automation may ask for ``products`` while a batch run is being retried)."""
    items, images, ocr = _batches()
    ts = assemble_training_set(items, images, ocr, ["a", "b"], n_folds=2, seed=0, stored={"minilm": set()})
    assert ts.frame is None and ts.skipped_batches == ["a", "b"]


def _batches():
    items = pd.DataFrame(
        {
            "sample_id": ["1", "2", "3", "4", "5", "6", "2"],
            "batch": ["a"] * 6 + ["b"],
            "price": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 20.0],
            "image_link": ["x", "x", "y", "z", "w", "v", "x"],
        }
    )
    images = pd.DataFrame({"sample_id": items["sample_id"], "batch": items["batch"], "status": ["ok"] * 7})
    ocr = pd.DataFrame({"sample_id": items["sample_id"], "batch": items["batch"], "text": ["t"] * 7})
    return items, images, ocr


def test_assemble_training_set_latest_batch_wins_and_groups_folds():
    items, images, ocr = _batches()
    ts = assemble_training_set(items, images, ocr, ["a", "b"], n_folds=2, seed=0)
    f = ts.frame.set_index("sample_id")
    assert sorted(f.index) == ["1", "2", "4", "5", "6"]  # 3 has no price
    assert f.loc["2", "price"] == 20.0 and f.loc["2", "batch"] == "b" and ts.replaced == 1
    assert ts.unlabeled_rows == 1 and ts.skipped_batches == []
    assert f.loc["1", "fold"] == f.loc["2", "fold"]  # same image link, same fold
    assert set(f["fold"]) == {0, 1} and f["is_labeled"].all() and (f["status"] == "ok").all()


def test_assemble_training_set_skips_an_incomplete_batch_and_refuses_too_few_rows():
    items, images, ocr = _batches()
    ts = assemble_training_set(items, images[images["batch"] == "a"], ocr, ["a", "b"], n_folds=2, seed=0)
    assert ts.skipped_batches == ["b"] and ts.frame.set_index("sample_id").loc["2", "price"] == 2.0
    with pytest.raises(ValueError, match="fewer than n_folds=9"):
        assemble_training_set(items, images, ocr, ["a", "b"], n_folds=9, seed=0)
    unl = items.assign(price=np.nan)
    assert assemble_training_set(unl, images, ocr, ["a", "b"], n_folds=2, seed=0).frame is None


def test_join_images_and_ocr_refuses_a_duplicated_key():
    items, images, ocr = _batches()
    one = items[items["batch"] == "a"]
    out = join_images_and_ocr(
        one, images[images["batch"] == "a"].drop(columns="batch"), ocr[ocr["batch"] == "a"].drop(columns="batch")
    )
    assert len(out) == len(one) and out["text"].eq("t").all()
    with pytest.raises(pd.errors.MergeError):
        join_images_and_ocr(one, images.drop(columns="batch"), ocr.drop(columns="batch"))


def test_align_embeddings_latest_batch_wins_and_realigns():
    from pricing_assets.lib.features.training_data import align_embeddings

    v = np.eye(3, dtype=np.float32)
    text = pd.DataFrame({"sample_id": ["a", "b", "a"], "embedding": list(v)})  # "a" embedded again in a later batch
    image = pd.DataFrame({"sample_id": ["c"], "embedding": [np.ones(2, np.float32) / np.sqrt(2)]})
    pe = align_embeddings([("t", "text", 3, text), ("i", "image", 2, image)], pd.Series(["b", "a", "c"]))
    assert list(pe.sample_ids) == ["b", "a", "c"]
    (tn, tm, tv, th), (iname, im, iv, ih) = pe.models
    assert (tn, tm, iname, im) == ("t", "text", "i", "image")
    assert tv.dtype == np.float32 and tv.shape == (3, 3) and iv.shape == (3, 2)
    np.testing.assert_array_equal(tv[1], v[2])  # the later vector of "a"
    assert th.tolist() == [True, True, False] and ih.tolist() == [False, False, True]
    sub = pe.aligned_to(pd.Series(["c", "b"]))
    np.testing.assert_array_equal(sub[0][2], tv[[2, 0]])
    assert sub[1][3].tolist() == [True, False]
    assert pe.aligned_to(pe.sample_ids)[0][2] is tv  # same order: no copy
    with pytest.raises(ValueError, match="lacks sample_ids \\['zz'\\]"):
        pe.aligned_to(["b", "zz"])
    with pytest.raises(ValueError, match="duplicate sample_ids \\['b'\\]"):
        align_embeddings([("t", "text", 3, text)], pd.Series(["b", "b"]))
