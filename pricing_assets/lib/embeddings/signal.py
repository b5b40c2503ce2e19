"""How much price signal an embedding carries: the screen the competition's write-ups ran before
training on a model's vectors (a linear probe on log price)."""

import numpy as np

from pricing_assets.lib.models.metrics import smape


def embedding_price_signal(vectors: np.ndarray, log_price: np.ndarray, folds: np.ndarray, alpha: float = 10.0) -> dict:
    """Out-of-fold ridge regression of ``log1p(price)`` on an embedding (a linear probe).

    Args:
        vectors: (n, d) float32 embeddings of labeled rows.
        log_price: (n,) float64 ``log1p(price USD)``.
        folds: (n,) int fold ids (the pipeline's CV folds, so probes are comparable across models).
        alpha: ridge L2 strength (scikit-learn ``Ridge``); fixed, not tuned per model.

    Returns:
        ``{"rows", "dim", "oof_smape" (percent, price scale), "oof_r2" (log scale),
        "top_abs_corr" (largest |Pearson r| of one dimension with log price), "top_dim"}``.

    Raises:
        ValueError: on length mismatch or fewer than 2 folds.
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    n = len(vectors)
    if not (len(log_price) == len(folds) == n):
        raise ValueError(f"embedding_price_signal: length mismatch {n}, {len(log_price)}, {len(folds)}")
    uniq = np.unique(folds)
    if len(uniq) < 2:
        raise ValueError("embedding_price_signal: need at least 2 folds")
    oof = np.zeros(n)
    for f in uniq:
        tr, va = folds != f, folds == f
        oof[va] = Ridge(alpha=alpha).fit(vectors[tr], log_price[tr]).predict(vectors[va])
    x = vectors - vectors.mean(axis=0)
    y = log_price - log_price.mean()
    denom = np.sqrt((x**2).sum(axis=0) * (y**2).sum())
    corr = np.divide(x.T @ y, denom, out=np.zeros(vectors.shape[1]), where=denom > 0)
    top = int(np.argmax(np.abs(corr)))
    return {
        "rows": int(n),
        "dim": int(vectors.shape[1]),
        "oof_smape": round(smape(np.expm1(log_price), np.clip(np.expm1(oof), 0.01, None)), 3),
        "oof_r2": round(float(r2_score(log_price, oof)), 4),
        "top_abs_corr": round(float(abs(corr[top])), 4),
        "top_dim": top,
    }
