"""Exact nearest-neighbour search and the neighbour statistics computed from its result: the FAISS
index (:func:`build_index`), the exact dense / sparse top-k search (:func:`search_top_k`), the
neighbours' price summaries (:func:`neighbour_stats`) and the unit-price transfer (:func:`unit_price_stats`).

Pure, Dagster-free. faiss, scipy and sparse_dot_topn are imported inside functions.
"""

import numpy as np

__all__ = ["KNN_STATS", "UNIT_STATS", "build_index", "search_top_k", "neighbour_stats", "unit_price_stats"]

KNN_STATS = ("median", "wmean", "std", "top1", "top1_sim", "mean_sim")
UNIT_STATS = ("wmean", "median", "n")


def build_index(vectors: np.ndarray):
    """Exact inner-product FAISS index (cosine similarity for L2-normalised vectors).

    Args:
        vectors: (n, d) float32, L2-normalised rows.

    Returns:
        ``faiss.IndexFlatIP`` holding the n vectors in order (ids 0..n-1).

    Raises:
        ValueError: if ``vectors`` is not 2-D or contains non-finite values.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"build_index: expected (n, d) vectors, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("build_index: vectors contain NaN/inf")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index


def neighbour_stats(sims: np.ndarray, neigh_log_prices: np.ndarray, temperature: float = 0.05) -> np.ndarray:
    """Summaries of the neighbours' log prices for each query.

    Args:
        sims: (n, k) float32 cosine similarities, best first.
        neigh_log_prices: (n, k) float64 ``log1p(price)`` of those neighbours.
        temperature: softmax temperature on similarity for the weighted mean (0.05 puts most weight on
            neighbours within ~0.1 cosine of the best one).

    Returns:
        (n, 6) float32 in the order of ``KNN_STATS``: median, similarity-weighted mean and std of
        neighbour log prices, top-1 neighbour log price, top-1 similarity, mean similarity.
    """
    w = np.exp((sims - sims[:, :1]) / temperature)
    w /= w.sum(axis=1, keepdims=True)
    return np.column_stack(
        [
            np.median(neigh_log_prices, axis=1),
            (w * neigh_log_prices).sum(axis=1),
            neigh_log_prices.std(axis=1),
            neigh_log_prices[:, 0],
            sims[:, 0],
            sims.mean(axis=1),
        ]
    ).astype(np.float32)


def search_top_k(index_vectors, query_vectors, k):
    """Exact top-k neighbours: ((m, k) float32 similarities best first, (m, k) int64 ids into
    ``index_vectors``). Cosine similarity for L2-normalised rows.

    Dense rows: an exact FAISS inner-product index (:func:`build_index`); ``index_vectors`` may be that
    index already (a stored one, e.g. the ``product_index`` asset: searched as it is, not rebuilt). SciPy sparse non-negative rows (TF-IDF):
    ``sparse_dot_topn.sp_matmul_topn`` (the sparse product keeping only each row's ``k`` largest
    values, multi-threaded, never holding the dense (m, n) similarity matrix); a query with fewer than
    ``k`` references of positive similarity is padded with similarity 0 and the lowest unused ids.
    Why this search: docs/experiments.md ("Scale: sparse kNN search through `sparse_dot_topn`").
    """
    import scipy.sparse as sp

    if hasattr(index_vectors, "ntotal"):  # a FAISS index
        k = min(k, index_vectors.ntotal)
        sims, ids = index_vectors.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
        return sims, ids.astype(np.int64)
    k = min(k, index_vectors.shape[0])
    m = query_vectors.shape[0]
    if not sp.issparse(index_vectors):
        index = build_index(index_vectors)
        sims, ids = index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
        return sims, ids.astype(np.int64)
    from sparse_dot_topn import sp_matmul_topn

    from pricing_assets.lib.runtime.cpu import default_threads

    top = sp_matmul_topn(
        sp.csr_matrix(query_vectors, dtype=np.float64),
        sp.csr_matrix(index_vectors, dtype=np.float64).T.tocsr(),
        top_n=k,
        sort=True,
        n_threads=default_threads(),
        idx_dtype=np.int64,
    )
    sims = np.zeros((m, k), dtype=np.float32)
    ids = np.zeros((m, k), dtype=np.int64)
    counts = np.diff(top.indptr)
    rows = np.repeat(np.arange(m), counts)
    cols = np.arange(top.nnz) - np.repeat(top.indptr[:-1], counts)
    sims[rows, cols] = top.data
    ids[rows, cols] = top.indices
    for r in np.flatnonzero(counts < k):  # fewer than k references share a term with the query
        have = ids[r, : counts[r]]
        ids[r, counts[r] :] = np.setdiff1d(np.arange(counts[r] + k), have)[: k - counts[r]]
    return sims, ids


def unit_price_stats(
    sims: np.ndarray,
    neigh_log_price: np.ndarray,
    neigh_log_qty: np.ndarray,
    neigh_family: np.ndarray,
    own_log_qty: np.ndarray,
    own_family: np.ndarray,
    temperature: float = 0.05,
) -> np.ndarray:
    """Neighbour prices transferred per unit of quantity ("unit-price transfer").

    Similar products often differ only in net quantity (a 12 oz vs a 32 oz jar): for each query the
    neighbours of the *same unit family* (g / ml / count) with a known quantity give a log unit price
    ``log(price) - log(qty)``; their summary plus the query's own ``log(qty)`` is a predicted log price.

    Args:
        sims: (m, k) float32 cosine similarities, best first.
        neigh_log_price: (m, k) float64 natural-log price (``log(price USD)``) of the neighbours.
        neigh_log_qty: (m, k) float64 ``log(total quantity in canonical units)``; NaN when unknown.
        neigh_family: (m, k) str unit family of the neighbours.
        own_log_qty: (m,) float64 the query's ``log(total quantity)``; NaN when unknown.
        own_family: (m,) str the query's unit family.
        temperature: softmax temperature on similarity (as in :func:`neighbour_stats`).

    Returns:
        (m, 3) float32 in the order of ``UNIT_STATS``: ``log1p`` of the transferred price from the
        similarity-weighted mean and from the median of same-family unit prices (NaN when the query has
        no quantity or no same-family neighbour), and the number of same-family neighbours used.
    """
    same = (neigh_family == own_family[:, None]) & np.isfinite(neigh_log_qty) & np.isfinite(own_log_qty)[:, None]
    unit = np.where(same, neigh_log_price - np.nan_to_num(neigh_log_qty), np.nan)
    w = np.exp((sims - sims[:, :1]) / temperature) * same
    ws = w.sum(axis=1)
    ok = ws > 0
    wmean = np.full(len(sims), np.nan)
    wmean[ok] = (w[ok] * np.nan_to_num(unit[ok])).sum(axis=1) / ws[ok]
    med = np.full(len(sims), np.nan)
    if ok.any():
        med[ok] = np.nanmedian(unit[ok], axis=1)
    with np.errstate(over="ignore"):
        return np.column_stack(
            [np.log1p(np.exp(wmean + own_log_qty)), np.log1p(np.exp(med + own_log_qty)), same.sum(axis=1)]
        ).astype(np.float32)
