"""kNN neighbour-price features of the training rows: out-of-fold guarantees (a row's own price never
reaches its own features), labeled rows only (a row without a price or fold is an error), neighbour
statistics."""

import numpy as np
import pytest

from pricing_assets.lib.retrieval.knn import (
    knn_price_and_unit_features,
    knn_price_features,
    knn_unit_price_features,
    oof_query_plan,
)
from pricing_assets.lib.retrieval.reference import log_total_quantity
from pricing_assets.lib.retrieval.search import KNN_STATS, UNIT_STATS, build_index, neighbour_stats, unit_price_stats


def _data(n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, d)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    log_price = rng.uniform(1, 5, n)
    folds = np.arange(n) % 3
    return v, log_price, folds


def test_changing_a_labeled_price_never_changes_its_own_features():
    v, lp, folds = _data()
    base = knn_price_features(v, lp, folds, k=5)
    for i in (0, 7, 31):
        lp2 = lp.copy()
        lp2[i] = 50.0  # absurd price
        new = knn_price_features(v, lp2, folds, k=5)
        assert np.array_equal(new.iloc[i].to_numpy(), base.iloc[i].to_numpy())
        # nor those of any row in its fold: each fold only sees the other folds
        same = folds == folds[i]
        assert np.array_equal(new[same].to_numpy(), base[same].to_numpy())
        # but rows of other folds that retrieve it do change (the feature is live)
        assert not np.array_equal(new[~same].to_numpy(), base[~same].to_numpy())


def test_duplicate_of_a_row_in_the_same_fold_is_not_retrieved():
    v, lp, folds = _data()
    v[1] = v[0]  # near-copy (variant) in the same fold as row 0 after reassigning
    folds[1] = folds[0]
    lp[1] = 9.0
    feats = knn_price_features(v, lp, folds, k=3)
    assert feats.loc[0, "knn_top1"] != pytest.approx(9.0)
    assert feats.loc[0, "knn_top1_sim"] < 0.999


def test_a_copy_in_another_fold_is_retrieved():
    v, lp, folds = _data()
    v[5] = v[10]  # rows 5 and 10 are in folds 2 and 1: each is the other's top neighbour
    feats = knn_price_features(v, lp, folds, k=4)
    assert feats.loc[5, "knn_top1_sim"] == pytest.approx(1.0, abs=1e-5)
    assert feats.loc[5, "knn_top1"] == pytest.approx(lp[10], rel=1e-6)
    assert feats.loc[10, "knn_top1"] == pytest.approx(lp[5], rel=1e-6)
    assert list(feats.columns) == [f"knn_{s}" for s in KNN_STATS]
    assert feats.shape == (60, 6) and feats.dtypes.eq(np.float32).all()
    assert np.isfinite(feats.to_numpy()).all()


def test_oof_query_plan_pairs_each_fold_with_the_other_folds():
    folds = np.array([1, 0, 2, 0, 1])
    plan = [(q.tolist(), ref.tolist()) for q, ref in oof_query_plan(folds)]
    assert plan == [
        ([False, True, False, True, False], [True, False, True, False, True]),
        ([True, False, False, False, True], [False, True, True, True, False]),
        ([False, False, True, False, False], [True, True, False, True, True]),
    ]


@pytest.mark.parametrize(
    "row,price,fold,message",
    [
        (5, np.nan, 2, r"1 rows without a finite price \(first: row 5\)"),
        (7, 3.0, -1, r"1 rows with a fold < 0 \(first: row 7\)"),
        (4, np.nan, -1, r"1 rows without a finite price \(first: row 4\); 1 rows with a fold < 0 \(first: row 4\)"),
    ],
)
def test_training_functions_refuse_a_row_without_a_price_or_fold(row, price, fold, message):
    v, lp, lq, fam, folds = _unit_data()
    lp, folds = lp.copy(), folds.copy()
    lp[row], folds[row] = price, fold
    with pytest.raises(ValueError, match="knn_price_features: " + message):
        knn_price_features(v, lp, folds)
    with pytest.raises(ValueError, match="knn_price_and_unit_features: " + message):
        knn_unit_price_features(v, lp, lq, fam, folds)
    with pytest.raises(ValueError, match="knn_price_and_unit_features: " + message):
        knn_price_and_unit_features(v, lp, lq, fam, folds)


