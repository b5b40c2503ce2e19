"""TF-IDF + ridge CV on real rows (determinism, held-out labels never used), the stacked title ridge, product text."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.metrics import smape
from pricing_assets.lib.tfidf_ridge import predict_tfidf_ridge, product_text, tfidf_ridge_every_row, train_tfidf_ridge_cv


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


def test_stacked_title_ridge_is_out_of_fold_and_covers_unlabeled_rows(real):
    parsed, y, folds = real
    titles = parsed["item_name"]
    # the last 100 rows play the unlabeled batch: no price, fold -1
    y_in, folds_in = y.copy(), folds.copy()
    y_in[400:], folds_in[400:] = np.nan, -1
    a, a_cv = tfidf_ridge_every_row(titles, y_in, folds_in)
    assert a.shape == (500,) and a.dtype == np.float64 and np.isfinite(a).all()
    # labeled rows: exactly the OOF of a CV on the labeled rows alone; the vocabulary too is fitted on
    # the labeled titles only (an unlabeled row gets what a new product gets: no transductive step)
    cv = train_tfidf_ridge_cv(titles[:400].reset_index(drop=True), y[:400], folds[:400])
    assert np.array_equal(a[:400], cv.oof_log) and np.array_equal(a_cv.oof_log, cv.oof_log) and len(a_cv.models) == 4
    # unlabeled rows: the average of the fold ridges
    assert np.allclose(a[400:], predict_tfidf_ridge(cv.models, titles[400:]))
    # a title carries price signal: better than each fold's training median on the labeled rows
    med = np.zeros(400)
    for f in np.unique(folds_in[:400]):
        med[folds_in[:400] == f] = np.median(y[:400][folds_in[:400] != f])
    assert smape(np.expm1(y[:400]), np.expm1(a[:400])) < smape(np.expm1(y[:400]), np.expm1(med)) - 3
    # no row sees its own fold's prices: scrambling fold 2's prices leaves fold 2's values unchanged
    y_scr = y_in.copy()
    y_scr[folds_in == 2] = np.log1p(1000.0)
    b, _ = tfidf_ridge_every_row(titles, y_scr, folds_in)
    assert np.array_equal(a[folds_in == 2], b[folds_in == 2])
    assert not np.allclose(a[folds_in == 1], b[folds_in == 1])
    with pytest.raises(ValueError, match="tfidf_ridge_every_row: length mismatch"):
        tfidf_ridge_every_row(titles[:10], y_in, folds_in)


def test_product_text_joins_parts():
    items = pd.DataFrame({"item_name": ["Tea", None], "bullets": [["strong", "black"], None], "description": [np.nan, "d"], "ipq_value": [12.0, np.nan], "ipq_unit": ["Ounce", None]})
    t = product_text(items)
    assert t.iloc[0] == "Tea\nstrong\nblack\n\nunit Ounce"
    assert t.iloc[1] == "\n\nd\nunit "
    # the pack quantity (Value) is not in the text: only monotone features carry it
    assert product_text(items.assign(ipq_value=[24.0, 3.0])).equals(t)
    with pytest.raises(KeyError, match="item_name"):
        product_text(pd.DataFrame({"x": [1]}))
