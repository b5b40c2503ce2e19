"""Comparables (``lib.serving.comparables``): the most similar labeled products over two views."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pricing_assets.lib.retrieval.search import build_index
from pricing_assets.lib.serving.comparables import COMPARABLE_COLUMNS, find_comparables


def _ref():
    vec = np.eye(4, dtype=np.float32)  # 4 labeled products, orthogonal text vectors
    rows = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]], dtype=np.float64))
    ref = pd.DataFrame(
        {"sample_id": ["r0", "r1", "r2", "r3"], "item_name": ["A", "B", "C", "D"], "price": [1.0, 2.0, 3.0, 4.0]}
    )
    return build_index(vec), rows, ref


def test_best_of_both_views_ranked_with_the_labeled_price():
    index, rows, ref = _ref()
    q = np.array([[0.8, 0.6, 0, 0]], dtype=np.float32)  # text: r0 0.8, r1 0.6
    q_rows = sp.csr_matrix(np.array([[0, 0, 1.0]]))  # tf-idf: r2 exactly
    out = find_comparables(np.array(["p"]), index, "text:m", q, rows, q_rows, ref, k=3)
    assert list(out.columns) == list(COMPARABLE_COLUMNS)
    assert out["comparable_id"].tolist() == ["r2", "r0", "r1"] and out["rank"].tolist() == [1, 2, 3]
    assert out["view"].tolist() == ["tfidf", "text:m", "text:m"]
    assert out["similarity"].tolist() == pytest.approx([1.0, 0.8, 0.6])
    assert out["comparable_price"].tolist() == [3.0, 1.0, 2.0] and out["comparable_name"].tolist() == ["C", "A", "B"]
    # the reference's own vectors (a model pickled without its index) find the same comparables
    vectors = np.eye(4, dtype=np.float32)
    pd.testing.assert_frame_equal(find_comparables(np.array(["p"]), vectors, "text:m", q, rows, q_rows, ref, k=3), out)


def test_a_product_found_by_both_views_counts_once_and_mismatch_raises():
    index, rows, ref = _ref()
    q = np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32)
    q_rows = sp.csr_matrix(np.array([[1.0, 0, 0], [0.6, 0.8, 0]]))
    out = find_comparables(np.array(["p", "q"]), index, "text:m", q, rows, q_rows, ref, k=2)
    assert out.groupby("sample_id")["comparable_id"].apply(list).to_dict()["p"][0] == "r0"
    assert not out.duplicated(["sample_id", "comparable_id"]).any() and len(out) == 4
    with pytest.raises(ValueError, match="reference 3 rows"):
        find_comparables(np.array(["p"]), index, "text:m", q[:1], rows, q_rows[:1], ref.head(3), k=2)
    empty = find_comparables(np.array([], dtype=str), index, "text:m", q[:0], rows, q_rows[:0], ref, k=2)
    assert len(empty) == 0 and list(empty.columns) == list(COMPARABLE_COLUMNS)
