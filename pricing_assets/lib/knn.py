"""Retrieval: a FAISS index of known (labeled) products and kNN neighbour-price features.

Every feature is computed so that a row never sees its own price: labeled rows query an index built
from the *other* CV folds only (out-of-fold), unlabeled rows query an index of all labeled rows.
"""

import numpy as np
import pandas as pd

KNN_STATS = ("median", "wmean", "std", "top1", "top1_sim", "mean_sim")


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


def _query(index_vectors, index_log_prices, query_vectors, k):
    index = build_index(index_vectors)
    k = min(k, index.ntotal)
    sims, ids = index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
    return neighbour_stats(sims, index_log_prices[ids])


def _query_sparse(index_vectors, index_log_prices, query_vectors, k, chunk: int = 2048):
    """Exact top-k by sparse dot product (cosine for L2-normalised rows, e.g. TF-IDF)."""
    k = min(k, index_vectors.shape[0])
    out = []
    ref_t = index_vectors.T.tocsc()
    for s in range(0, query_vectors.shape[0], chunk):
        sims = (query_vectors[s : s + chunk] @ ref_t).toarray().astype(np.float32)
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        idx, top = np.take_along_axis(idx, order, axis=1), np.take_along_axis(top, order, axis=1)
        out.append(neighbour_stats(top, index_log_prices[idx]))
    return np.vstack(out)


def knn_price_features(
    vectors: np.ndarray,
    log_price: np.ndarray,
    folds: np.ndarray,
    k: int = 10,
    prefix: str = "knn",
) -> pd.DataFrame:
    """Out-of-fold kNN neighbour-price features for every row.

    Rows with a finite ``log_price`` and ``fold >= 0`` are labeled: a labeled row in fold f gets
    features from an index over labeled rows of the other folds (never itself, never its fold).
    Unlabeled rows (``fold == -1`` or NaN price) query all labeled rows.

    Args:
        vectors: (n, d) float32 L2-normalised embeddings (one per row), dense (searched with an exact
            FAISS inner-product index) or a SciPy sparse matrix such as TF-IDF rows (exact sparse
            dot products).
        log_price: (n,) float64 ``log1p(price USD)``; NaN for unlabeled rows.
        folds: (n,) int fold id in ``0..K-1`` for labeled rows, -1 for unlabeled.
        k: neighbours per query.
        prefix: column prefix.

    Returns:
        DataFrame (n rows, same order) with float32 columns ``{prefix}_{stat}`` for stat in
        ``KNN_STATS``.

    Raises:
        ValueError: on length mismatch or when there are fewer than 2 labeled rows.
    """
    import scipy.sparse as sp

    sparse = sp.issparse(vectors)
    if sparse:
        vectors = sp.csr_matrix(vectors)
    query = _query_sparse if sparse else _query
    n = vectors.shape[0]
    if not (len(log_price) == len(folds) == n):
        raise ValueError(f"knn_price_features: length mismatch {n}, {len(log_price)}, {len(folds)}")
    folds = np.asarray(folds)
    labeled = np.isfinite(log_price) & (folds >= 0)
    if labeled.sum() < 2:
        raise ValueError("knn_price_features: need at least 2 labeled rows")
    out = np.full((n, len(KNN_STATS)), np.nan, dtype=np.float32)
    for f in np.unique(folds[labeled]):
        q = labeled & (folds == f)
        ref = labeled & (folds != f)
        out[q] = query(vectors[ref], log_price[ref], vectors[q], k)
    unl = ~labeled
    if unl.any():
        out[unl] = query(vectors[labeled], log_price[labeled], vectors[unl], k)
    return pd.DataFrame(out, columns=[f"{prefix}_{s}" for s in KNN_STATS])
