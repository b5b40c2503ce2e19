"""Prediction intervals for served prices: normalized conformal regression on the log price.

Method: split conformal prediction with normalized nonconformity scores (Papadopoulos et al. 2008;
Lei et al. 2018, "Distribution-free predictive inference for regression", section 5.2), through the
``crepes`` library's ``ConformalRegressor`` (Boström 2022). The calibration residuals are the blend's
out-of-fold residuals ``log(price) - log(OOF prediction)`` of the same grouped folds the models were
trained on (every labeled row is a calibration row: its prediction never saw it, as in CV+ of Barber
et al. 2021). The interval is made locally adaptive by a difficulty estimate ``sigma``: how much the
blended models disagree on the product (the standard deviation of their log prices) plus ``beta``, the
median disagreement of the calibration rows (so no sigma is 0). An interval is symmetric in log price
around the point price, so it always contains it.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Default nominal coverage of a served interval (80 %: the price falls inside 4 times out of 5).
DEFAULT_LEVEL = 0.8


def disagreement(log_model_prices: np.ndarray) -> np.ndarray:
    """Per row, the standard deviation of the models' log prices: (n, m) float -> (n,) float64 (>= 0)."""
    x = np.asarray(log_model_prices, dtype=np.float64)
    return x.std(axis=1) if x.ndim == 2 and x.shape[1] > 1 else np.zeros(len(x))


@dataclass
class PriceIntervals:
    """A fitted interval model (what ``serving_model`` keeps).

    Attributes:
        level: nominal coverage in (0, 1).
        beta: added to every row's disagreement (the calibration rows' median; > 0).
        regressor: the fitted ``crepes.ConformalRegressor`` (normalized, on log price).
        models: the model names whose prices give the disagreement, in column order.
    """

    level: float
    beta: float
    regressor: object
    models: list

    def bounds(self, log_price: np.ndarray, log_model_prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) prices in USD, (n,) float64 each, for n point prices ``log_price`` (natural
        log of USD) and the (n, m) log prices of :attr:`models`; ``low <= exp(log_price) <= high``."""
        sigma = disagreement(log_model_prices) + self.beta
        iv = self.regressor.predict_int(np.asarray(log_price, dtype=np.float64), sigmas=sigma, confidence=self.level)
        return np.exp(iv[:, 0]), np.exp(iv[:, 1])


def fit_intervals(
    price: np.ndarray,
    blend_price: np.ndarray,
    model_prices: np.ndarray,
    models: list[str],
    level: float = DEFAULT_LEVEL,
) -> PriceIntervals:
    """Fit the interval model on out-of-fold predictions.

    Args:
        price: (n,) true prices (USD, > 0) of the labeled rows.
        blend_price: (n,) the blend's OOF prices (USD, > 0).
        model_prices: (n, m) each blended model's OOF prices (USD, > 0), columns in ``models`` order.
        models: the m model names.
        level: nominal coverage in (0, 1).

    Returns:
        :class:`PriceIntervals`.

    Raises:
        ValueError: on a level outside (0, 1), mismatched lengths, fewer than 20 rows or a price <= 0.
    """
    from crepes import ConformalRegressor

    if not 0 < level < 1:
        raise ValueError(f"fit_intervals: level must be in (0, 1), got {level}")
    y, yhat, mp = (np.asarray(a, dtype=np.float64) for a in (price, blend_price, model_prices))
    if not (len(y) == len(yhat) == len(mp)) or mp.ndim != 2 or mp.shape[1] != len(models):
        raise ValueError(f"fit_intervals: lengths {len(y)}, {len(yhat)}, {mp.shape} for {len(models)} models")
    if len(y) < 20:
        raise ValueError(f"fit_intervals: {len(y)} calibration rows; need at least 20")
    if (y <= 0).any() or (yhat <= 0).any() or (mp <= 0).any():
        raise ValueError("fit_intervals: every price must be > 0 USD")
    spread = disagreement(np.log(mp))
    beta = float(max(np.median(spread), 1e-3))
    regressor = ConformalRegressor().fit(residuals=np.log(y) - np.log(yhat), sigmas=spread + beta)
    return PriceIntervals(level=level, beta=beta, regressor=regressor, models=list(models))


def cross_fitted_intervals(
    price: np.ndarray,
    blend_price: np.ndarray,
    model_prices: np.ndarray,
    models: list[str],
    folds: np.ndarray,
    level: float = DEFAULT_LEVEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Honest intervals of the labeled rows: each fold's rows get the interval of a model calibrated on
    the other folds only. Returns (low, high) USD, (n,) each. Same arguments as :func:`fit_intervals`
    plus ``folds`` (n,) int."""
    low, high = np.empty(len(price)), np.empty(len(price))
    mp = np.asarray(model_prices, dtype=np.float64)
    for f in np.unique(folds):
        held = np.asarray(folds) == f
        fitted = fit_intervals(price[~held], blend_price[~held], mp[~held], models, level)
        low[held], high[held] = fitted.bounds(np.log(blend_price[held]), np.log(mp[held]))
    return low, high


def coverage_by_quintile(price: np.ndarray, low: np.ndarray, high: np.ndarray) -> pd.DataFrame:
    """Coverage and median width of intervals per true-price quintile.

    Returns:
        DataFrame, one row per quintile (``q1`` cheapest … ``q5``) and ``all``: ``price_range`` (USD),
        ``rows``, ``coverage`` (share of true prices inside), ``median_width`` (median ``high / low``).
    """
    price = np.asarray(price, dtype=np.float64)
    inside = (price >= low) & (price <= high)
    width = np.asarray(high) / np.asarray(low)
    q = pd.qcut(pd.Series(price).rank(method="first"), 5, labels=[f"q{i}" for i in range(1, 6)])
    rows = []
    for name in [*q.cat.categories, "all"]:
        m = np.ones(len(price), bool) if name == "all" else (q == name).to_numpy()
        rows.append(
            {
                "quintile": name,
                "price_range": f"{price[m].min():.2f}-{price[m].max():.2f}",
                "rows": int(m.sum()),
                "coverage": round(float(inside[m].mean()), 4),
                "median_width": round(float(np.median(width[m])), 3),
            }
        )
    return pd.DataFrame(rows)
