"""kNN neighbour-price features of products, searched among the known (labeled) products.

Two paths, so that a row never sees its own price: the training rows (``products``, every one
labeled, with a fold) query the rows of the *other* CV folds only (out-of-fold,
:func:`build_knn_features`); a product without a price queries every labeled product
(:func:`knn_features_for_new_rows`, the serving path).

The search (exact up to :data:`~pricing_assets.lib.retrieval.search.APPROXIMATE_ABOVE` references per
index, approximate above, the same rule for the training folds and the serving reference) and the
neighbour statistics: :mod:`pricing_assets.lib.retrieval.search`; the labeled
products' reference (TF-IDF views, :class:`~pricing_assets.lib.retrieval.reference.KnnReference`):
:mod:`pricing_assets.lib.retrieval.reference`.
"""

import numpy as np
import pandas as pd

from pricing_assets.lib.models.cross_validation import require_labeled
from pricing_assets.lib.retrieval.reference import (
    KnnReference,
    fit_knn_reference,
    log_qty_family,
    transform_view,
    view_texts,
)
from pricing_assets.lib.retrieval.search import (
    APPROXIMATE_ABOVE,
    KNN_STATS,
    UNIT_STATS,
    neighbour_stats,
    search_top_k,
    unit_price_stats,
)

#: The unit-price statistics that are prices (the neighbours' unit price times the row's own
#: quantity), so they grow with the row's IPQ; ``n`` is a count and does not.
UNIT_PRICE_STATS = ("wmean", "median")


def is_ipq_increasing_column(column: str) -> bool:
    """True for a ``knn_features`` column that grows with the row's own pack quantity (a
    ``*_unit_wmean`` / ``*_unit_median`` column of :func:`knn_unit_price_features`)."""
    return column.startswith("uknn") and column.endswith(tuple(f"_unit_{s}" for s in UNIT_PRICE_STATS))


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


def _query(index_vectors, index_log_prices, query_vectors, k, approximate_above=APPROXIMATE_ABOVE):
    sims, ids = search_top_k(index_vectors, query_vectors, k, approximate_above=approximate_above)
    return neighbour_stats(sims, index_log_prices[ids])


def knn_price_features(
    vectors: np.ndarray,
    log_price: np.ndarray,
    folds: np.ndarray,
    k: int = 10,
    prefix: str = "knn",
    approximate_above: int | None = APPROXIMATE_ABOVE,
) -> pd.DataFrame:
    """Out-of-fold kNN neighbour-price features of n labeled rows: a row in fold f gets features from
    an index over the rows of the other folds (never itself, never its fold).

    Args:
        vectors: (n, d) float32 L2-normalised embeddings (one per row), dense (searched with a FAISS
            inner-product index per fold, :func:`~pricing_assets.lib.retrieval.search.build_index`:
            exact up to ``approximate_above`` references, approximate above) or a SciPy sparse matrix
            such as TF-IDF rows (exact sparse dot products).
        log_price: (n,) float64 ``log1p(price USD)``, finite.
        folds: (n,) int fold id in ``0..K-1``.
        k: neighbours per query.
        prefix: column prefix.
        approximate_above: references of a fold's index above which it is approximate
            (:data:`~pricing_assets.lib.retrieval.search.APPROXIMATE_ABOVE`, the serving path's default too).

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
        out[q] = _query(vectors[ref], log_price[ref], vectors[q], k, approximate_above)
    return pd.DataFrame(out, columns=[f"{prefix}_{s}" for s in KNN_STATS])


def knn_unit_price_features(
    vectors,
    log_price: np.ndarray,
    log_qty: np.ndarray,
    family: np.ndarray,
    folds: np.ndarray,
    k: int = 20,
    prefix: str = "uknn",
    approximate_above: int | None = APPROXIMATE_ABOVE,
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
        approximate_above: as :func:`knn_price_features`.

    Returns:
        DataFrame (n rows, same order), float32 columns ``{prefix}_unit_{stat}`` for ``UNIT_STATS``.

    Raises:
        ValueError: on length mismatch, a row without a finite price or with a fold < 0, or fewer
            than 2 rows.
    """
    return knn_price_and_unit_features(
        vectors,
        log_price,
        log_qty,
        family,
        folds,
        k=k,
        unit_k=k,
        unit_prefix=prefix,
        approximate_above=approximate_above,
    )[1]


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
    approximate_above: int | None = APPROXIMATE_ABOVE,
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
        approximate_above: as :func:`knn_price_features`.

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
        raise ValueError(
            f"knn_price_and_unit_features: length mismatch {n}, {len(log_price)}, {len(log_qty)}, {len(family)}, {len(folds)}"
        )
    require_labeled(log_price, folds, "knn_price_and_unit_features")
    if n < 2:
        raise ValueError("knn_price_and_unit_features: need at least 2 rows")
    lp = np.log(np.clip(np.expm1(log_price), 1e-6, None))
    price = np.full((n, len(KNN_STATS)), np.nan, dtype=np.float32)
    unit = np.full((n, len(UNIT_STATS)), np.nan, dtype=np.float32)
    for q, ref in oof_query_plan(folds):
        sims, ids = search_top_k(vectors[ref], vectors[q], max(k, unit_k), approximate_above=approximate_above)
        g = np.flatnonzero(ref)[ids]
        price[q] = neighbour_stats(sims[:, :k], log_price[g[:, :k]])
        unit[q] = unit_price_stats(
            sims[:, :unit_k], lp[g[:, :unit_k]], log_qty[g[:, :unit_k]], family[g[:, :unit_k]], log_qty[q], family[q]
        )
    return (
        pd.DataFrame(price, columns=[f"{prefix}_{s}" for s in KNN_STATS]),
        pd.DataFrame(unit, columns=[f"{unit_prefix}_unit_{s}" for s in UNIT_STATS]),
    )


