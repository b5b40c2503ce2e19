"""Prediction intervals (``lib.serving.intervals``): calibrated coverage, adaptivity, the point price inside."""

import numpy as np
import pandas as pd
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


@pytest.fixture(scope="module")
def sample_oof():
    """Out-of-fold prices of two quick text models on the bundled sample (7,216 real labeled rows,
    grouped folds): real, heavy-tailed residuals and a real disagreement between models."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    from pricing_assets.lib.catalog.parsing import parse_catalog
    from pricing_assets.lib.models.cross_validation import assign_folds
    from pricing_assets.lib.models.tfidf_ridge import product_text
    from pricing_assets.settings import SAMPLE_DIR

    raw = pd.read_csv(SAMPLE_DIR / "amazon_pricing_sample.csv", dtype={"sample_id": str})
    text = product_text(parse_catalog(raw)).fillna("").to_numpy()
    y = raw["price"].to_numpy(dtype=float)
    folds = assign_folds(raw["sample_id"], raw["image_link"])  # the pipeline's grouped folds
    views = [
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4), min_df=3, max_features=60000, sublinear_tf=True),
    ]
    preds = np.zeros((len(y), len(views)))
    for f in range(5):
        tr, va = folds != f, folds == f
        for j, vec in enumerate(views):
            Xtr = vec.fit_transform(text[tr])
            model = Ridge(alpha=2.0).fit(Xtr, np.log(y[tr]))
            preds[va, j] = np.exp(model.predict(vec.transform(text[va])))
    return y, np.sqrt(preds[:, 0] * preds[:, 1]), preds, folds


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_coverage_on_the_bundled_sample_is_nominal_within_3_points(sample_oof, level):
    y, blend, preds, folds = sample_oof
    low, high = cross_fitted_intervals(y, blend, preds, ["word", "char"], folds, level)
    coverage = float(np.mean((y >= low) & (y <= high)))
    assert abs(coverage - level) <= 0.03, coverage
    table = coverage_by_quintile(y, low, high)
    assert len(table) == 6 and (table["median_width"] > 1).all()  # five quintiles + overall
