"""Retrieval: a FAISS index of known (labeled) products and kNN neighbour-price features.

Two paths, so that a row never sees its own price: the training rows (``products``, every one
labeled, with a fold) query the rows of the *other* CV folds only (out-of-fold,
:func:`build_knn_features`); a product without a price queries every labeled product
(:func:`knn_features_for_new_rows`, the serving path).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pricing_assets.lib.models.cross_validation import require_labeled

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


def _search(index_vectors, query_vectors, k):
    """Exact top-k neighbours: ((m, k) float32 similarities best first, (m, k) int64 ids into
    ``index_vectors``). Cosine similarity for L2-normalised rows.

    Dense rows: an exact FAISS inner-product index. SciPy sparse non-negative rows (TF-IDF):
    ``sparse_dot_topn.sp_matmul_topn`` (the sparse product keeping only each row's ``k`` largest
    values, multi-threaded, never holding the dense (m, n) similarity matrix); a query with fewer than
    ``k`` references of positive similarity is padded with similarity 0 and the lowest unused ids.
    Why this search: docs/experiments.md ("Scale: sparse kNN search through `sparse_dot_topn`").
    """
    import scipy.sparse as sp

    k = min(k, index_vectors.shape[0])
    m = query_vectors.shape[0]
    if not sp.issparse(index_vectors):
        index = build_index(index_vectors)
        sims, ids = index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
        return sims, ids.astype(np.int64)
    from sparse_dot_topn import sp_matmul_topn

    from pricing_assets.lib.runtime.cpu import default_threads

    top = sp_matmul_topn(
        sp.csr_matrix(query_vectors, dtype=np.float64), sp.csr_matrix(index_vectors, dtype=np.float64).T.tocsr(),
        top_n=k, sort=True, n_threads=default_threads(), idx_dtype=np.int64,
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
        ids[r, counts[r]:] = np.setdiff1d(np.arange(counts[r] + k), have)[: k - counts[r]]
    return sims, ids


def oof_query_plan(folds: np.ndarray):
    """The leakage rule of every training kNN feature, as (query mask, reference mask) pairs over n
    labeled rows: a row of fold f queries the rows of the other folds only (never itself, never its
    fold). Each row is a query in exactly one pair.

    Args:
        folds: (n,) int fold ids (>= 0).

    Yields:
        (q, ref): (n,) bool masks, ``q & ref`` always empty.
    """
    for f in np.unique(folds):
        yield folds == f, folds != f


def _query(index_vectors, index_log_prices, query_vectors, k):
    sims, ids = _search(index_vectors, query_vectors, k)
    return neighbour_stats(sims, index_log_prices[ids])


def knn_price_features(
    vectors: np.ndarray,
    log_price: np.ndarray,
    folds: np.ndarray,
    k: int = 10,
    prefix: str = "knn",
) -> pd.DataFrame:
    """Out-of-fold kNN neighbour-price features of n labeled rows: a row in fold f gets features from
    an index over the rows of the other folds (never itself, never its fold).

    Args:
        vectors: (n, d) float32 L2-normalised embeddings (one per row), dense (searched with an exact
            FAISS inner-product index) or a SciPy sparse matrix such as TF-IDF rows (exact sparse
            dot products).
        log_price: (n,) float64 ``log1p(price USD)``, finite.
        folds: (n,) int fold id in ``0..K-1``.
        k: neighbours per query.
        prefix: column prefix.

    Returns:
        DataFrame (n rows, same order) with float32 columns ``{prefix}_{stat}`` for stat in
        ``KNN_STATS``.

    Raises:
        ValueError: on length mismatch, a row without a finite price or with a fold < 0
            (:func:`~pricing_assets.lib.models.cross_validation.require_labeled`), or fewer than 2 rows.
    """
    import scipy.sparse as sp

    if sp.issparse(vectors):
        vectors = sp.csr_matrix(vectors)
    n = vectors.shape[0]
    if not (len(log_price) == len(folds) == n):
        raise ValueError(f"knn_price_features: length mismatch {n}, {len(log_price)}, {len(folds)}")
    folds = np.asarray(folds)
    require_labeled(log_price, folds, "knn_price_features")
    if n < 2:
        raise ValueError("knn_price_features: need at least 2 rows")
    out = np.full((n, len(KNN_STATS)), np.nan, dtype=np.float32)
    for q, ref in oof_query_plan(folds):
        out[q] = _query(vectors[ref], log_price[ref], vectors[q], k)
    return pd.DataFrame(out, columns=[f"{prefix}_{s}" for s in KNN_STATS])


def title_tfidf_views(item_names: pd.Series) -> dict:
    """TF-IDF views of the item names alone, for neighbour search (fitted on the titles given).

    The full product text mixes the title with bullets and descriptions that many products share
    ("gluten free", "great for parties"); on the title alone, variants of one product line (other
    size, other flavour) are each other's nearest neighbours. Two views: character 2-4-grams inside
    word boundaries (robust to spelling and run-together sizes like "16oz") and word 1-2-grams. Their
    kNN features lower LightGBM's OOF SMAPE (docs/experiments.md, "Title-only TF-IDF kNN views").

    Args:
        item_names: (n,) str titles (NaN -> "").

    Returns:
        ``{"title_char": (n, v1) csr, "title_word": (n, v2) csr}`` float64, rows L2-normalised
        (an empty title is an all-zero row: similarity 0 to everything; a view with no term kept
        by ``min_df`` is an (n, 1) zero matrix).
    """
    names = pd.Series(item_names).fillna("").astype(str).reset_index(drop=True)
    return {name: _fit_vectorizer(params, names)[1] for name, params in _TITLE_VECTORIZERS.items()}


UNIT_STATS = ("wmean", "median", "n")
#: The unit-price statistics that are prices (the neighbours' unit price times the row's own
#: quantity), so they grow with the row's IPQ; ``n`` is a count and does not.
UNIT_PRICE_STATS = ("wmean", "median")


def is_ipq_increasing_column(column: str) -> bool:
    """True for a ``knn_features`` column that grows with the row's own pack quantity (a
    ``*_unit_wmean`` / ``*_unit_median`` column of :func:`knn_unit_price_features`)."""
    return column.startswith("uknn") and column.endswith(tuple(f"_unit_{s}" for s in UNIT_PRICE_STATS))


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
        return np.column_stack([np.log1p(np.exp(wmean + own_log_qty)), np.log1p(np.exp(med + own_log_qty)), same.sum(axis=1)]).astype(np.float32)


def knn_unit_price_features(
    vectors,
    log_price: np.ndarray,
    log_qty: np.ndarray,
    family: np.ndarray,
    folds: np.ndarray,
    k: int = 20,
    prefix: str = "uknn",
) -> pd.DataFrame:
    """Out-of-fold unit-price-transfer kNN features (:func:`unit_price_stats`) of n labeled rows.

    Same leakage rule as :func:`knn_price_features`: a row in fold f only retrieves rows of the other
    folds.

    Args:
        vectors: (n, d) float32 L2-normalised embeddings, or SciPy sparse rows (e.g. TF-IDF).
        log_price: (n,) float64 ``log1p(price USD)``, finite.
        log_qty: (n,) float64 ``log`` of the total quantity in canonical units (g, ml, count); NaN
            when unknown.
        family: (n,) str unit family (``g``/``ml``/``count``; anything else never matches a
            neighbour of another family).
        folds: (n,) int fold id in ``0..K-1``.
        k: neighbours retrieved per query (only same-family ones are used; 20 is the value of
            docs/experiments.md, "Unit-price transfer kNN features").
        prefix: column prefix. Columns do not start with ``knn_``: they are NaN where the row has
            no quantity.

    Returns:
        DataFrame (n rows, same order), float32 columns ``{prefix}_unit_{stat}`` for ``UNIT_STATS``.

    Raises:
        ValueError: on length mismatch, a row without a finite price or with a fold < 0, or fewer
            than 2 rows.
    """
    return knn_price_and_unit_features(vectors, log_price, log_qty, family, folds, k=k, unit_k=k, unit_prefix=prefix)[1]


def knn_price_and_unit_features(
    vectors,
    log_price: np.ndarray,
    log_qty: np.ndarray,
    family: np.ndarray,
    folds: np.ndarray,
    k: int = 10,
    unit_k: int = 20,
    prefix: str = "knn",
    unit_prefix: str = "uknn",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`knn_price_features` and :func:`knn_unit_price_features` of one view from one search
    per (query, reference) pair of :func:`oof_query_plan`: the ``max(k, unit_k)`` nearest references,
    of which the first ``k`` give the price statistics. Half the searches of calling both (the
    search is the quadratic part of ``knn_features``); the same values, up to the order of
    references tied in similarity.

    Args:
        vectors, log_price, log_qty, family, folds: as :func:`knn_unit_price_features`.
        k, unit_k: neighbours for the price statistics / the unit-price transfer.
        prefix, unit_prefix: column prefixes of the two frames.

    Returns:
        (price frame: n rows, float32 ``{prefix}_{stat}`` for ``KNN_STATS``; unit frame: n rows,
        float32 ``{unit_prefix}_unit_{stat}`` for ``UNIT_STATS``), rows in input order.

    Raises:
        ValueError: on length mismatch, a row without a finite price or with a fold < 0, or fewer
            than 2 rows.
    """
    import scipy.sparse as sp

    if sp.issparse(vectors):
        vectors = sp.csr_matrix(vectors)
    n = vectors.shape[0]
    log_price = np.asarray(log_price, dtype=np.float64)
    log_qty = np.asarray(log_qty, dtype=np.float64)
    family = np.asarray(family).astype(str)
    folds = np.asarray(folds)
    if not (len(log_price) == len(log_qty) == len(family) == len(folds) == n):
        raise ValueError(f"knn_price_and_unit_features: length mismatch {n}, {len(log_price)}, {len(log_qty)}, {len(family)}, {len(folds)}")
    require_labeled(log_price, folds, "knn_price_and_unit_features")
    if n < 2:
        raise ValueError("knn_price_and_unit_features: need at least 2 rows")
    lp = np.log(np.clip(np.expm1(log_price), 1e-6, None))
    price = np.full((n, len(KNN_STATS)), np.nan, dtype=np.float32)
    unit = np.full((n, len(UNIT_STATS)), np.nan, dtype=np.float32)
    for q, ref in oof_query_plan(folds):
        sims, ids = _search(vectors[ref], vectors[q], max(k, unit_k))
        g = np.flatnonzero(ref)[ids]
        price[q] = neighbour_stats(sims[:, :k], log_price[g[:, :k]])
        unit[q] = unit_price_stats(sims[:, :unit_k], lp[g[:, :unit_k]], log_qty[g[:, :unit_k]], family[g[:, :unit_k]], log_qty[q], family[q])
    return (pd.DataFrame(price, columns=[f"{prefix}_{s}" for s in KNN_STATS]),
            pd.DataFrame(unit, columns=[f"{unit_prefix}_unit_{s}" for s in UNIT_STATS]))


