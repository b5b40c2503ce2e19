"""Prediction intervals (``lib.serving.intervals``): calibrated coverage, adaptivity, the point price inside."""

import numpy as np
import pytest

from pricing_assets.lib.serving.intervals import (
    coverage_by_quintile,
    cross_fitted_intervals,
    disagreement,
    fit_intervals,
)


def _data(n=4000, seed=0):
    """Log-normal prices; the blend's error grows with the models' disagreement (heteroscedastic)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0.1, 1.0, n)
    y = np.exp(rng.normal(3, 1, n))
    pred = y * np.exp(rng.normal(0, noise))
    models = np.column_stack([pred * np.exp(rng.normal(0, noise / 2)), pred * np.exp(rng.normal(0, noise / 2))])
    return y, pred, models, np.arange(n) % 5, noise


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_cross_fitted_coverage_is_nominal_within_3_points(level):
    y, pred, models, folds, _ = _data()
    low, high = cross_fitted_intervals(y, pred, models, ["a", "b"], folds, level)
    coverage = np.mean((y >= low) & (y <= high))
    assert abs(coverage - level) <= 0.03, coverage
    assert (low <= pred * (1 + 1e-12)).all() and (pred <= high * (1 + 1e-12)).all()  # the price is inside


def test_intervals_are_wider_where_the_models_disagree():
    y, pred, models, folds, noise = _data()
    fitted = fit_intervals(y, pred, models, ["a", "b"], 0.8)
    low, high = fitted.bounds(np.log(pred), np.log(models))
    width = np.log(high / low)
    hard = noise > np.quantile(noise, 0.8)
    easy = noise < np.quantile(noise, 0.2)
    assert np.median(width[hard]) > 1.5 * np.median(width[easy])
    table = coverage_by_quintile(y, low, high)
    assert table["quintile"].tolist() == ["q1", "q2", "q3", "q4", "q5", "all"] and table["rows"].iloc[-1] == len(y)


def test_disagreement_and_bad_input():
    assert disagreement(np.log([[2.0, 2.0], [1.0, np.e**2]])).tolist() == pytest.approx([0.0, 1.0])
    y, pred, models, _, _ = _data(100)
    with pytest.raises(ValueError, match="level"):
        fit_intervals(y, pred, models, ["a", "b"], 1.5)
    with pytest.raises(ValueError, match="at least 20"):
        fit_intervals(y[:10], pred[:10], models[:10], ["a", "b"])
    with pytest.raises(ValueError, match="> 0"):
        fit_intervals(np.r_[y[:-1], 0.0], pred, models, ["a", "b"])
