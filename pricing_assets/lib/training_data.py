"""Assembling the training table: batches combined (latest wins) and the model's feature matrix."""

import numpy as np
import pandas as pd

#: Rule for a sample_id seen in several batches: the row of the most recently ingested batch wins.
DEDUP_RULE = "latest batch wins (by ingestion order); earlier copies are replaced"


def latest_wins(frame: pd.DataFrame, batch_order: list[str]) -> tuple[pd.DataFrame, int]:
    """Keep one row per ``sample_id``: the one from the latest batch in ``batch_order``.

    Args:
        frame: rows of several batches with ``sample_id`` and ``batch`` columns.
        batch_order: batch names, oldest first (unknown batches sort last).

    Returns:
        (deduplicated frame in batch-then-row order, number of replaced rows).
    """
    rank = {b: i for i, b in enumerate(batch_order)}
    f = frame.assign(_rank=frame["batch"].map(lambda b: rank.get(b, len(rank))), _pos=np.arange(len(frame)))
    f = f.sort_values(["_rank", "_pos"], kind="stable")
    keep = ~f["sample_id"].duplicated(keep="last")
    return f[keep].drop(columns=["_rank", "_pos"]).reset_index(drop=True), int((~keep).sum())


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


def pca_components(vectors: np.ndarray, mask: np.ndarray, n_components: int, prefix: str, seed: int = 42) -> pd.DataFrame:
    """First principal components of an embedding (fit on all rows that have one; unsupervised, so no
    label leakage). Rows without a vector get NaN.

    Returns:
        DataFrame (n, n_components) float32, columns ``{prefix}_pc{i}``.
    """
    from sklearn.decomposition import PCA

    cols = [f"{prefix}_pc{i}" for i in range(n_components)]
    out = np.full((len(vectors), n_components), np.nan, dtype=np.float32)
    k = min(n_components, int(mask.sum()) - 1, vectors.shape[1])
    if k >= 1:
        out[mask, :k] = PCA(n_components=k, random_state=seed).fit_transform(vectors[mask]).astype(np.float32)
    return pd.DataFrame(out, columns=cols)


def target_encodings(keys: dict[str, pd.Series], log_price: np.ndarray, folds: np.ndarray, smoothing: float = 10.0) -> pd.DataFrame:
    """Out-of-fold target encodings of ``log1p(price)`` per categorical key (``te_<name>`` columns).

    Labeled rows (fold >= 0) are encoded out-of-fold (never their own price); unlabeled rows (fold -1)
    with the encoding fitted on all labeled rows. Smoothing after Micci-Barreca (2001).
    """
    from pricing_assets.lib.features import apply_target_encoding, fit_target_encoding, oof_target_encode

    lab = folds >= 0
    out = {}
    for name, k in keys.items():
        k = k.astype(str).reset_index(drop=True)
        col = np.full(len(k), np.nan, dtype=np.float64)
        col[lab] = oof_target_encode(k[lab].reset_index(drop=True), log_price[lab], folds[lab], smoothing=smoothing)
        if (~lab).any():
            mapping = fit_target_encoding(k[lab].reset_index(drop=True), log_price[lab], smoothing=smoothing)
            col[~lab] = apply_target_encoding(mapping, float(np.mean(log_price[lab])), k[~lab].reset_index(drop=True))
        out[f"te_{name}"] = col.astype(np.float32)
    return pd.DataFrame(out)


