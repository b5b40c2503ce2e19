"""Grouped folds: deterministic, groups kept together, independent of row order."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.cross_validation import assign_folds


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
