"""Evaluation metrics of the Amazon ML Challenge 2025 (pure numpy)."""

import numpy as np


def smape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Symmetric mean absolute percentage error, in percent (0 = perfect, 200 = worst).

    ``mean(|p - y| / ((|y| + |p|) / 2)) * 100``, the competition's definition. A pair where both
    values are 0 counts as 0 error.

    Args:
        y_true: (n,) prices in USD.
        y_pred: (n,) predicted prices in USD.

    Raises:
        ValueError: if shapes differ, the arrays are empty, or any value is not finite.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"smape: shape mismatch {y_true.shape} vs {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("smape: empty input")
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("smape: non-finite values")
    denom = (np.abs(y_true) + np.abs(y_pred)) / 2.0
    diff = np.abs(y_pred - y_true)
    ratio = np.divide(diff, denom, out=np.zeros_like(diff), where=denom > 0)
    return float(ratio.mean() * 100.0)


def smape_by_bin(y_true: np.ndarray, y_pred: np.ndarray, edges: tuple[float, ...] = (0, 5, 10, 20, 50, 100, np.inf)):
    """SMAPE (percent) and row count per true-price bin.

    Args:
        y_true, y_pred: (n,) USD.
        edges: bin edges in USD (left-closed).

    Returns:
        list of dicts ``{"bin": "[5, 10)", "rows": int, "smape": float}``; empty bins are omitted.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (y_true >= lo) & (y_true < hi)
        if m.any():
            hi_s = "inf" if np.isinf(hi) else f"{hi:g}"
            out.append({"bin": f"[{lo:g}, {hi_s})", "rows": int(m.sum()), "smape": smape(y_true[m], y_pred[m])})
    return out