def build_feature_matrix(
    products: pd.DataFrame,
    brand_features: pd.DataFrame,
    knn_features: pd.DataFrame,
    ridge_predictions: pd.DataFrame,
    embeddings: list[tuple[str, str, np.ndarray, np.ndarray]],
    text_pca_components: int = 0,
    image_pca_components: int = 0,
    seed: int = 42,
) -> tuple[pd.DataFrame, dict]:
    """The model input ``feature_matrix``: engineered features, OOF target encodings, kNN features,
    two stacked OOF TF-IDF ridges, image/OCR facts and (optionally) embedding PCA, one row per product.

    The title-only ridge (:func:`~pricing_assets.lib.modeling.tfidf_ridge_every_row` on ``item_name``)
    is computed here; the full-text one comes in as ``ridge_predictions``. Both are out-of-fold for labeled
    rows, like the kNN features and target encodings, so no row's features saw its own price.

    Args:
        products: n rows with ``sample_id``, ``fold`` (-1 unlabeled), ``price`` (USD, NaN unlabeled),
            ``item_name``, ``width``, ``height``, ``n_bytes``, ``status``, ``n_lines``.
        brand_features: rows with ``sample_id``, ``brand``, ``category`` and numeric features (aligned
            by ``sample_id``).
        knn_features: rows with ``sample_id`` and float kNN columns (aligned by ``sample_id``).
        ridge_predictions: the ``tfidf_ridge_predictions`` frame: ``sample_id`` and ``pred_price``
            (USD, > 0) of the full-text TF-IDF ridge, OOF for labeled rows (aligned by ``sample_id``).
        embeddings: ``(name, modality, vectors, has)`` aligned to products (see
            :func:`pricing_assets.lib.knn.build_knn_features`); each gives ``{name}_pc{i}`` columns.
        text_pca_components, image_pca_components: PCA components per text / image model (0: none;
            the pipeline's default, see ``TrainingConfig``).
        seed: PCA seed.

    Returns:
        ``(fm, groups)``: fm has ``sample_id``, ``fold``, ``price`` then float32 features and a str
        ``category`` column; groups maps feature group name to its column count.

    Raises:
        ValueError: when ``ridge_predictions`` lacks a product's sample_id (names the first five).
    """
    from pricing_assets.lib.modeling import tfidf_ridge_every_row

    items = products.reset_index(drop=True)
    base = items[["sample_id", "fold", "price"]]
    ridge = ridge_predictions.set_index("sample_id")["pred_price"].reindex(base["sample_id"])
    if ridge.isna().any():
        raise ValueError(f"build_feature_matrix: ridge_predictions lacks sample_ids {ridge[ridge.isna()].index[:5].tolist()}")
    bf = brand_features.set_index("sample_id").reindex(base["sample_id"]).reset_index(drop=True)
    kn = knn_features.set_index("sample_id").reindex(base["sample_id"]).reset_index(drop=True)
    img = items[["width", "height", "n_bytes"]].astype(float)
    img["has_image"] = (items["status"] == "ok").astype(np.float32).to_numpy()
    img["ocr_lines"] = items["n_lines"].fillna(0).astype(np.float32).to_numpy()
    log_price = np.log1p(base["price"].to_numpy(dtype=float))
    folds = base["fold"].to_numpy()
    te = target_encodings({"brand": bf["brand"], "category": bf["category"]}, log_price, folds)
    pcs = [
        pca_components(vec, has, text_pca_components if modality == "text" else image_pca_components, prefix=name, seed=seed)
        for name, modality, vec, has in embeddings
    ]
    numeric = bf.drop(columns=["brand", "category"]).select_dtypes("number").astype(np.float32)
    title_ridge, _ = tfidf_ridge_every_row(items["item_name"], log_price, folds)
    stack = pd.DataFrame({"stack_tfidf_ridge": np.log1p(ridge.to_numpy()).astype(np.float32), "stack_title_ridge": title_ridge.astype(np.float32)})
    fm = pd.concat([base, numeric, te, kn, stack, img.astype(np.float32), *pcs], axis=1)
    fm["category"] = bf["category"].astype(str)
    groups = {
        "engineered": numeric.shape[1], "target_encoding": te.shape[1], "knn": kn.shape[1], "stacked": stack.shape[1],
        "image": img.shape[1], "embedding_pca": int(sum(p.shape[1] for p in pcs)),
    }
    return fm, groups