def log_total_quantity(qty_canonical: np.ndarray, family: np.ndarray) -> np.ndarray:
    """``log`` of a total quantity in canonical units, NaN where unknown.

    Args:
        qty_canonical: (n,) float total quantity (g, ml or count; ``brand_features.qty_canonical``).
        family: (n,) str unit family; ``unknown`` gives NaN.

    Returns:
        (n,) float64.
    """
    q = np.asarray(qty_canonical, dtype=np.float64)
    ok = np.isfinite(q) & (q > 0) & (np.asarray(family).astype(str) != "unknown")
    return np.where(ok, np.log(np.where(ok, q, 1.0)), np.nan)


@dataclass
class KnnReference:
    """What a new product's kNN features are computed against: the labeled products' vectors in every
    view, their prices and quantities, and the text vectorizers fitted on their texts.

    Built by :func:`fit_knn_reference` (the ``knn_reference`` model asset); used by
    :func:`build_knn_features` (labeled rows, out-of-fold) and :func:`knn_features_for_new_rows`
    (products without a price), so both paths search the same vectors.

    Attributes:
        sample_ids: (m,) str ids of the labeled products, in ``products`` order.
        log_price: (m,) float64 ``log1p(price USD)``.
        log_qty: (m,) float64 ``log`` total quantity in canonical units (NaN unknown); family: (m,) str.
        text: text model name -> (m, d) float32 L2-normalised embeddings.
        vectorizers: ``tfidf`` (full product text), ``title_char``, ``title_word`` -> fitted scikit-learn
            ``TfidfVectorizer`` (None: no term survived ``min_df``; the view is an all-zero column).
        sparse: the same names -> (m, v) csr TF-IDF rows of the labeled products.
        image: image model name -> ((p, d) float32 vectors, (p,) float64 log1p price) of the labeled
            products with a photo; absent when fewer than ``2 * n_folds`` have one (features NaN).
        image_names: every image model name (for the NaN columns).
        k, unit_k: neighbours per query (price stats / unit-price transfer).
    """

    sample_ids: np.ndarray
    log_price: np.ndarray
    log_qty: np.ndarray
    family: np.ndarray
    text: dict
    vectorizers: dict
    sparse: dict
    image: dict
    image_names: tuple
    k: int
    unit_k: int

    @property
    def n(self) -> int:
        """Number of labeled reference products."""
        return len(self.log_price)


