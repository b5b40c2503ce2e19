"""Model gate: a retrain is promoted only if its blend is not worse than the blend that priced last.

Pure, Dagster-free. The *champion* is the ``price_blend`` frame (``ModelPredictions``: ``sample_id``,
``fold``, ``price``, ``pred_price``) of the promoted model, stored by ``serving_model`` as the
``promoted_blend`` asset, replaced only when a new model is promoted. A *candidate* blend is compared with it on the labeled rows both scored with the same
price (rows new to the candidate, or whose price changed, are left out, so a batch of new labels
doesn't count as a regression): it passes when its OOF SMAPE on those rows is at most the champion's
plus ``tolerance_smape`` points.

Why OOF SMAPE on common rows: the blend's OOF predictions are the only per-row estimate of served
error the pipeline has for both models (README, serving check: OOF ≈ served); comparing on the same
rows removes the effect of the row mix.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pricing_assets.lib.models.metrics import smape

#: Default tolerance in SMAPE points (0-200 scale) before a retrain counts as a regression.
DEFAULT_TOLERANCE_SMAPE = 1.0
#: Fewer common labeled rows than this and the comparison is not meaningful: the gate passes and says so.
DEFAULT_MIN_ROWS = 30
_COLUMNS = ["sample_id", "fold", "price", "pred_price"]


@dataclass(frozen=True)
class GateResult:
    """Outcome of :func:`compare_with_champion`.

    Attributes:
        passed: True when the candidate may be promoted.
        rows_compared: labeled rows scored by both with the same price.
        candidate_smape: candidate's OOF SMAPE on those rows (NaN when none).
        champion_smape: champion's OOF SMAPE on those rows (NaN when none).
        tolerance_smape: allowed degradation in SMAPE points.
        reason: one sentence for the UI.
    """

    passed: bool
    rows_compared: int
    candidate_smape: float
    champion_smape: float
    tolerance_smape: float
    reason: str

    def metadata(self) -> dict:
        """Plain values for asset-check metadata (NaN becomes None)."""
        f = lambda x: None if np.isnan(x) else round(float(x), 3)  # noqa: E731
        return {
            "rows_compared": self.rows_compared,
            "candidate_oof_smape": f(self.candidate_smape),
            "champion_oof_smape": f(self.champion_smape),
            "tolerance_smape": self.tolerance_smape,
            "reason": self.reason,
        }


def compare_with_champion(
    candidate: pd.DataFrame,
    champion: pd.DataFrame | None,
    tolerance_smape: float = DEFAULT_TOLERANCE_SMAPE,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> GateResult:
    """Compare a candidate blend with the champion on the labeled rows both saw.

    Args:
        candidate: ``ModelPredictions`` frame of the new blend (all rows; labeled rows have
            ``fold >= 0`` and OOF ``pred_price`` in USD).
        champion: the promoted blend's frame, or None before the first promotion.
        tolerance_smape: allowed increase of OOF SMAPE in points (>= 0).
        min_rows: fewest common labeled rows for a verdict.

    Returns:
        a :class:`GateResult`; passes when there is no champion, fewer than ``min_rows`` common
        rows, or ``candidate_smape <= champion_smape + tolerance_smape``.

    Raises:
        KeyError: if a frame lacks one of ``sample_id, fold, price, pred_price``.
        ValueError: if ``tolerance_smape`` < 0.
    """
    if tolerance_smape < 0:
        raise ValueError(f"tolerance_smape must be >= 0, got {tolerance_smape}")
    for name, df in (("candidate", candidate), ("champion", champion)):
        if df is not None and (missing := [c for c in _COLUMNS if c not in df.columns]):
            raise KeyError(f"{name} blend lacks column(s) {missing}")
    nan = float("nan")
    if champion is None:
        return GateResult(True, 0, nan, nan, tolerance_smape, "no promoted model yet: first promotion")
    cand = candidate.loc[candidate["fold"] >= 0, _COLUMNS]
    champ = champion.loc[champion["fold"] >= 0, _COLUMNS]
    both = cand.merge(champ, on="sample_id", suffixes=("_new", "_old"))
    both = both[np.isclose(both["price_new"].to_numpy(float), both["price_old"].to_numpy(float), rtol=1e-9, atol=0)]
    n = len(both)
    if n < min_rows:
        return GateResult(
            True,
            n,
            nan,
            nan,
            tolerance_smape,
            f"only {n} labeled rows in common with the promoted model (< {min_rows}): not compared",
        )
    y = both["price_new"].to_numpy(float)
    new, old = smape(y, both["pred_price_new"].to_numpy(float)), smape(y, both["pred_price_old"].to_numpy(float))
    passed = bool(new <= old + tolerance_smape)
    verdict = "promoted" if passed else "NOT promoted: the previous predictions stay"
    reason = f"OOF SMAPE {new:.3f} vs {old:.3f} for the promoted model on {n} common labeled rows (tolerance {tolerance_smape:g}): {verdict}"
    return GateResult(passed, n, new, old, tolerance_smape, reason)
