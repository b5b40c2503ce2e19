"""Comparable products behind a price: the labeled products most similar to a priced one.

Two views are searched, each exact: the FAISS index over the labeled products' text embeddings that
the serving model was promoted with (the ``product_index`` asset, first enabled text model) and the word TF-IDF view of the full catalog
text fitted on the labeled products (``knn_reference``'s ``tfidf`` rows and vectorizer). The
comparables of a product are the ``k`` most similar labeled products over both views (a product found
by both keeps its best similarity and the view that found it), with the price each was labeled with.
"""

import numpy as np
import pandas as pd

#: Columns of a comparables frame: one row per (priced product, rank).
COMPARABLE_COLUMNS = (
    "sample_id",
    "rank",
    "comparable_id",
    "comparable_name",
    "comparable_price",
    "similarity",
    "view",
)
#: Comparables kept per priced product.
DEFAULT_K = 5


def _rows(sample_ids, ref_ids, sims, ids, view: str) -> pd.DataFrame:
    n, k = ids.shape
    return pd.DataFrame(
        {
            "sample_id": np.repeat(np.asarray(sample_ids, dtype=str), k),
            "comparable_id": np.asarray(ref_ids, dtype=str)[ids.ravel()],
            "similarity": sims.ravel().astype(np.float64),
            "view": view,
        }
    )


def find_comparables(
    sample_ids: np.ndarray,
    text_index,
    text_view: str,
    query_vectors: np.ndarray,
    sparse_rows,
    query_rows,
    reference: pd.DataFrame,
    k: int = DEFAULT_K,
) -> pd.DataFrame:
    """The ``k`` most similar labeled products of each of n priced products.

    Args:
        sample_ids: (n,) str ids of the priced products.
        text_index: the m labeled products' text vectors (row i = ``reference`` row i): a FAISS
            inner-product index over them (the stored ``product_index``) or the (m, d) float32 vectors
            (``lib.retrieval.search.search_top_k`` searches either); text_view: its view name (e.g.
            ``text:minilm_l6``).
        query_vectors: (n, d) float32 L2-normalised text vectors of the priced products (same model).
        sparse_rows: (m, v) csr TF-IDF rows of the labeled products; query_rows: (n, v) csr of the priced ones.
        reference: the m labeled products in index order: ``sample_id``, ``item_name``, ``price`` (USD).
        k: comparables per product.

    Returns:
        DataFrame with :data:`COMPARABLE_COLUMNS`, ``k`` rows per priced product (fewer when the
        reference is smaller), rank 1 = most similar; ``comparable_price`` USD; similarity in [0, 1].

    Raises:
        ValueError: when the index, the sparse rows and ``reference`` do not hold the same products.
    """
    from pricing_assets.lib.retrieval.search import search_top_k

    m = len(reference)
    n_text = text_index.ntotal if hasattr(text_index, "ntotal") else text_index.shape[0]
    if n_text != m or sparse_rows.shape[0] != m:
        raise ValueError(f"find_comparables: index {n_text}, tf-idf {sparse_rows.shape[0]}, reference {m} rows")
    if len(sample_ids) == 0:
        return pd.DataFrame(
            {
                c: pd.Series([], dtype=float if c in ("comparable_price", "similarity") else str)
                for c in COMPARABLE_COLUMNS
            }
        )
    kk = min(k, m)
    sims, ids = search_top_k(text_index, query_vectors, kk)
    frames = [_rows(sample_ids, reference["sample_id"], sims, ids, text_view)]
    s_sims, s_ids = search_top_k(sparse_rows, query_rows, kk)
    frames.append(_rows(sample_ids, reference["sample_id"], s_sims, s_ids, "tfidf"))
    both = pd.concat(frames, ignore_index=True)
    both = both.sort_values(["sample_id", "similarity"], ascending=[True, False], kind="stable")
    both = both.drop_duplicates(["sample_id", "comparable_id"], keep="first")
    top = both.groupby("sample_id", sort=False).head(kk).copy()
    top["rank"] = top.groupby("sample_id", sort=False).cumcount() + 1
    ref = reference.assign(sample_id=reference["sample_id"].astype(str)).set_index("sample_id")
    top["comparable_name"] = ref["item_name"].reindex(top["comparable_id"]).fillna("").astype(str).to_numpy()
    top["comparable_price"] = ref["price"].reindex(top["comparable_id"]).to_numpy(dtype=float)
    top["similarity"] = top["similarity"].clip(0.0, 1.0)
    order = {s: i for i, s in enumerate(np.asarray(sample_ids, dtype=str))}
    top = top.assign(_o=top["sample_id"].map(order)).sort_values(["_o", "rank"], kind="stable").drop(columns="_o")
    return top[list(COMPARABLE_COLUMNS)].reset_index(drop=True)