#: Terms found in more than this share of the labeled products are left out of the TF-IDF kNN views
#: (scikit-learn's ``max_df``): they carry almost no weight in a similarity, yet every pair of products
#: sharing them is a candidate pair, which makes the exact sparse search quadratic in the catalog. The cap
#: leaves OOF SMAPE within seed noise and makes the search faster (docs/experiments.md, "Scale: a
#: document-frequency cap on the kNN TF-IDF views").
KNN_TFIDF_MAX_DF = 0.2
#: ... and only when in more than this many products: a small reference (a test, a first batch) keeps
#: every term, as the search over it is cheap.
KNN_TFIDF_MAX_DF_MIN_DOCS = 50
_TITLE_VECTORIZERS = {
    "title_char": {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 2, "sublinear_tf": True},
    "title_word": {"ngram_range": (1, 2), "min_df": 1, "sublinear_tf": True},
}
_TFIDF_VIEW = {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True}


def _fit_vectorizer(params: dict, texts: pd.Series, max_df_share: float = KNN_TFIDF_MAX_DF):
    """(fitted ``TfidfVectorizer`` or None when no term survives ``min_df`` / the document-frequency
    cap, (n, v) csr rows of ``texts``) in one tokenising pass (``fit_transform``: the same rows
    ``transform`` gives). Terms in more than ``max(max_df_share * n, KNN_TFIDF_MAX_DF_MIN_DOCS)``
    of the n texts are dropped (``max_df`` as a document count; ``max_df_share=1`` keeps every term)."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    max_docs = max(int(max_df_share * len(texts)), KNN_TFIDF_MAX_DF_MIN_DOCS)
    vectorizer = TfidfVectorizer(**params, max_df=max_docs)
    try:
        return vectorizer, vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # no term survives min_df / max_df (tiny or empty texts): no neighbour signal
        return None, sp.csr_matrix((len(texts), 1), dtype=np.float64)


def _transform(vectorizer, texts: pd.Series):
    import scipy.sparse as sp

    if vectorizer is None:
        return sp.csr_matrix((len(texts), 1), dtype=np.float64)
    return vectorizer.transform(texts).tocsr()


def _view_texts(items: pd.DataFrame) -> dict[str, pd.Series]:
    from pricing_assets.lib.models.tfidf_ridge import product_text

    names = items["item_name"].fillna("").astype(str).reset_index(drop=True)
    return {"tfidf": product_text(items), "title_char": names, "title_word": names}


def _log_qty_family(items: pd.DataFrame, brand_features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    bf = brand_features.set_index("sample_id").reindex(items["sample_id"].astype(str)).reset_index(drop=True)
    family = bf["ipq_unit_family"].fillna("unknown").astype(str).to_numpy()
    return log_total_quantity(bf["qty_canonical"].to_numpy(dtype=float), family), family


def fit_knn_reference(
    products: pd.DataFrame,
    brand_features: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
    k: int = 10,
    unit_k: int = 20,
    n_folds: int = 5,
) -> KnnReference:
    """The :class:`KnnReference` of the m labeled rows of ``products`` (every row: a price and a fold).

    The TF-IDF vectorizers are fitted on these products' texts only: a product being priced never
    shapes the vocabulary it is searched with (no transductive step).

    Args:
        products, brand_features, embeddings, k, unit_k, n_folds: as :func:`build_knn_features`.

    Returns:
        :class:`KnnReference` over the m rows, in ``products`` order.

    Raises:
        ValueError: a row without a finite price or with a fold < 0, fewer than 2 rows, or no text
            embedding.
    """
    products = products.reset_index(drop=True)
    log_price = np.log1p(products["price"].to_numpy(dtype=float))
    require_labeled(log_price, products["fold"].to_numpy(), "fit_knn_reference")
    if len(products) < 2:
        raise ValueError("fit_knn_reference: need at least 2 rows")
    text = {name: np.array(vec, dtype=np.float32, order="C") for name, modality, vec, _ in embeddings if modality == "text"}
    if not text:
        raise ValueError("fit_knn_reference: no text embedding given")
    texts = _view_texts(products)
    params = {"tfidf": _TFIDF_VIEW, **_TITLE_VECTORIZERS}
    fitted = {name: _fit_vectorizer(params[name], texts[name]) for name in params}
    vectorizers = {name: v for name, (v, _) in fitted.items()}
    sparse = {name: rows for name, (_, rows) in fitted.items()}
    log_qty, family = _log_qty_family(products, brand_features)
    image, image_names = {}, []
    for name, modality, vec, has in embeddings:
        if modality != "image":
            continue
        image_names.append(name)
        h = np.asarray(has, dtype=bool)
        if h.sum() >= 2 * n_folds:
            image[name] = (np.ascontiguousarray(vec[h], dtype=np.float32), log_price[h])
    return KnnReference(
        sample_ids=products["sample_id"].astype(str).to_numpy(), log_price=log_price, log_qty=log_qty, family=family,
        text=text, vectorizers=vectorizers, sparse=sparse, image=image, image_names=tuple(image_names), k=k, unit_k=unit_k,
    )


def _image_columns(name: str) -> list[str]:
    return [f"knn_image_{name}_{s}" for s in KNN_STATS]


def knn_features_for_new_rows(
    ref: KnnReference,
    items: pd.DataFrame,
    brand_features: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
) -> pd.DataFrame:
    """kNN neighbour-price features of products without a price, searched in ``ref`` (every labeled
    product): the serving path of ``knn_features``, with the columns of :func:`build_knn_features`
    (where a training row searches the other folds' products, a new product searches all of them).

    Args:
        ref: the fitted :class:`KnnReference`.
        items: n new products with ``sample_id``, ``item_name`` and the columns ``product_text`` reads.
        brand_features: rows with ``sample_id``, ``ipq_unit_family``, ``qty_canonical`` (aligned by id).
        embeddings: ``(name, modality, vectors, has)`` aligned to ``items``, the same models as ``ref``.

    Returns:
        DataFrame (n rows, items' order): ``sample_id`` then float32 ``knn_*`` and ``uknn_*`` columns.

    Raises:
        ValueError: when a text model of ``ref`` has no embedding here.
    """
    items = items.reset_index(drop=True)
    n = len(items)
    given = {name: (modality, vec, has) for name, modality, vec, has in embeddings}
    missing = [name for name in ref.text if name not in given]
    if missing:
        raise ValueError(f"knn_features_for_new_rows: no embedding of text models {missing}")
    lp_ref = np.log(np.clip(np.expm1(ref.log_price), 1e-6, None))
    log_qty, family = _log_qty_family(items, brand_features)
    texts = _view_texts(items)
    parts, unit_parts = [items[["sample_id"]]], []

    def stats(ref_vectors, query, prefix, unit_prefix=None):
        """Price statistics (first ``ref.k``) and, with ``unit_prefix``, the unit-price transfer
        (first ``ref.unit_k``) from one search, as :func:`knn_price_and_unit_features` does."""
        price = np.zeros((0, len(KNN_STATS)), dtype=np.float32)
        unit = np.zeros((0, len(UNIT_STATS)), dtype=np.float32)
        if query.shape[0]:
            sims, ids = _search(ref_vectors, query, max(ref.k, ref.unit_k) if unit_prefix else ref.k)
            price = neighbour_stats(sims[:, : ref.k], ref.log_price[ids[:, : ref.k]])
            if unit_prefix:
                u = ids[:, : ref.unit_k]
                unit = unit_price_stats(sims[:, : ref.unit_k], lp_ref[u], ref.log_qty[u], ref.family[u], log_qty, family)
        parts.append(pd.DataFrame(price, columns=[f"{prefix}_{s}" for s in KNN_STATS]))
        if unit_prefix:
            unit_parts.append(pd.DataFrame(unit, columns=[f"{unit_prefix}_unit_{s}" for s in UNIT_STATS]))

    for name, ref_vec in ref.text.items():
        stats(ref_vec, np.ascontiguousarray(given[name][1], dtype=np.float32), f"knn_{name}", f"uknn_{name}")
    for view in ("tfidf", "title_char", "title_word"):
        q = _transform(ref.vectorizers[view], texts[view])
        stats(ref.sparse[view], q, f"knn_{view}", "uknn_tfidf" if view == "tfidf" else None)
    for name in ref.image_names:
        feats = pd.DataFrame(np.nan, index=range(n), columns=_image_columns(name), dtype=np.float32)
        if name in ref.image and name in given:
            has = np.asarray(given[name][2], dtype=bool)
            if has.any():
                vec, lp = ref.image[name]
                feats.loc[has, :] = _query(vec, lp, np.ascontiguousarray(given[name][1][has], dtype=np.float32), ref.k)
        parts.append(feats)
    return pd.concat(parts + unit_parts, axis=1)


def build_knn_features(
    products: pd.DataFrame,
    brand_features: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
    k: int = 10,
    unit_k: int = 20,
    n_folds: int = 5,
    reference: "KnnReference | None" = None,
) -> pd.DataFrame:
    """Every kNN neighbour-price feature of ``knn_features``, out-of-fold, for every (labeled) product.

    Views searched (each with :func:`knn_price_features`; text views also with the unit-price
    transfer of :func:`knn_unit_price_features`): every text embedding, a word 1-2-gram TF-IDF of
    the full product text, and the two title views of :func:`title_tfidf_views` (the TF-IDF rows of
    the reference, :func:`fit_knn_reference`: vectorizers fitted on these products' texts); image
    embeddings over the rows that have a photo. Products without a price get their features from
    :func:`knn_features_for_new_rows`.

    The unit-price transfer lowers LightGBM's OOF SMAPE in every fold (docs/experiments.md, "Unit-price
    transfer kNN features"); so do the full-text TF-IDF neighbours, which find variants / same-line
    products the sentence embedding blurs (docs/experiments.md, "Full-text TF-IDF kNN features").

    Args:
        products: n labeled rows with ``sample_id``, ``price`` (USD, finite), ``fold`` (``0..K-1``),
            ``item_name`` and the columns :func:`~pricing_assets.lib.models.tfidf_ridge.product_text` reads.
        brand_features: rows with ``sample_id``, ``ipq_unit_family``, ``qty_canonical`` (any order;
            aligned by ``sample_id``).
        embeddings: ``(name, modality, vectors, has)`` per embedding model, aligned to ``products``:
            modality ``"text"`` or ``"image"``, vectors (n, d) float32 L2-normalised, has (n,) bool
            (rows with a vector). At least one text model.
        k: neighbours per query; unit_k: neighbours for the unit-price transfer.
        n_folds: image features are computed only when at least ``2 * n_folds`` labeled rows have a
            photo (NaN otherwise).
        reference: the :class:`KnnReference` of these same products when already fitted (else fitted
            here); its TF-IDF rows are the products' TF-IDF rows (not tokenised twice).

    Returns:
        DataFrame (n rows, products' order): ``sample_id`` then float32 ``knn_*`` and ``uknn_*`` columns.

    Raises:
        ValueError: without a text embedding, on length mismatch, a row without a finite price or
            with a fold < 0, fewer than 2 rows, or a ``reference`` fitted on other products.
    """
    products = products.reset_index(drop=True)
    log_price = np.log1p(products["price"].to_numpy(dtype=float))
    folds = products["fold"].to_numpy()
    require_labeled(log_price, folds, "build_knn_features")
    ref = reference if reference is not None else fit_knn_reference(products, brand_features, embeddings, k=k, unit_k=unit_k, n_folds=n_folds)
    if not np.array_equal(ref.sample_ids, products["sample_id"].astype(str).to_numpy()):
        raise ValueError("build_knn_features: the reference was fitted on other products than these (fit_knn_reference on the same products)")
    text = [(name, vec) for name, modality, vec, _ in embeddings if modality == "text"]
    log_qty, family = _log_qty_family(products, brand_features)
    parts, unit_parts = [products[["sample_id"]]], []
    for name, vec in text:
        price, unit = knn_price_and_unit_features(vec, log_price, log_qty, family, folds, k=k, unit_k=unit_k, prefix=f"knn_{name}", unit_prefix=f"uknn_{name}")
        parts.append(price)
        unit_parts.append(unit)
    for view in ("tfidf", "title_char", "title_word"):
        mat = ref.sparse[view]
        if view == "tfidf":
            price, unit = knn_price_and_unit_features(mat, log_price, log_qty, family, folds, k=k, unit_k=unit_k, prefix=f"knn_{view}", unit_prefix="uknn_tfidf")
            unit_parts.append(unit)
        else:
            price = knn_price_features(mat, log_price, folds, k=k, prefix=f"knn_{view}")
        parts.append(price)
    for name, modality, vec, has in embeddings:
        if modality != "image":
            continue
        feats = pd.DataFrame(np.nan, index=range(len(products)), columns=_image_columns(name), dtype=np.float32)
        if name in ref.image:
            sub = knn_price_features(vec[has], log_price[has], folds[has], k=k, prefix=f"knn_image_{name}")
            feats.loc[has, :] = sub.to_numpy()
        parts.append(feats)
    return pd.concat(parts + unit_parts, axis=1)
