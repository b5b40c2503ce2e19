"""Grouped folds: deterministic, groups kept together, independent of row order; the labeled-rows rule."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.models.cross_validation import assign_folds, require_labeled


def test_assign_folds_groups_deterministic_and_order_free():
    ids = pd.Series([str(i) for i in range(40)])
    groups = pd.Series([f"img{i // 2}" for i in range(40)])  # pairs of variants
    f = assign_folds(ids, groups, 4, 42)
    assert f.dtype == np.int64 and sorted(set(f)) == [0, 1, 2, 3]
    assert all(f[2 * i] == f[2 * i + 1] for i in range(20))
    perm = np.random.default_rng(1).permutation(40)
    f2 = assign_folds(ids[perm].reset_index(drop=True), groups[perm].reset_index(drop=True), 4, 42)
    assert np.array_equal(f2, f[perm])
    with pytest.raises(ValueError, match="3 labeled rows < 5 folds"):
        assign_folds(ids[:3], groups[:3], 5)


def test_require_labeled_names_the_rows_without_a_price_or_fold():
    require_labeled(np.log1p([1.0, 0.0, 5.0]), np.array([0, 1, 0]), "f")  # labeled rows pass
    with pytest.raises(ValueError) as err:
        require_labeled(np.array([1.0, np.nan, np.inf, 2.0]), np.array([0, 1, -1, -1]), "train_x")
    assert str(err.value) == (
        "train_x: 2 rows without a finite price (first: row 1); 2 rows with a fold < 0 (first: row 2): "
        "training rows must all be labeled (products without a price are priced by lib.serving.scoring)"
    )