def _image_columns(name: str) -> list[str]:
    return [f"knn_image_{name}_{s}" for s in KNN_STATS]


def knn_features_for_new_rows(
    ref: KnnReference,
    items: pd.DataFrame,
    listing_features: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
    indexes: dict | None = None,
    approximate_above: int | None = APPROXIMATE_ABOVE,
) -> pd.DataFrame:
    """kNN neighbour-price features of products without a price, searched in ``ref`` (every labeled
    product): the serving path of ``knn_features``, with the columns of :func:`build_knn_features`
    (where a training row searches the other folds' products, a new product searches all of them).

    Args:
        ref: the fitted :class:`KnnReference`.
        items: n new products with ``sample_id``, ``item_name`` and the columns ``product_text`` reads.
        listing_features: rows with ``sample_id``, ``ipq_unit_family``, ``qty_canonical`` (aligned by id).
        embeddings: ``(name, modality, vectors, has)`` aligned to ``items``, the same models as ``ref``.
        indexes: text model name -> a stored FAISS index over ``ref.text[name]`` (same rows, same order;
            the ``product_index`` asset, exact or approximate as built), searched instead of an index
            built from the vectors.
        approximate_above: references above which an index built here (a text model without a
            stored index, the image views) is approximate
            (:func:`~pricing_assets.lib.retrieval.search.build_index`).

    Returns:
        DataFrame (n rows, items' order): ``sample_id`` then float32 ``knn_*`` and ``uknn_*`` columns.

    Raises:
        ValueError: when a text model of ``ref`` has no embedding here, or a stored index does not
            hold ``ref``'s products.
    """
    items = items.reset_index(drop=True)
    n = len(items)
    given = {name: (modality, vec, has) for name, modality, vec, has in embeddings}
    missing = [name for name in ref.text if name not in given]
    if missing:
        raise ValueError(f"knn_features_for_new_rows: no embedding of text models {missing}")
    lp_ref = np.log(np.clip(np.expm1(ref.log_price), 1e-6, None))
    log_qty, family = log_qty_family(items, listing_features)
    texts = view_texts(items)
    parts, unit_parts = [items[["sample_id"]]], []

    def stats(ref_vectors, query, prefix, unit_prefix=None):
        """Price statistics (first ``ref.k``) and, with ``unit_prefix``, the unit-price transfer
        (first ``ref.unit_k``) from one search, as :func:`knn_price_and_unit_features` does."""
        price = np.zeros((0, len(KNN_STATS)), dtype=np.float32)
        unit = np.zeros((0, len(UNIT_STATS)), dtype=np.float32)
        if query.shape[0]:
            sims, ids = search_top_k(
                ref_vectors,
                query,
                max(ref.k, ref.unit_k) if unit_prefix else ref.k,
                approximate_above=approximate_above,
            )
            price = neighbour_stats(sims[:, : ref.k], ref.log_price[ids[:, : ref.k]])
            if unit_prefix:
                u = ids[:, : ref.unit_k]
                unit = unit_price_stats(
                    sims[:, : ref.unit_k], lp_ref[u], ref.log_qty[u], ref.family[u], log_qty, family
                )
        parts.append(pd.DataFrame(price, columns=[f"{prefix}_{s}" for s in KNN_STATS]))
        if unit_prefix:
            unit_parts.append(pd.DataFrame(unit, columns=[f"{unit_prefix}_unit_{s}" for s in UNIT_STATS]))

    indexes = indexes or {}
    for name, index in indexes.items():
        if name not in ref.text or index.ntotal != ref.n or index.d != ref.text[name].shape[1]:
            raise ValueError(
                f"knn_features_for_new_rows: the stored index of {name!r} holds {index.ntotal} x {index.d} vectors, "
                f"the reference {ref.n} labeled products"
            )
    for name, ref_vec in ref.text.items():
        stats(
            indexes.get(name, ref_vec),
            np.ascontiguousarray(given[name][1], dtype=np.float32),
            f"knn_{name}",
            f"uknn_{name}",
        )
    for view in ("tfidf", "title_char", "title_word"):
        q = transform_view(ref.vectorizers[view], texts[view])
        stats(ref.sparse[view], q, f"knn_{view}", "uknn_tfidf" if view == "tfidf" else None)
    for name in ref.image_names:
        feats = pd.DataFrame(np.nan, index=range(n), columns=_image_columns(name), dtype=np.float32)
        if name in ref.image and name in given:
            has = np.asarray(given[name][2], dtype=bool)
            if has.any():
                vec, lp = ref.image[name]
                feats.loc[has, :] = _query(
                    vec, lp, np.ascontiguousarray(given[name][1][has], dtype=np.float32), ref.k, approximate_above
                )
        parts.append(feats)
    return pd.concat(parts + unit_parts, axis=1)


