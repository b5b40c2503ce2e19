"""Assembling the training table: batches combined (latest wins) and the model's feature matrix,
and the same features for new products from the fitted :class:`FeatureSpace`."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pricing_assets.lib.catalog.batches import latest_batch_wins
from pricing_assets.lib.models.cross_validation import DEFAULT_SEED

#: Rule for a sample_id seen in several batches: the row of the most recently ingested batch wins.
DEDUP_RULE = "latest batch wins (by ingestion order); earlier copies are replaced"


def complete_batches(
    frames: dict[str, pd.DataFrame], stored: dict[str, set[str]] | None = None
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Keep only the batches present in every per-batch input and stored for every other per-row
    asset the training side reads.

    Args:
        frames: input name -> merged frame with a ``batch`` column (every batch's rows of one per-row asset).
        stored: per-row asset name -> batches for which it is stored, for assets read later in
            training but not loaded here (the embeddings, read by ``product_embeddings``).

    Returns:
        (frames restricted to the common batches, sorted list of batches skipped as incomplete).
    """
    loaded = [set(f["batch"]) for f in frames.values()]
    required = loaded + [set(v) for v in (stored or {}).values()]
    common = set.intersection(*required) if required else set()
    skipped = sorted(set.union(*loaded) - common) if loaded else []
    return {n: f[f["batch"].isin(common)].reset_index(drop=True) for n, f in frames.items()}, skipped


def join_images_and_ocr(
    items: pd.DataFrame, images: pd.DataFrame, ocr: pd.DataFrame, on: list[str] | tuple[str, ...] = ("sample_id",)
) -> pd.DataFrame:
    """``items`` (``catalog_items`` rows) left-joined with their ``product_images`` status/metadata and
    their ``ocr_text`` (OCR columns that collide get the suffix ``_ocr``): the input row of a product
    for training (``products``) and for scoring (``batch_predictions``), one row per key, items' order.

    Raises:
        pandas.errors.MergeError: ``images`` or ``ocr`` hold a key twice.
    """
    out = items.merge(images, on=list(on), how="left", validate="one_to_one")
    return out.merge(ocr, on=list(on), how="left", validate="one_to_one", suffixes=("", "_ocr"))


@dataclass(frozen=True)
class TrainingSet:
    """What :func:`assemble_training_set` returns.

    Attributes:
        frame: the labeled products (``products`` contract columns incl. ``fold`` and ``is_labeled``),
            ``None`` when the complete batches hold no labeled row or no batch is complete.
        unlabeled_rows: rows without a price in the complete batches (priced by ``batch_predictions``).
        replaced: rows dropped because a later batch carried the same ``sample_id``.
        skipped_batches: batches left out because a per-row asset of theirs is missing.
    """

    frame: pd.DataFrame | None
    unlabeled_rows: int
    replaced: int
    skipped_batches: list[str]


def assemble_training_set(
    items: pd.DataFrame,
    images: pd.DataFrame,
    ocr: pd.DataFrame,
    batch_order: list[str],
    n_folds: int,
    seed: int,
    stored: dict[str, set[str]] | None = None,
) -> TrainingSet:
    """The training set of every complete batch: one row per labeled ``sample_id`` (latest batch
    wins, :data:`DEDUP_RULE`) joined with its photo status and OCR text, with a grouped CV ``fold``
    (``lib.models.cross_validation.assign_folds``: rows sharing an image link share a fold).

    Args:
        items, images, ocr: every batch's ``catalog_items`` / ``product_images`` / ``ocr_text`` rows,
            each with a ``batch`` column.
        batch_order: batch names, oldest first.
        n_folds, seed: the CV setting (``CrossValidationResource``).
        stored: asset name -> batches stored, for the per-row assets read later in training (the
            embeddings): a batch missing one of them is skipped like one missing ``ocr_text``.

    Raises:
        ValueError: fewer labeled rows than ``n_folds``.

    No complete batch at all (every batch still in flight, or failed) gives ``frame=None`` with the
    batches in ``skipped_batches``: nothing to train on yet, not an error.
    """
    from pricing_assets.lib.models.cross_validation import assign_folds

    merged, skipped = complete_batches({"catalog_items": items, "product_images": images, "ocr_text": ocr}, stored)
    if merged["catalog_items"].empty:
        return TrainingSet(None, 0, 0, skipped)
    rows, replaced = latest_batch_wins(merged["catalog_items"], batch_order)
    n_unlabeled = int(rows["price"].isna().sum())
    rows = rows[rows["price"].notna()].reset_index(drop=True)
    if len(rows) == 0:
        return TrainingSet(None, n_unlabeled, replaced, skipped)
    if len(rows) < n_folds:
        raise ValueError(
            f"products: {len(rows)} labeled rows in the complete batches, fewer than n_folds={n_folds}; ingest a labeled batch first"
        )
    out = join_images_and_ocr(rows, merged["product_images"], merged["ocr_text"], on=("sample_id", "batch"))
    out["is_labeled"] = True
    out["fold"] = assign_folds(out["sample_id"], out["image_link"], n_folds, seed)
    return TrainingSet(out, n_unlabeled, replaced, skipped)


