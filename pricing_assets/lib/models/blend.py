"""The OOF blend of the price models: weights fitted on out-of-fold predictions
(:func:`fit_blend_weights`, :class:`BlendFitError`), the models' frames aligned
(:func:`align_predictions`), the weighted geometric mean (:func:`apply_blend`), and the three in
one step (:func:`blend_oof_predictions`)."""

import numpy as np
import pandas as pd

from pricing_assets.lib.models.metrics import smape


class BlendFitError(RuntimeError):
    """SLSQP could not fit the blend weights and its result is worse than equal weights.

    Attributes:
        message: the optimizer's own message (``OptimizeResult.message``).
        status: the optimizer's exit status (``OptimizeResult.status``).
        loss_start: OOF SMAPE (percent) of equal weights.
        loss_end: OOF SMAPE (percent) of the optimizer's last point (projected onto the simplex).
    """

    def __init__(self, text: str, *, message: str, status: int, loss_start: float, loss_end: float) -> None:
        super().__init__(text)
        self.message = message
        self.status = status
        self.loss_start = loss_start
        self.loss_end = loss_end


def fit_blend_weights(oof_prices: np.ndarray, y_price: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Convex blend weights minimising OOF SMAPE of a weighted geometric mean of model predictions.

    The blend is ``exp(sum_j w_j * log(p_j))`` with ``w >= 0, sum w = 1`` (geometric mean suits a
    relative-error metric). Fitted with SciPy SLSQP from equal weights.

    When SLSQP reports failure (``success`` False: e.g. "Iteration limit reached", "Positive
    directional derivative for linesearch", which SMAPE's kinks can provoke near an optimum) its
    last point, clipped and renormalised onto the simplex, is still accepted when its OOF SMAPE is
    not worse than equal weights' (the start point): the blend is then at least as good as the
    plain average and the weights are a valid convex combination. Otherwise the fit has gone wrong
    and :class:`BlendFitError` is raised.

    Args:
        oof_prices: (n, m) OOF predicted prices (USD) of m models; every value finite.
        y_price: (n,) true prices (USD); every value finite.
        names: optional m model names, used in error messages (default ``column <j>``).

    Returns:
        (m,) float64 weights, >= 0, summing to 1.

    Raises:
        ValueError: shapes do not match (n rows, m names), n == 0 or m == 0, or a value is not
            finite (the message names the model column and the first bad rows).
        BlendFitError: SLSQP failed and its point is worse than equal weights (message names
            the optimizer's message and both losses).
    """
    from scipy.optimize import minimize

    prices = np.asarray(oof_prices, dtype=np.float64)
    y = np.asarray(y_price, dtype=np.float64)
    if prices.ndim != 2 or prices.shape[0] != y.shape[0] or y.ndim != 1:
        raise ValueError(
            f"fit_blend_weights: oof_prices must be (n, m) and y_price (n,), got {prices.shape} and {y.shape}"
        )
    n, m = prices.shape
    if n == 0 or m == 0:
        raise ValueError(f"fit_blend_weights: needs at least one row and one model, got {prices.shape}")
    cols = list(names) if names is not None else [f"column {j}" for j in range(m)]
    if len(cols) != m:
        raise ValueError(f"fit_blend_weights: {len(cols)} names for {m} model columns")
    for j in range(m):
        bad = np.flatnonzero(~np.isfinite(prices[:, j]))
        if bad.size:
            raise ValueError(
                f"fit_blend_weights: model {cols[j]!r} has {bad.size} non-finite OOF prediction(s), "
                f"first rows {bad[:5].tolist()}"
            )
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(
            f"fit_blend_weights: y_price has {bad.size} non-finite value(s), first rows {bad[:5].tolist()}"
        )

    logs = np.log(np.clip(prices, 1e-6, None))
    if m == 1:
        return np.ones(1)

    def loss(w):
        return smape(y, np.exp(logs @ w))

    w0 = np.full(m, 1.0 / m)
    res = minimize(
        loss,
        w0,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
    )
    x = np.asarray(res.x, dtype=np.float64)
    w = np.clip(x, 0, None) if np.isfinite(x).all() else np.full(m, np.nan)
    w = w / w.sum() if np.isfinite(w).all() and w.sum() > 0 else np.full(m, np.nan)
    finite = bool(np.isfinite(w).all())
    if not res.success or not finite:
        loss_start = loss(w0)
        loss_end = loss(w) if finite else float("inf")
        if not loss_end <= loss_start:
            raise BlendFitError(
                f"fit_blend_weights: SLSQP failed ({res.message!r}, status {res.status}) on {n} rows x {m} models "
                f"{cols}; its point has OOF SMAPE {loss_end:.4f} vs {loss_start:.4f} for equal weights",
                message=str(res.message),
                status=int(res.status),
                loss_start=float(loss_start),
                loss_end=float(loss_end),
            )
    return w


def align_predictions(preds: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, np.ndarray]:
    """The blend's input: the models' ``ModelPredictions`` frames aligned on the first one's rows.

    Args:
        preds: model name -> frame with ``sample_id``, ``fold``, ``price``, ``pred_price`` (USD);
            taken in sorted-name order.

    Returns:
        ``(base, mats)``: base (n rows: ``sample_id``, ``fold``, ``price``) and (n, m) float64 predicted
        prices, column j = ``sorted(preds)[j]``.

    Raises:
        ValueError: when a model lacks a row of the first one (names the model and five ids).
    """
    names = sorted(preds)
    base = preds[names[0]][["sample_id", "fold", "price"]].reset_index(drop=True)
    cols = []
    for n in names:
        col = preds[n].set_index("sample_id")["pred_price"].reindex(base["sample_id"])
        if col.isna().any():
            raise ValueError(f"align_predictions: {n} lacks sample_ids {col[col.isna()].index[:5].tolist()}")
        cols.append(col.to_numpy(dtype=np.float64))
    return base, np.column_stack(cols)


def apply_blend(prices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted geometric mean of (n, m) predicted prices with (m,) weights: (n,) USD."""
    return np.exp(np.log(np.clip(prices, 1e-6, None)) @ weights)


def blend_oof_predictions(
    base: pd.DataFrame, prices: np.ndarray, names: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The blend of the models' OOF predictions and its weights.

    Args:
        base, prices: :func:`align_predictions` of the models' ``ModelPredictions`` frames: the labeled
            rows (``sample_id``, ``fold``, ``price`` USD) and (n, m) predicted prices (USD).
        names: the m model names, in column order (sorted).

    Returns:
        ``(blended, weights)``: blended is a ``ModelPredictions`` frame (``base`` with ``pred_price`` the
        weighted geometric mean, USD); weights has one row per model in ``names`` order: ``model``
        (str), ``weight`` (float64, convex: >= 0, sum 1), ``oof_smape`` (percent, 3 decimals).

    Raises:
        BlendFitError: the weights could not be fitted (:func:`fit_blend_weights`).
    """
    y = base["price"].to_numpy()
    w = fit_blend_weights(prices, y, names=list(names))
    weights = pd.DataFrame(
        {
            "model": list(names),
            "weight": np.asarray(w, dtype=np.float64),
            "oof_smape": [round(smape(y, prices[:, i]), 3) for i in range(len(names))],
        }
    )
    return base.assign(pred_price=apply_blend(prices, w)), weights


def blended_predictions(
    base: pd.DataFrame, prices: np.ndarray, names: list[str], weights: pd.DataFrame
) -> pd.DataFrame:
    """The blend of aligned OOF predictions (``base``, ``prices``, ``names`` as in
    :func:`blend_oof_predictions`) with stored weights (``blend_weights`` rows: ``model``, ``weight``):
    the frame :func:`blend_oof_predictions` returned with them.

    Raises:
        ValueError: the weights name other models than ``names``.
    """
    w = weights.set_index("model")["weight"]
    if sorted(w.index) != sorted(names):
        raise ValueError(f"blended_predictions: weights for {sorted(w.index)}, predictions of {sorted(names)}")
    return base.assign(pred_price=apply_blend(prices, w.reindex(list(names)).to_numpy(dtype=np.float64)))