def build_knn_features(
    products: pd.DataFrame,
    listing_features: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
    k: int = 10,
    unit_k: int = 20,
    n_folds: int = 5,
    reference: "KnnReference | None" = None,
    approximate_above: int | None = APPROXIMATE_ABOVE,
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
        listing_features: rows with ``sample_id``, ``ipq_unit_family``, ``qty_canonical`` (any order;
            aligned by ``sample_id``).
        embeddings: ``(name, modality, vectors, has)`` per embedding model, aligned to ``products``:
            modality ``"text"`` or ``"image"``, vectors (n, d) float32 L2-normalised, has (n,) bool
            (rows with a vector). At least one text model.
        k: neighbours per query; unit_k: neighbours for the unit-price transfer.
        n_folds: image features are computed only when at least ``2 * n_folds`` labeled rows have a
            photo (NaN otherwise).
        reference: the :class:`KnnReference` of these same products when already fitted (else fitted
            here); its TF-IDF rows are the products' TF-IDF rows (not tokenised twice).
        approximate_above: references of a fold's dense index above which it is approximate
            (:func:`~pricing_assets.lib.retrieval.search.build_index`); also the size above which a
            reference fitted here caps its TF-IDF terms at an absolute document count
            (:func:`~pricing_assets.lib.retrieval.reference.max_df_docs`).

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
    ref = (
        reference
        if reference is not None
        else fit_knn_reference(
            products,
            listing_features,
            embeddings,
            k=k,
            unit_k=unit_k,
            n_folds=n_folds,
            approximate_above=approximate_above,
        )
    )
    if not np.array_equal(ref.sample_ids, products["sample_id"].astype(str).to_numpy()):
        raise ValueError(
            "build_knn_features: the reference was fitted on other products than these (fit_knn_reference on the same products)"
        )
    text = [(name, vec) for name, modality, vec, _ in embeddings if modality == "text"]
    log_qty, family = log_qty_family(products, listing_features)
    parts, unit_parts = [products[["sample_id"]]], []

    def price_and_unit(vectors, prefix: str, unit_prefix: str):
        return knn_price_and_unit_features(
            vectors,
            log_price,
            log_qty,
            family,
            folds,
            k=k,
            unit_k=unit_k,
            prefix=prefix,
            unit_prefix=unit_prefix,
            approximate_above=approximate_above,
        )

    for name, vec in text:
        price, unit = price_and_unit(vec, f"knn_{name}", f"uknn_{name}")
        parts.append(price)
        unit_parts.append(unit)
    for view in ("tfidf", "title_char", "title_word"):
        mat = ref.sparse[view]
        if view == "tfidf":
            price, unit = price_and_unit(mat, f"knn_{view}", "uknn_tfidf")
            unit_parts.append(unit)
        else:
            price = knn_price_features(
                mat, log_price, folds, k=k, prefix=f"knn_{view}", approximate_above=approximate_above
            )
        parts.append(price)
    for name, modality, vec, has in embeddings:
        if modality != "image":
            continue
        feats = pd.DataFrame(np.nan, index=range(len(products)), columns=_image_columns(name), dtype=np.float32)
        if name in ref.image:
            sub = knn_price_features(
                vec[has],
                log_price[has],
                folds[has],
                k=k,
                prefix=f"knn_image_{name}",
                approximate_above=approximate_above,
            )
            feats.loc[has, :] = sub.to_numpy()
        parts.append(feats)
    return pd.concat(parts + unit_parts, axis=1)
