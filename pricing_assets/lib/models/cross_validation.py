"""Cross-validation shared by every K-fold price model: grouped folds (:func:`assign_folds`), the
inner early-stopping split (:func:`inner_split`), the labeled-rows rule of every training function
(:func:`require_labeled`) and the out-of-fold result (:class:`CvResult`)."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pricing_assets.lib.models.metrics import smape


def inner_split(n: int, fraction: float, seed: int) -> np.ndarray:
    """(n,) bool mask of the early-stopping rows inside a training set of n rows: a seeded random
    ``fraction`` (at least 1 row). Shared by every K-fold trainer so that the held-out fold never
    chooses an iteration count or epoch."""
    m = np.zeros(n, dtype=bool)
    m[np.random.default_rng(seed).permutation(n)[: max(1, round(n * fraction))]] = True
    return m


#: Cross-validation defaults of every training asset (``CrossValidationResource``) and benchmark.
DEFAULT_N_FOLDS = 5
DEFAULT_SEED = 42


def assign_folds(
    sample_ids: pd.Series, groups: pd.Series, n_splits: int = DEFAULT_N_FOLDS, seed: int = DEFAULT_SEED
) -> np.ndarray:
    """Deterministic grouped K-fold assignment (scikit-learn ``GroupKFold`` with shuffling).

    Rows sharing a group (e.g. the same image link: product variants) land in the same fold, so
    neither kNN features nor models see a near-copy of a validation row. The result depends only on
    the set of (sample_id, group) pairs, not on row order.

    Args:
        sample_ids: (n,) str ids.
        groups: (n,) group labels (str); missing values become the row's own sample_id.
        n_splits: K.
        seed: shuffling seed.

    Returns:
        (n,) int64 fold ids in ``0..K-1``, aligned with the input order.

    Raises:
        ValueError: if there are fewer rows than folds.
    """
    from sklearn.model_selection import GroupKFold

    n = len(sample_ids)
    if n < n_splits:
        raise ValueError(f"assign_folds: {n} labeled rows < {n_splits} folds")
    ids = pd.Series(sample_ids, dtype=str).reset_index(drop=True)
    grp = pd.Series(groups).reset_index(drop=True).astype(object)
    grp = grp.where(grp.notna() & (grp.astype(str).str.len() > 0), ids).astype(str)
    order = np.argsort(ids.to_numpy(), kind="stable")
    folds_sorted = np.empty(n, dtype=np.int64)
    splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for f, (_, val) in enumerate(splitter.split(np.zeros(n), groups=grp.to_numpy()[order])):
        folds_sorted[val] = f
    folds = np.empty(n, dtype=np.int64)
    folds[order] = folds_sorted
    return folds


def require_labeled(log_price, folds, who: str) -> None:
    """Raise unless every row is a labeled training row: a finite ``log1p`` price and a fold >= 0.

    The training functions take ``products`` rows, all of them labeled; a product without a price is
    priced by the serving path (``lib.serving.scoring``), never by a training function.

    Args:
        log_price: (n,) float ``log1p(price USD)``.
        folds: (n,) int fold ids.
        who: the calling function's name, for the message.

    Raises:
        ValueError: naming how many rows lack a finite price or have a fold < 0, and the first of them.
    """
    log_price, folds = np.asarray(log_price, dtype=np.float64), np.asarray(folds)
    problems = []
    for bad, what in ((~np.isfinite(log_price), "without a finite price"), (folds < 0, "with a fold < 0")):
        if bad.any():
            problems.append(f"{int(bad.sum())} rows {what} (first: row {int(np.flatnonzero(bad)[0])})")
    if problems:
        raise ValueError(
            f"{who}: {'; '.join(problems)}: training rows must all be labeled (products without a price are priced by lib.serving.scoring)"
        )


@dataclass
class CvResult:
    """Out-of-fold result of a K-fold model.

    Attributes:
        oof_log: (n,) float64 OOF predictions of log1p(price) for the training rows.
        models: one fitted model per fold (predict by averaging them).
        best_iterations: per-fold early-stopping iteration (LightGBM) or epoch (MLP).
        fold_smape: per-fold SMAPE (percent) on price scale.
        seconds: wall time of the whole CV.
    """

    oof_log: np.ndarray
    models: list
    best_iterations: list[int] = field(default_factory=list)
    fold_smape: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def oof_smape(self, y_log: np.ndarray) -> float:
        """OOF SMAPE in percent against true ``log1p(price)`` (n,)."""
        return smape(np.expm1(y_log), np.expm1(self.oof_log))
