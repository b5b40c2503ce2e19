"""TF-IDF + ridge CV on real labeled rows (determinism, held-out labels never used, rows without a
price or fold refused), the stacked title ridge, product text."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.models.metrics import smape
from pricing_assets.lib.models.tfidf_ridge import predict_tfidf_ridge, product_text, train_tfidf_ridge_cv


def test_tfidf_ridge_on_real_rows(real):
    parsed, y, folds = real
    text = product_text(parsed)
    assert len(text) == 500 and text.iloc[0].startswith(parsed["item_name"].iloc[0])
    a = train_tfidf_ridge_cv(text, y, folds)
    b = train_tfidf_ridge_cv(text, y, folds)
    assert np.array_equal(a.oof_log, b.oof_log)
    med = np.zeros(len(y))
    for f in np.unique(folds):
        med[folds == f] = np.median(y[folds != f])
    # beats the median on real rows, by a clear margin
    assert a.oof_smape(y) < smape(np.expm1(y), np.expm1(med)) - 5
    # held-out labels never used
    y2 = y.copy()
    y2[folds == 1] = 0.5
    c = train_tfidf_ridge_cv(text, y2, folds)
    assert np.array_equal(a.oof_log[folds == 1], c.oof_log[folds == 1])
    # fold models share one vectoriser; predicting = averaging the fold ridges
    p = predict_tfidf_ridge(a.models, text[:5])
    assert p.shape == (5,) and np.allclose(p, np.mean([m.predict(text[:5]) for m in a.models], axis=0))
    with pytest.raises(ValueError, match="length mismatch"):
        train_tfidf_ridge_cv(text[:10], y, folds)


def test_title_ridge_is_out_of_fold_and_carries_price_signal(real):
    """The stacked title ridge of ``feature_matrix``: :func:`train_tfidf_ridge_cv` on the titles."""
    parsed, y, folds = real
    titles = parsed["item_name"]
    a = train_tfidf_ridge_cv(titles, y, folds)
    assert (
        a.oof_log.shape == (500,)
        and a.oof_log.dtype == np.float64
        and np.isfinite(a.oof_log).all()
        and len(a.models) == 4
    )
    # a title carries price signal: better than each fold's training median
    med = np.zeros(500)
    for f in np.unique(folds):
        med[folds == f] = np.median(y[folds != f])
    assert smape(np.expm1(y), np.expm1(a.oof_log)) < smape(np.expm1(y), np.expm1(med)) - 3
    # no row sees its own fold's prices: scrambling fold 2's prices leaves fold 2's values unchanged
    y_scr = y.copy()
    y_scr[folds == 2] = np.log1p(1000.0)
    b = train_tfidf_ridge_cv(titles, y_scr, folds)
    assert np.array_equal(a.oof_log[folds == 2], b.oof_log[folds == 2])
    assert not np.allclose(a.oof_log[folds == 1], b.oof_log[folds == 1])


def test_training_refuses_a_row_without_a_price_or_fold(real):
    parsed, y, folds = real
    text = product_text(parsed)
    y_nan, folds_neg = y.copy(), folds.copy()
    y_nan[[3, 9]] = np.nan
    folds_neg[400] = -1
    with pytest.raises(ValueError, match=r"train_tfidf_ridge_cv: 2 rows without a finite price \(first: row 3\)"):
        train_tfidf_ridge_cv(text, y_nan, folds)
    with pytest.raises(ValueError, match=r"train_tfidf_ridge_cv: 1 rows with a fold < 0 \(first: row 400\)"):
        train_tfidf_ridge_cv(text, y, folds_neg)


def test_product_text_joins_parts():
    items = pd.DataFrame(
        {
            "item_name": ["Tea", None],
            "bullets": [["strong", "black"], None],
            "description": [np.nan, "d"],
            "ipq_value": [12.0, np.nan],
            "ipq_unit": ["Ounce", None],
        }
    )
    t = product_text(items)
    assert t.iloc[0] == "Tea\nstrong\nblack\n\nunit Ounce"
    assert t.iloc[1] == "\n\nd\nunit "
    # the pack quantity (Value) is not in the text: only monotone features carry it
    assert product_text(items.assign(ipq_value=[24.0, 3.0])).equals(t)
    with pytest.raises(KeyError, match="item_name"):
        product_text(pd.DataFrame({"x": [1]}))
