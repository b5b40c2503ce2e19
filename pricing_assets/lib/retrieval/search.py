"""Nearest-neighbour search and the neighbour statistics computed from its result: the FAISS index
(:func:`build_index`: exact up to :data:`APPROXIMATE_ABOVE` references, an inverted-file index above),
the dense / sparse top-k search (:func:`search_top_k`), the neighbours' price summaries
(:func:`neighbour_stats`) and the unit-price transfer (:func:`unit_price_stats`).

Training (the out-of-fold kNN features of :mod:`pricing_assets.lib.retrieval.knn`, one index per fold over
the other folds) and serving (the stored ``product_index``, or vectors indexed here) search through
these same two functions, so both use the same kind of search for a reference of the same size.

Why an approximate index past a size: an exact search costs queries x references x d; the out-of-fold
features of n rows search n x 0.8 n, so the exact search grows quadratically with the catalog. The
choice of index and of its parameters was measured (``benchmarks/bench_ann_recall.py``,
docs/experiments.md, "Scale: approximate dense kNN search and a bounded TF-IDF search").

Pure, Dagster-free. faiss, scipy and sparse_dot_topn are imported inside functions.
"""

import numpy as np

__all__ = [
    "APPROXIMATE_ABOVE",
    "IVF_LISTS_PER_SQRT_N",
    "IVF_NPROBE",
    "IVF_SEED",
    "IVF_TRAIN_PER_LIST",
    "KNN_STATS",
    "UNIT_STATS",
    "build_index",
    "search_top_k",
    "neighbour_stats",
    "unit_price_stats",
]

KNN_STATS = ("median", "wmean", "std", "top1", "top1_sim", "mean_sim")
UNIT_STATS = ("wmean", "median", "n")

#: References (index rows) above which :func:`build_index` returns an approximate index (an
#: inverted-file index, ``faiss.IndexIVFFlat``) instead of the exact ``faiss.IndexFlatIP``. At or below
#: it every search stays exact (a test, the sample, a catalog of up to 50k labeled products). Measured
#: on 2 shared cores (``benchmarks/bench_ann_recall.py --oof-fold``; docs/experiments.md, "Scale:
#: approximate dense kNN search and a bounded TF-IDF search"): one out-of-fold search (20 % of the
#: catalog querying the other 80 %, index build included) at 50k references takes 5.3 s exact and 5.3 s
#: approximate (the k-means build eats the gain: the break-even), at 150k 44.6 s exact, 19.8 s
#: approximate; the exact cost grows as n^2, the approximate one as ~n^1.5.
APPROXIMATE_ABOVE = 50_000
#: Inverted lists of the approximate index: ``nlist = IVF_LISTS_PER_SQRT_N * sqrt(n)`` (894 at 50k
#: references, 1,549 at 150k). The FAISS wiki ("Guidelines to choose an index", below 1M vectors)
#: advises ``IVF{K}`` with K between 4 sqrt(n) and 16 sqrt(n); the low end keeps the k-means training
#: (n_train x K x d per iteration) cheapest on a 2-core machine.
IVF_LISTS_PER_SQRT_N = 4
#: Training vectors per inverted list (a fixed-seed sample of the references, all of them when fewer):
#: FAISS k-means warns below 39 points per centroid and subsamples above 256 (``ClusteringParameters``
#: ``min_points_per_centroid`` / ``max_points_per_centroid``; the wiki advises 30 K to 256 K). 40 instead
#: of 64 at 150k references: build 14.7 s instead of 21.2 s, recall@10 0.969 instead of 0.972.
IVF_TRAIN_PER_LIST = 40
#: Inverted lists visited per query (``IndexIVF.nprobe``, set on the index, so a stored / pickled index
#: keeps it: ``faiss.serialize_index`` writes it; FAISS wiki, "Faster search"). 32 of 894 / 1,549 lists
#: (50k / 150k references): recall@10 0.963 / 0.969 of the exact top 10 on realistic MiniLM vectors,
#: 2,000 queries searched 3.6x / 6.5x faster than the exact index; 16 lists kept 0.928 / 0.944, 64
#: lists 0.983 / 0.985 at twice the search time (``benchmarks/bench_ann_recall.py --compare``).
IVF_NPROBE = 32
#: Seed of the training sample and of FAISS k-means (``ClusteringParameters.seed``): two builds over
#: the same vectors give the same index and the same results.
IVF_SEED = 0