def test_neighbour_stats_values():
    sims = np.array([[0.9, 0.8, 0.1]], dtype=np.float32)
    lp = np.array([[1.0, 2.0, 6.0]])
    s = neighbour_stats(sims, lp, temperature=0.05)
    assert s.shape == (1, 6)
    med, wmean, std, top1, top1_sim, mean_sim = s[0]
    assert med == 2.0 and top1 == 1.0 and top1_sim == pytest.approx(0.9)
    assert mean_sim == pytest.approx(0.6)
    w = np.exp((sims[0] - 0.9) / 0.05)
    assert wmean == pytest.approx(float((w / w.sum()) @ lp[0]), rel=1e-5)
    assert 1.0 < wmean < 1.2  # dominated by the closest neighbour
    assert std == pytest.approx(float(np.std(lp[0])), rel=1e-5)


def test_errors():
    v, lp, folds = _data(n=10)
    with pytest.raises(ValueError, match="length mismatch"):
        knn_price_features(v, lp[:9], folds)
    with pytest.raises(ValueError, match="knn_price_features: need at least 2 rows"):
        knn_price_features(v[:1], lp[:1], folds[:1])
    with pytest.raises(ValueError, match=r"10 rows without a finite price \(first: row 0\)"):
        knn_price_features(v, np.full(10, np.nan), folds)
    with pytest.raises(ValueError, match="NaN/inf"):
        build_index(np.full((2, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected \(n, d\)"):
        build_index(np.zeros(3, dtype=np.float32))


def test_sparse_tfidf_vectors_match_dense_search():
    import scipy.sparse as sp

    v, lp, folds = _data()
    v = np.abs(v)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    dense = knn_price_features(v, lp, folds, k=4)
    sparse = knn_price_features(sp.csr_matrix(v), lp, folds, k=4)
    assert np.allclose(dense.to_numpy(), sparse.to_numpy(), atol=1e-5)
    # and the sparse path keeps the OOF guarantee
    lp2 = lp.copy()
    lp2[0] = 40.0
    again = knn_price_features(sp.csr_matrix(v), lp2, folds, k=4)
    assert np.array_equal(again.iloc[0].to_numpy(), sparse.iloc[0].to_numpy())


def _unit_data(n=60, seed=1):
    v, lp, folds = _data(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    family = np.array(["g", "ml", "count"])[rng.integers(0, 3, n)]
    log_qty = np.log(rng.uniform(10, 1000, n))
    log_qty[::7] = np.nan  # rows without a parsed quantity
    return v, lp, log_qty, family, folds


def test_unit_price_features_never_see_their_own_price():
    v, lp, lq, fam, folds = _unit_data()
    base = knn_unit_price_features(v, lp, lq, fam, folds, k=20)
    assert list(base.columns) == [f"uknn_unit_{s}" for s in UNIT_STATS]
    for i in (1, 8, 31):  # rows with a quantity (row 0 has none)
        lp2 = lp.copy()
        lp2[i] = 50.0
        new = knn_unit_price_features(v, lp2, lq, fam, folds, k=20)
        same = folds == folds[i]
        assert np.array_equal(new[same].to_numpy(), base[same].to_numpy(), equal_nan=True)
        assert not np.array_equal(new[~same].to_numpy(), base[~same].to_numpy(), equal_nan=True)
    # a row's own quantity moves only its own prediction (price per unit times its quantity)
    lq2 = lq.copy()
    lq2[3] = lq[3] + np.log(2.0)
    new = knn_unit_price_features(v, lp, lq2, fam, folds, k=20)
    assert np.array_equal(
        new[folds == folds[3]].drop(index=3).to_numpy(),
        base[folds == folds[3]].drop(index=3).to_numpy(),
        equal_nan=True,
    )


def test_unit_price_features_missing_quantity():
    v, lp, lq, fam, folds = _unit_data()
    out = knn_unit_price_features(v, lp, lq, fam, folds, k=20)
    assert out.shape == (60, 3)
    no_qty = ~np.isfinite(lq)
    assert out.loc[~no_qty, "uknn_unit_n"].between(1, 20).all() and out.loc[~no_qty, "uknn_unit_wmean"].notna().all()
    assert out.loc[no_qty, "uknn_unit_wmean"].isna().all() and (out.loc[no_qty, "uknn_unit_n"] == 0).all()
    with pytest.raises(ValueError, match="length mismatch"):
        knn_unit_price_features(v, lp, lq[:5], fam, folds)


def test_unit_price_stats_transfers_price_per_unit():
    # neighbours: $2 for 100 g (same family), $50 for 1 kg of ml (other family, ignored)
    sims = np.array([[0.9, 0.8]], np.float32)
    out = unit_price_stats(
        sims,
        np.log(np.array([[2.0, 50.0]])),
        np.log(np.array([[100.0, 1000.0]])),
        np.array([["g", "ml"]]),
        np.log(np.array([300.0])),
        np.array(["g"]),
    )
    assert out.shape == (1, 3)
    assert np.allclose(np.expm1(out[0, :2]), 6.0, rtol=1e-5)  # 300 g at $0.02 / g
    assert out[0, 2] == 1


def test_log_total_quantity():
    out = log_total_quantity(np.array([100.0, 0.0, np.nan, 5.0]), np.array(["g", "g", "ml", "unknown"]))
    assert np.isclose(out[0], np.log(100.0)) and np.isnan(out[1:]).all()


def test_title_views_find_the_same_product_line():
    import pandas as pd

    from pricing_assets.lib.retrieval.reference import title_tfidf_views

    names = pd.Series(
        [
            "Goya Panela Brown Sugar Cane, 16 Ounce (Pack of 24)",
            "Goya Panela Brown Sugar Cane, 16 Ounce (Pack of 6)",
            "Blue Diamond Almonds Wasabi & Soy, 1.5 oz (Pack of 12)",
            "Blue Diamond Almonds Smokehouse, 6 oz (Pack of 12)",
            None,
        ]
    )
    views = title_tfidf_views(names)
    assert set(views) == {"title_char", "title_word"}
    for mat in views.values():
        assert mat.shape[0] == 5
        sims = (mat @ mat.T).toarray()
        np.fill_diagonal(sims, -1)
        assert sims[0].argmax() == 1 and sims[2].argmax() == 3
        assert np.allclose(sims[4], np.r_[0, 0, 0, 0, -1])  # empty title: similarity 0
    tiny = title_tfidf_views(pd.Series(["a", "b"]))  # nothing survives min_df
    assert tiny["title_char"].nnz == 0 and tiny["title_char"].shape == (2, 1)


@pytest.mark.parametrize("sparse", [False, True])
def test_one_search_gives_the_price_features_and_the_brute_force_unit_transfer(sparse):
    import scipy.sparse as sp

    v, lp, lq, fam, folds = _unit_data(n=90, seed=3)
    x = sp.csr_matrix(v) if sparse else v
    price, unit = knn_price_and_unit_features(x, lp, lq, fam, folds, k=4, unit_k=9, prefix="p", unit_prefix="u")
    np.testing.assert_allclose(
        price.to_numpy(), knn_price_features(x, lp, folds, k=4, prefix="p").to_numpy(), rtol=1e-6
    )
    # the unit half against a brute-force search (numpy: every allowed reference, sorted by similarity)
    price_ln = np.log(np.expm1(lp))
    expected = np.empty((len(v), len(UNIT_STATS)), dtype=np.float32)
    for i in range(len(v)):
        allowed = np.flatnonzero(folds != folds[i])
        top = allowed[np.argsort(-(v[allowed] @ v[i]), kind="stable")[:9]]
        expected[i] = unit_price_stats(
            (v[top] @ v[i])[None, :],
            price_ln[top][None, :],
            lq[top][None, :],
            fam[top][None, :],
            lq[i : i + 1],
            fam[i : i + 1],
        )[0]
    np.testing.assert_allclose(unit.to_numpy(), expected, rtol=1e-5, equal_nan=True)
    assert list(unit.columns) == [f"u_unit_{s}" for s in UNIT_STATS]
    with pytest.raises(ValueError, match="length mismatch"):
        knn_price_and_unit_features(x, lp[:5], lq, fam, folds)


def test_sparse_search_is_exact_top_k_and_pads_queries_with_few_matches():
    import scipy.sparse as sp

    from pricing_assets.lib.retrieval.search import search_top_k

    rng = np.random.default_rng(5)
    dense = rng.random((40, 30)) * (rng.random((40, 30)) < 0.2)  # non-negative, like TF-IDF
    dense /= np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
    query = dense[:8].copy()
    query[3] = 0.0  # an empty text: no reference shares a term
    query[5] = 0.0
    query[5, 0] = 1.0  # one term: only the references that have it match
    sims, ids = search_top_k(sp.csr_matrix(dense), sp.csr_matrix(query), 6)
    assert sims.shape == ids.shape == (8, 6) and ids.dtype == np.int64
    full = query @ dense.T
    for r in (0, 1, 2, 4, 6, 7):  # the k largest similarities, best first
        np.testing.assert_allclose(sims[r], np.sort(full[r])[::-1][:6], rtol=1e-6)
        np.testing.assert_allclose(full[r, ids[r]], sims[r], rtol=1e-6)
    assert (sims[3] == 0).all() and list(ids[3]) == [0, 1, 2, 3, 4, 5]
    matched = int((full[5] > 0).sum())
    assert matched < 6 and (sims[5, :matched] > 0).all() and (sims[5, matched:] == 0).all()
    assert len(set(ids[5])) == 6  # padded with distinct unused ids


def test_tfidf_views_drop_terms_in_too_many_products_only_in_a_big_reference():
    """The document-frequency cap (``KNN_TFIDF_MAX_DF``): a word in every title is no TF-IDF kNN
    term once the reference has more than ``KNN_TFIDF_MAX_DF_MIN_DOCS / KNN_TFIDF_MAX_DF`` products;
    a rare shared word still links its two titles; a small reference keeps every term."""
    import pandas as pd

    from pricing_assets.lib.retrieval.reference import (
        _TITLE_VECTORIZERS,
        KNN_TFIDF_MAX_DF,
        KNN_TFIDF_MAX_DF_MIN_DOCS,
        _fit_vectorizer,
    )

    n = int(KNN_TFIDF_MAX_DF_MIN_DOCS / KNN_TFIDF_MAX_DF) + 10
    names = pd.Series([f"common item{i} tok{i // 2}" for i in range(n)])  # tok<k> in exactly two titles
    vec, rows = _fit_vectorizer(_TITLE_VECTORIZERS["title_word"], names)
    assert "common" not in vec.vocabulary_ and "tok3" in vec.vocabulary_ and "item7" in vec.vocabulary_
    sims = (rows @ rows.T).toarray()
    np.fill_diagonal(sims, -1)
    assert sims[6].argmax() == 7 and sims[6, 8] == 0.0  # only the shared rare word links two rows
    small, _ = _fit_vectorizer(_TITLE_VECTORIZERS["title_word"], names[:KNN_TFIDF_MAX_DF_MIN_DOCS])
    assert "common" in small.vocabulary_
