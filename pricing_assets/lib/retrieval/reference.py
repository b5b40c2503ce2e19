"""The kNN reference of the labeled products (:class:`KnnReference`, :func:`fit_knn_reference`): their
vectors in every view, prices and quantities, and the TF-IDF views / vectorizers fitted on their texts
(:func:`title_tfidf_views`, :data:`KNN_TFIDF_MAX_DF`) that new products are transformed with.

Pure, Dagster-free. scipy and scikit-learn are imported inside functions.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pricing_assets.lib.models.cross_validation import require_labeled
from pricing_assets.lib.retrieval.search import APPROXIMATE_ABOVE


def log_total_quantity(qty_canonical: np.ndarray, family: np.ndarray) -> np.ndarray:
    """``log`` of a total quantity in canonical units, NaN where unknown.

    Args:
        qty_canonical: (n,) float total quantity (g, ml or count; ``listing_features.qty_canonical``).
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
    :func:`~pricing_assets.lib.retrieval.knn.build_knn_features` (labeled rows, out-of-fold) and :func:`~pricing_assets.lib.retrieval.knn.knn_features_for_new_rows`
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
#: Above :data:`~pricing_assets.lib.retrieval.search.APPROXIMATE_ABOVE` labeled products (the threshold
#: of the approximate dense index: one threshold, past which neither kind of kNN search grows per query
#: with the catalog), terms found in more than this many products are left out too: 10,000, the 20 %
#: share at the threshold (``KNN_TFIDF_MAX_DF * APPROXIMATE_ABOVE``), so the cap is continuous there.
#: The exact sparse search
#: touches, per query, every reference sharing one of its terms (the sum of its terms' document
#: frequencies): with the 20 % share alone that grows with the catalog, with an absolute count it is at
#: most (query terms) x this count. Measured (``benchmarks/bench_ann_recall.py``, docs/experiments.md,
#: "Scale: approximate dense kNN search and a bounded TF-IDF search"), 150k references, against the
#: 20 % share alone: the references a query touches 2.3x (``tfidf``), 3.3x (``title_char``), 1.9x
#: (``title_word``) fewer, recall@10 0.929 / 0.862 / 0.959; a cap of 5,000 touched ~2x fewer again but
#: kept 0.879 / 0.740 / 0.921.
KNN_TFIDF_MAX_DF_DOCS = int(KNN_TFIDF_MAX_DF * APPROXIMATE_ABOVE)
_TITLE_VECTORIZERS = {
    "title_char": {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 2, "sublinear_tf": True},
    "title_word": {"ngram_range": (1, 2), "min_df": 1, "sublinear_tf": True},
}
_TFIDF_VIEW = {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True}


def max_df_docs(
    n: int,
    max_df_share: float = KNN_TFIDF_MAX_DF,
    capped_above: int | None = APPROXIMATE_ABOVE,
    cap_docs: int = KNN_TFIDF_MAX_DF_DOCS,
) -> int:
    """The document-frequency cap of a kNN TF-IDF view fitted on n texts, as a document count
    (scikit-learn's integer ``max_df``): ``max(max_df_share * n, KNN_TFIDF_MAX_DF_MIN_DOCS)``, and at
    most ``cap_docs`` when n > ``capped_above`` (``None``: never).

    Args:
        n: texts the vectorizer is fitted on (the labeled products).
        max_df_share: share cap (:data:`KNN_TFIDF_MAX_DF`; 1 keeps every term below ``capped_above``).
        capped_above: products above which the absolute cap applies (default
            :data:`~pricing_assets.lib.retrieval.search.APPROXIMATE_ABOVE`).
        cap_docs: the absolute cap (:data:`KNN_TFIDF_MAX_DF_DOCS`).

    Returns:
        int, documents.
    """
    docs = max(int(max_df_share * n), KNN_TFIDF_MAX_DF_MIN_DOCS)
    if capped_above is not None and n > capped_above:
        docs = min(docs, cap_docs)
    return docs