def build_index(vectors: np.ndarray, approximate_above: int = APPROXIMATE_ABOVE):
    """Inner-product FAISS index of ``vectors`` (cosine similarity for L2-normalised rows): exact up to
    ``approximate_above`` rows, approximate (inverted file) above.

    * n <= ``approximate_above``: ``faiss.IndexFlatIP`` (exact).
    * n > ``approximate_above``: ``faiss.IndexIVFFlat`` with ``METRIC_INNER_PRODUCT`` (FAISS
      ``index_factory(d, "IVF{nlist},Flat", METRIC_INNER_PRODUCT)``; the index owns its coarse
      quantizer, so it survives ``faiss.serialize_index`` / pickling as one object), ``nlist =
      IVF_LISTS_PER_SQRT_N * sqrt(n)`` lists (at most ``n / 39``: FAISS k-means' minimum of training
      points per centroid, ``ClusteringParameters.min_points_per_centroid``; binds only below ~24k
      rows, i.e. with a small ``approximate_above``), trained (FAISS k-means, seed :data:`IVF_SEED`) on
      ``IVF_TRAIN_PER_LIST * nlist`` rows drawn with :data:`IVF_SEED`, ``nprobe = IVF_NPROBE`` set on
      the index. Vectors are stored uncompressed: an inner product to a visited vector is exact, only
      the lists visited are approximate. Deterministic: the same vectors give the same index.
      Parameters: FAISS wiki, "Guidelines to choose an index" and "Faster search" (``nprobe``). Why IVF
      and not HNSW (``IndexHNSWFlat``, M 32, efConstruction 40): at 150k references on 2 cores HNSW
      took 28 s to build against IVF's 14 s, for recall@10 0.971 at efSearch 128 (IVF: 0.969 at
      nprobe 32, same search time); the out-of-fold features build one index per fold, so the build
      counts five times; and IVF's build is deterministic (HNSW's multi-threaded insertion order is
      not). docs/experiments.md, "Scale: approximate dense kNN search and a bounded TF-IDF search".

    Args:
        vectors: (n, d) float32, L2-normalised rows (cast to contiguous float32).
        approximate_above: references above which the index is approximate (default
            :data:`APPROXIMATE_ABOVE`; ``None``: always exact).

    Returns:
        A FAISS index holding the n vectors in order (ids 0..n-1): ``faiss.IndexFlatIP`` or
        ``faiss.IndexIVFFlat``.

    Raises:
        ValueError: if ``vectors`` is not 2-D or contains non-finite values.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"build_index: expected (n, d) vectors, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("build_index: vectors contain NaN/inf")
    n, d = vectors.shape
    if approximate_above is None or n <= approximate_above:
        index = faiss.IndexFlatIP(d)
        index.add(vectors)
        return index
    nlist = max(
        1, min(int(IVF_LISTS_PER_SQRT_N * np.sqrt(n)), n // faiss.ClusteringParameters().min_points_per_centroid)
    )
    index = faiss.index_factory(d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = IVF_SEED
    n_train = min(n, IVF_TRAIN_PER_LIST * nlist)
    train = (
        vectors if n_train == n else vectors[np.sort(np.random.default_rng(IVF_SEED).choice(n, n_train, replace=False))]
    )
    index.train(train)
    index.add(vectors)
    index.nprobe = min(IVF_NPROBE, nlist)
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


def _search_index(index, query_vectors, k: int):
    """((m, k) float32 similarities, (m, k) int64 ids) of a FAISS index, every id a stored row: an
    approximate index may find fewer than ``k`` vectors in the lists it visits (FAISS pads with id -1);
    such queries are searched again visiting every list (``SearchParametersIVF(nprobe=nlist)``: exact)."""
    import faiss

    q = np.ascontiguousarray(query_vectors, dtype=np.float32)
    sims, ids = index.search(q, k)
    short = np.flatnonzero((ids < 0).any(axis=1))
    if len(short):
        if not hasattr(index, "nlist"):
            raise RuntimeError(f"search_top_k: the index found fewer than {k} neighbours for {len(short)} queries")
        sims[short], ids[short] = index.search(q[short], k, params=faiss.SearchParametersIVF(nprobe=index.nlist))
    return sims, ids.astype(np.int64)


def search_top_k(index_vectors, query_vectors, k, approximate_above: int = APPROXIMATE_ABOVE):
    """Top-k neighbours: ((m, k) float32 similarities best first, (m, k) int64 ids into
    ``index_vectors``, every id a stored row). Cosine similarity for L2-normalised rows.

    Dense rows: a FAISS inner-product index (:func:`build_index`, exact up to ``approximate_above``
    rows, approximate above); ``index_vectors`` may be such an index already, exact or approximate (a
    stored one, e.g. the ``product_index`` asset: searched as it is, with its own ``nprobe``, not
    rebuilt). SciPy sparse non-negative rows (TF-IDF): exact,
    ``sparse_dot_topn.sp_matmul_topn`` (the sparse product keeping only each row's ``k`` largest
    values, multi-threaded, never holding the dense (m, n) similarity matrix); a query with fewer than
    ``k`` references of positive similarity is padded with similarity 0 and the lowest unused ids.
    Its cost per query is bounded by the document-frequency cap of the views' vectorizers
    (:func:`pricing_assets.lib.retrieval.reference._fit_vectorizer`), not here.
    Why this search: docs/experiments.md ("Scale: sparse kNN search through `sparse_dot_topn`",
    "Scale: approximate dense kNN search and a bounded TF-IDF search").

    Args:
        index_vectors: a FAISS index (anything with ``ntotal``), (n, d) float32 dense rows, or an
            (n, v) SciPy sparse matrix.
        query_vectors: (m, d) float32 / (m, v) sparse rows of the same space.
        k: neighbours per query (at most n are returned).
        approximate_above: for dense rows, passed to :func:`build_index`.

    Raises:
        ValueError: from :func:`build_index` (non-finite or non-2-D dense rows).
        RuntimeError: a FAISS index that is not an inverted file returned fewer than k neighbours.
    """
    import scipy.sparse as sp

    if hasattr(index_vectors, "ntotal"):  # a FAISS index
        return _search_index(index_vectors, query_vectors, min(k, index_vectors.ntotal))
    k = min(k, index_vectors.shape[0])
    m = query_vectors.shape[0]
    if not sp.issparse(index_vectors):
        return _search_index(build_index(index_vectors, approximate_above=approximate_above), query_vectors, k)
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
