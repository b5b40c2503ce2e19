"""The review list (``lib.serving.review``): wide intervals and far comparables, each with its reason."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.serving.review import REVIEW_COLUMNS, check_thresholds, needs_review


def _frames():
    preds = pd.DataFrame(
        {
            "sample_id": ["ok", "wide", "far", "both", "alone"],
            "price": [10.0, 10.0, 10.0, 10.0, 10.0],
            "price_low": [5.0, 1.0, 5.0, 0.5, 5.0],
            "price_high": [20.0, 50.0, 20.0, 40.0, 20.0],
        }
    )
    comps = pd.DataFrame(
        {
            "sample_id": ["ok", "ok", "wide", "far", "both"],
            "rank": [1, 2, 1, 1, 1],
            "similarity": [0.9, 0.3, 0.8, 0.4, 0.2],
        }
    )
    return preds, comps


def test_flags_wide_far_and_missing_with_their_reasons():
    preds, comps = _frames()
    out = needs_review(preds, comps, max_width_ratio=10, min_similarity=0.5)
    assert list(out.columns) == list(REVIEW_COLUMNS)
    assert out["sample_id"].tolist() == ["both", "wide", "far", "alone"]  # widest interval first
    reasons = dict(zip(out["sample_id"], out["reason"]))
    assert reasons["wide"] == "interval x50.0 wide (> x10)"
    assert reasons["far"] == "best comparable similarity 0.40 (< 0.5)"
    assert reasons["both"] == "interval x80.0 wide (> x10); best comparable similarity 0.20 (< 0.5)"
    assert reasons["alone"] == "no comparables"
    assert out.set_index("sample_id").loc["far", "best_similarity"] == pytest.approx(0.4)  # rank 1, not rank 2


def test_thresholds_move_the_list_and_are_checked():
    preds, comps = _frames()
    assert needs_review(preds, comps, max_width_ratio=100, min_similarity=0.0)["sample_id"].tolist() == ["alone"]
    assert len(needs_review(preds, comps, max_width_ratio=1.5, min_similarity=1.0)) == 5
    no_interval = preds.drop(columns=["price_low", "price_high"])
    out = needs_review(no_interval, comps, max_width_ratio=1.5, min_similarity=0.5)
    assert sorted(out["sample_id"]) == ["alone", "both", "far"] and out["width_ratio"].isna().all()
    for bad in [(1.0, 0.5), (5.0, 1.5), (5.0, -0.1), (np.nan, 0.5)]:
        with pytest.raises(ValueError):
            check_thresholds(*bad)