def _fit_vectorizer(
    params: dict,
    texts: pd.Series,
    max_df_share: float = KNN_TFIDF_MAX_DF,
    capped_above: int | None = APPROXIMATE_ABOVE,
    cap_docs: int = KNN_TFIDF_MAX_DF_DOCS,
):
    """(fitted ``TfidfVectorizer`` or None when no term survives ``min_df`` / the document-frequency
    cap, (n, v) csr rows of ``texts``) in one tokenising pass (``fit_transform``: the same rows
    ``transform`` gives). Terms in more than :func:`max_df_docs` ``(n, max_df_share, capped_above,
    cap_docs)`` of the n texts are dropped (``max_df`` as a document count): the 20 % share, and past
    ``capped_above`` texts at most ``cap_docs`` (:data:`KNN_TFIDF_MAX_DF_DOCS`)."""
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(**params, max_df=max_df_docs(len(texts), max_df_share, capped_above, cap_docs))
    try:
        return vectorizer, vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # no term survives min_df / max_df (tiny or empty texts): no neighbour signal
        return None, sp.csr_matrix((len(texts), 1), dtype=np.float64)


def transform_view(vectorizer, texts: pd.Series):
    """(n, v) csr TF-IDF rows of ``texts`` by a fitted vectorizer of :func:`fit_knn_reference`; an (n, 1) zero
    matrix when the vectorizer is None (no term survived)."""
    import scipy.sparse as sp

    if vectorizer is None:
        return sp.csr_matrix((len(texts), 1), dtype=np.float64)
    return vectorizer.transform(texts).tocsr()


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


def view_texts(items: pd.DataFrame) -> dict[str, pd.Series]:
    """The text of each TF-IDF view of ``items``: ``tfidf`` (full product text), ``title_char`` / ``title_word`` (item name)."""
    from pricing_assets.lib.models.tfidf_ridge import product_text

    names = items["item_name"].fillna("").astype(str).reset_index(drop=True)
    return {"tfidf": product_text(items), "title_char": names, "title_word": names}


def log_qty_family(items: pd.DataFrame, listing_features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(``log`` total quantity, unit family) of each row of ``items``, read from ``listing_features`` by ``sample_id``."""
    bf = listing_features.set_index("sample_id").reindex(items["sample_id"].astype(str)).reset_index(drop=True)
    family = bf["ipq_unit_family"].fillna("unknown").astype(str).to_numpy()
    return log_total_quantity(bf["qty_canonical"].to_numpy(dtype=float), family), family


def fit_knn_reference(
    products: pd.DataFrame,
    listing_features: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
    k: int = 10,
    unit_k: int = 20,
    n_folds: int = 5,
    approximate_above: int | None = APPROXIMATE_ABOVE,
) -> KnnReference:
    """The :class:`KnnReference` of the m labeled rows of ``products`` (every row: a price and a fold).

    The TF-IDF vectorizers are fitted on these products' texts only: a product being priced never
    shapes the vocabulary it is searched with (no transductive step).

    Args:
        products, listing_features, embeddings, k, unit_k, n_folds: as :func:`~pricing_assets.lib.retrieval.knn.build_knn_features`.
        approximate_above: labeled products above which the TF-IDF views' terms are capped at
            :data:`KNN_TFIDF_MAX_DF_DOCS` documents as well as the 20 % share (:func:`max_df_docs`);
            default :data:`~pricing_assets.lib.retrieval.search.APPROXIMATE_ABOVE`.

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
    text = {
        name: np.array(vec, dtype=np.float32, order="C") for name, modality, vec, _ in embeddings if modality == "text"
    }
    if not text:
        raise ValueError("fit_knn_reference: no text embedding given")
    texts = view_texts(products)
    params = {"tfidf": _TFIDF_VIEW, **_TITLE_VECTORIZERS}
    fitted = {name: _fit_vectorizer(params[name], texts[name], capped_above=approximate_above) for name in params}
    vectorizers = {name: v for name, (v, _) in fitted.items()}
    sparse = {name: rows for name, (_, rows) in fitted.items()}
    log_qty, family = log_qty_family(products, listing_features)
    image, image_names = {}, []
    for name, modality, vec, has in embeddings:
        if modality != "image":
            continue
        image_names.append(name)
        h = np.asarray(has, dtype=bool)
        if h.sum() >= 2 * n_folds:
            image[name] = (np.ascontiguousarray(vec[h], dtype=np.float32), log_price[h])
    return KnnReference(
        sample_ids=products["sample_id"].astype(str).to_numpy(),
        log_price=log_price,
        log_qty=log_qty,
        family=family,
        text=text,
        vectorizers=vectorizers,
        sparse=sparse,
        image=image,
        image_names=tuple(image_names),
        k=k,
        unit_k=unit_k,
    )
