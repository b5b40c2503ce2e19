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