def embedding_matrix(frame: pd.DataFrame, sample_ids: pd.Series, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Align an embedding DataFrame (sample_id, embedding) to ``sample_ids``.

    Returns:
        ((n, dim) float32 with zero rows where missing, (n,) bool mask of rows that have a vector).
    """
    pos = pd.Series(np.arange(len(frame)), index=frame["sample_id"].to_numpy())
    pos = pos[~pos.index.duplicated(keep="last")]
    idx = pos.reindex(sample_ids.to_numpy()).to_numpy()
    has = ~np.isnan(idx)
    out = np.zeros((len(sample_ids), dim), dtype=np.float32)
    if has.any():
        stacked = np.stack(frame["embedding"].to_numpy()).astype(np.float32)
        out[has] = stacked[idx[has].astype(int)]
    return out, has


@dataclass(frozen=True)
class ProductEmbeddings:
    """Every enabled embedding model's vectors, aligned to one list of products (the
    ``product_embeddings`` asset: what ``product_index``, ``feature_matrix``, ``fusion_mlp`` and
    ``embedding_signal_report`` read instead of each merging the per-batch embedding assets).

    Attributes:
        sample_ids: (n,) str, the products' order (``products.sample_id``).
        models: one ``(name, modality, vectors, has)`` per model, registry order: modality ``"text"`` /
            ``"image"``, vectors (n, d) float32 (L2-normalised rows, zeros where ``has`` is False), has
            (n,) bool (the product has a vector: every row for text, rows with a photo for images).
    """

    sample_ids: np.ndarray
    models: list

    def aligned_to(self, sample_ids: pd.Series | np.ndarray) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        """``models`` re-ordered / sub-set to ``sample_ids`` (m,): ``(name, modality, (m, d) float32, (m,) bool)``.

        Raises:
            ValueError: a sample_id is not among :attr:`sample_ids` (names the first five): the
                embeddings are older than the products asking for them.
        """
        want = np.asarray(sample_ids, dtype=object).astype(str)
        if len(want) == len(self.sample_ids) and np.array_equal(want, self.sample_ids):
            return list(self.models)
        pos = pd.Series(np.arange(len(self.sample_ids)), index=self.sample_ids).reindex(want)
        if pos.isna().any():
            raise ValueError(
                f"product_embeddings lacks sample_ids {pos[pos.isna()].index[:5].tolist()}: materialise product_embeddings again"
            )
        idx = pos.to_numpy(dtype=np.int64)
        return [(name, modality, vec[idx], has[idx]) for name, modality, vec, has in self.models]


def align_embeddings(frames: list[tuple[str, str, int, pd.DataFrame]], sample_ids: pd.Series) -> ProductEmbeddings:
    """Stack per-model embedding tables into a :class:`ProductEmbeddings` aligned to ``sample_ids``.

    Args:
        frames: ``(name, modality, dim, frame)`` per model; frame has ``sample_id`` and ``embedding``
            ((dim,) float32 vectors), every batch concatenated oldest first (a product embedded in two
            batches keeps its latest vector, as ``products`` keeps its latest row).
        sample_ids: (n,) the products' ids, unique.

    Returns:
        :class:`ProductEmbeddings` with n rows per model.

    Raises:
        ValueError: duplicate ``sample_ids`` (names the first five).
    """
    ids = pd.Series(np.asarray(sample_ids, dtype=object).astype(str))
    dups = ids[ids.duplicated()].unique().tolist()
    if dups:
        raise ValueError(f"align_embeddings: duplicate sample_ids {dups[:5]}")
    models = [(name, modality, *embedding_matrix(frame, ids, dim)) for name, modality, dim, frame in frames]
    return ProductEmbeddings(ids.to_numpy(dtype=object), models)


def fit_pca(vectors: np.ndarray, mask: np.ndarray, n_components: int, seed: int = DEFAULT_SEED):
    """PCA (scikit-learn) of the rows of ``vectors`` (n, d) where ``mask`` is set; None when
    ``n_components`` is 0 or too few rows (k = min(n_components, rows - 1, d) < 1)."""
    from sklearn.decomposition import PCA

    k = min(n_components, int(mask.sum()) - 1, vectors.shape[1])
    return PCA(n_components=k, random_state=seed).fit(vectors[mask]) if k >= 1 else None


def pca_frame(pca, vectors: np.ndarray, mask: np.ndarray, n_components: int, prefix: str) -> pd.DataFrame:
    """``{prefix}_pc{i}`` columns (n, n_components) float32: the fitted ``pca``'s components of the rows
    with a vector, NaN elsewhere (and in the columns beyond the fitted ``k``)."""
    cols = [f"{prefix}_pc{i}" for i in range(n_components)]
    out = np.full((len(vectors), n_components), np.nan, dtype=np.float32)
    if pca is not None and mask.any():
        out[mask, : pca.n_components_] = pca.transform(vectors[mask]).astype(np.float32)
    return pd.DataFrame(out, columns=cols)


def target_encodings(
    keys: dict[str, pd.Series], log_price: np.ndarray, folds: np.ndarray, smoothing: float = 10.0
) -> pd.DataFrame:
    """Out-of-fold target encodings of ``log1p(price)`` per categorical key, for n labeled rows: a row
    of fold f is encoded from the other folds' rows (never its own price). Smoothing after
    Micci-Barreca (2001). A product without a price is encoded with the maps of :class:`FeatureSpace`
    (:func:`feature_rows_for_new_items`).

    Args:
        keys: key name -> (n,) keys (compared as str).
        log_price: (n,) float64 ``log1p(price USD)``, finite.
        folds: (n,) int fold ids >= 0 (>= 2 distinct).
        smoothing: pseudo-count m >= 0.

    Returns:
        DataFrame (n rows, input order), float32 ``te_<name>`` columns.

    Raises:
        ValueError: a row without a finite price or with a fold < 0, or fewer than 2 folds.
    """
    from pricing_assets.lib.features.target_encoding import oof_target_encode
    from pricing_assets.lib.models.cross_validation import require_labeled

    require_labeled(log_price, folds, "target_encodings")
    out = {}
    for name, k in keys.items():
        k = k.astype(str).reset_index(drop=True)
        out[f"te_{name}"] = oof_target_encode(k, log_price, folds, smoothing=smoothing).astype(np.float32)
    return pd.DataFrame(out)


@dataclass
class FeatureSpace:
    """What ``feature_matrix`` fitted on the labeled rows and a new product's features need: the
    target-encoding maps, the embedding PCAs, the title ridge's fold models and the column order.

    Attributes:
        target_encoding: key name (``brand``, ``category``) -> (mapping key -> encoded log1p price, prior).
        pca: embedding model name -> (fitted PCA or None, n_components).
        title_ridge: fold pipelines of the title TF-IDF ridge (:func:`~pricing_assets.lib.models.tfidf_ridge.predict_tfidf_ridge`).
        columns: the ``feature_matrix`` columns in order (``sample_id``, ``fold``, ``price`` first).
    """

    target_encoding: dict
    pca: dict
    title_ridge: list
    columns: list


def _image_facts(items: pd.DataFrame) -> pd.DataFrame:
    img = items[["width", "height", "n_bytes"]].astype(float).reset_index(drop=True)
    img["has_image"] = (items["status"] == "ok").astype(np.float32).to_numpy()
    img["ocr_lines"] = items["n_lines"].fillna(0).astype(np.float32).to_numpy()
    return img.astype(np.float32)


def _assemble(base, bf, te, kn, stack, img, pcs) -> tuple[pd.DataFrame, dict]:
    numeric = bf.drop(columns=["brand", "category"]).select_dtypes("number").astype(np.float32)
    fm = pd.concat([base.reset_index(drop=True), numeric, te, kn, stack, img, *pcs], axis=1)
    fm["category"] = bf["category"].astype(str).to_numpy()
    groups = {
        "engineered": numeric.shape[1],
        "target_encoding": te.shape[1],
        "knn": kn.shape[1],
        "stacked": stack.shape[1],
        "image": img.shape[1],
        "embedding_pca": int(sum(p.shape[1] for p in pcs)),
    }
    return fm, groups


def build_feature_matrix(*args, **kwargs) -> tuple[pd.DataFrame, dict]:
    """:func:`build_feature_matrix_and_space` without the :class:`FeatureSpace`: ``(fm, groups)``."""
    fm, groups, _ = build_feature_matrix_and_space(*args, **kwargs)
    return fm, groups


def build_feature_matrix_and_space(
    products: pd.DataFrame,
    listing_features: pd.DataFrame,
    knn_features: pd.DataFrame,
    ridge_predictions: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
    text_pca_components: int = 0,
    image_pca_components: int = 0,
    seed: int = DEFAULT_SEED,
) -> tuple[pd.DataFrame, dict, FeatureSpace]:
    """The model input ``feature_matrix``: engineered features, OOF target encodings, kNN features,
    two stacked OOF TF-IDF ridges, image/OCR facts and (optionally) embedding PCA, one row per
    (labeled) product.

    The title-only ridge (:func:`~pricing_assets.lib.models.tfidf_ridge.train_tfidf_ridge_cv` on ``item_name``:
    on the title alone, which the full text dilutes with bullets many products share) is computed
    here; the full-text one comes in as ``ridge_predictions``. Both are out-of-fold, like the kNN
    features and target encodings, so no row's features saw its own price.

    Args:
        products: n labeled rows with ``sample_id``, ``fold`` (``0..K-1``), ``price`` (USD, finite),
            ``item_name``, ``width``, ``height``, ``n_bytes``, ``status``, ``n_lines``.
        listing_features: rows with ``sample_id``, ``brand``, ``category`` and numeric features (aligned
            by ``sample_id``).
        knn_features: rows with ``sample_id`` and float kNN columns (aligned by ``sample_id``).
        ridge_predictions: the ``tfidf_ridge_predictions`` frame: ``sample_id`` and ``pred_price``
            (USD, > 0) of the full-text TF-IDF ridge, out-of-fold (aligned by ``sample_id``).
        embeddings: ``(name, modality, vectors, has)`` aligned to products (see
            :func:`pricing_assets.lib.retrieval.knn.build_knn_features`); each gives ``{name}_pc{i}`` columns.
        text_pca_components, image_pca_components: PCA components per text / image model (0: none;
            the pipeline's default, see ``FeatureMatrixConfig``).
        seed: PCA seed.

    Returns:
        ``(fm, groups, space)``: fm has ``sample_id``, ``fold``, ``price`` then float32 features and a
        str ``category`` column; groups maps feature group name to its column count; space the
        :class:`FeatureSpace` fitted on the labeled rows (:func:`feature_rows_for_new_items` uses it).

    Raises:
        ValueError: a row without a finite price or with a fold < 0, fewer than 2 folds, or
            ``ridge_predictions`` lacking a product's sample_id (names the first five).
    """
    from pricing_assets.lib.features.target_encoding import fit_target_encoding
    from pricing_assets.lib.models.cross_validation import require_labeled
    from pricing_assets.lib.models.tfidf_ridge import train_tfidf_ridge_cv

    items = products.reset_index(drop=True)
    base = items[["sample_id", "fold", "price"]]
    ridge = ridge_predictions.set_index("sample_id")["pred_price"].reindex(base["sample_id"])
    if ridge.isna().any():
        raise ValueError(
            f"build_feature_matrix: ridge_predictions lacks sample_ids {ridge[ridge.isna()].index[:5].tolist()}"
        )
    bf = listing_features.set_index("sample_id").reindex(base["sample_id"]).reset_index(drop=True)
    kn = knn_features.set_index("sample_id").reindex(base["sample_id"]).reset_index(drop=True)
    log_price = np.log1p(base["price"].to_numpy(dtype=float))
    folds = base["fold"].to_numpy()
    require_labeled(log_price, folds, "build_feature_matrix")
    keys = {"brand": bf["brand"], "category": bf["category"]}
    te = target_encodings(keys, log_price, folds)
    te_maps = {
        name: (fit_target_encoding(k.astype(str), log_price), float(np.mean(log_price))) for name, k in keys.items()
    }
    pca, pcs = {}, []
    for name, modality, vec, has in embeddings:
        n_comp = text_pca_components if modality == "text" else image_pca_components
        pca[name] = (fit_pca(vec, has, n_comp, seed), n_comp)
        pcs.append(pca_frame(pca[name][0], vec, has, n_comp, name))
    title_cv = train_tfidf_ridge_cv(items["item_name"], log_price, folds)
    stack = pd.DataFrame(
        {
            "stack_tfidf_ridge": np.log1p(ridge.to_numpy()).astype(np.float32),
            "stack_title_ridge": title_cv.oof_log.astype(np.float32),
        }
    )
    fm, groups = _assemble(base, bf, te, kn, stack, _image_facts(items), pcs)
    return fm, groups, FeatureSpace(te_maps, pca, title_cv.models, list(fm.columns))


def feature_rows_for_new_items(
    space: FeatureSpace,
    items: pd.DataFrame,
    listing_features: pd.DataFrame,
    knn_features: pd.DataFrame,
    ridge_log_price: np.ndarray,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
) -> pd.DataFrame:
    """``feature_matrix`` rows of products without a price, built with the fitted ``space`` (no
    refit): target encodings from the labeled rows' maps, the title ridge's fold average, the stored
    PCAs; the same columns, in the same order, as the training rows.

    Args:
        space: the :class:`FeatureSpace` of the training run.
        items: n new products (``products`` columns: ``sample_id``, ``item_name``, ``width``, ``height``,
            ``n_bytes``, ``status``, ``n_lines``); the rows built carry ``fold`` -1 and ``price`` NaN
            (no fold, no price: they are no ``feature_matrix`` rows).
        listing_features, knn_features: their rows (aligned by ``sample_id``;
            :func:`~pricing_assets.lib.retrieval.knn.knn_features_for_new_rows`).
        ridge_log_price: (n,) float64 ``log1p`` price of the full-text TF-IDF ridge (fold average).
        embeddings: ``(name, modality, vectors, has)`` aligned to ``items``.

    Returns:
        DataFrame (n rows) with ``space.columns``.

    Raises:
        ValueError: when the rows built lack a column of ``space.columns`` (a changed feature set).
    """
    from pricing_assets.lib.features.target_encoding import apply_target_encoding
    from pricing_assets.lib.models.tfidf_ridge import predict_tfidf_ridge

    items = items.reset_index(drop=True)
    base = pd.DataFrame({"sample_id": items["sample_id"].astype(str).to_numpy(), "fold": -1, "price": np.nan})
    bf = listing_features.set_index("sample_id").reindex(base["sample_id"]).reset_index(drop=True)
    kn = knn_features.set_index("sample_id").reindex(base["sample_id"]).reset_index(drop=True)
    te = pd.DataFrame(
        {
            f"te_{name}": apply_target_encoding(mapping, prior, bf[name].astype(str)).astype(np.float32)
            for name, (mapping, prior) in space.target_encoding.items()
        }
    )
    given = {name: (vec, has) for name, _, vec, has in embeddings}
    pcs = [pca_frame(pca, *given[name], n_comp, name) for name, (pca, n_comp) in space.pca.items() if name in given]
    title = predict_tfidf_ridge(space.title_ridge, items["item_name"]) if len(items) else np.zeros(0)
    stack = pd.DataFrame(
        {
            "stack_tfidf_ridge": np.asarray(ridge_log_price, dtype=np.float32),
            "stack_title_ridge": title.astype(np.float32),
        }
    )
    fm, _ = _assemble(base, bf, te, kn, stack, _image_facts(items), pcs)
    missing = [c for c in space.columns if c not in fm.columns]
    if missing:
        raise ValueError(
            f"feature_rows_for_new_items: rows lack feature columns {missing[:5]} (the model was trained on another feature set)"
        )
    return fm[space.columns]
