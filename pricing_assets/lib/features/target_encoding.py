"""Target encoding of categorical keys (brand, category) on ``log1p(price)``: smoothed per-key means,
out-of-fold for training rows, fitted maps for new products. Smoothing after Micci-Barreca (2001)."""

import numpy as np
import pandas as pd


def _check_xy(keys: pd.Series, y: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    keys = pd.Series(keys).reset_index(drop=True)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) != len(keys):
        raise ValueError(f"y must be 1-D with len(keys)={len(keys)} values, got shape {y.shape}")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(f"y has non-finite values at positions {bad[:5].tolist()}")
    return keys, y


def _smoothed(keys: pd.Series, y: np.ndarray, smoothing: float, prior: float) -> pd.Series:
    valid = keys.notna().to_numpy()
    stats = pd.DataFrame({"k": keys[valid].to_numpy(), "y": y[valid]}).groupby("k")["y"].agg(["sum", "count"])
    return (stats["sum"] + smoothing * prior) / (stats["count"] + smoothing)


def fit_target_encoding(keys: pd.Series, y: np.ndarray, smoothing: float = 10.0) -> dict:
    """Smoothed mean of ``y`` per key over all given rows (the map a product without a price is encoded with).

    ``enc(k) = (sum_k y + m * prior) / (n_k + m)`` with ``prior = mean(y)`` and ``m = smoothing``
    — the additive-smoothing form of Micci-Barreca (2001), "A preprocessing scheme for
    high-cardinality categorical attributes", SIGKDD Explorations 3(1).

    Args:
        keys: (n,) hashable keys (e.g. brand str); NaN/None keys are ignored.
        y: (n,) finite float targets (log1p price).
        smoothing: m >= 0, pseudo-count pulling rare keys to the prior.

    Returns:
        dict key -> float encoding. The prior to pass to :func:`apply_target_encoding` is
        ``float(np.mean(y))``.

    Raises:
        ValueError: shape mismatch, non-finite y, negative smoothing, or empty input.
    """
    keys, y = _check_xy(keys, y)
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    if len(y) == 0:
        raise ValueError("fit_target_encoding needs at least one row")
    prior = float(y.mean())
    return {k: float(v) for k, v in _smoothed(keys, y, smoothing, prior).items()}


def apply_target_encoding(mapping: dict, prior: float, keys: pd.Series) -> np.ndarray:
    """Look up encodings for ``keys``; unseen or missing keys get ``prior``.

    Returns:
        (n,) float64 array.
    """
    keys = pd.Series(keys).reset_index(drop=True)
    return keys.map(mapping).astype("float64").fillna(float(prior)).to_numpy()


def oof_target_encode(keys: pd.Series, y: np.ndarray, folds: np.ndarray, smoothing: float = 10.0) -> np.ndarray:
    """Out-of-fold smoothed mean encoding of ``y`` (log price) per key, for training rows.

    The value for a row in fold ``f`` is computed with :func:`fit_target_encoding` on the rows
    of all *other* folds only, so a row's own target never enters its own encoding; keys not
    present in the other folds get those folds' prior (their mean y). Smoothing: Micci-Barreca
    (2001), see :func:`fit_target_encoding`.

    Args:
        keys: (n,) keys; y: (n,) finite float targets; folds: (n,) int fold ids (>= 2 distinct).
        smoothing: m >= 0.

    Returns:
        (n,) float64 array.

    Raises:
        ValueError: shape mismatch, non-finite y, fewer than two folds.
    """
    keys, y = _check_xy(keys, y)
    folds = np.asarray(folds)
    if folds.shape != y.shape:
        raise ValueError(f"folds must have shape {y.shape}, got {folds.shape}")
    uniq = np.unique(folds)
    if len(uniq) < 2:
        raise ValueError(f"oof_target_encode needs >= 2 folds, got {uniq.tolist()}")
    out = np.empty(len(y), dtype=np.float64)
    for f in uniq:
        held = folds == f
        train = ~held
        prior = float(y[train].mean())
        mapping = _smoothed(keys[train].reset_index(drop=True), y[train], smoothing, prior)
        out[held] = keys[held].map(mapping).astype("float64").fillna(prior).to_numpy()
    return out
