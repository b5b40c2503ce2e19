"""The review list: served prices an analyst should look at before using them.

A price needs review when its interval is wide (``price_high / price_low`` above a ratio: the models
disagree or products like it were mispriced out of fold) or when its best labeled comparable is far
(the top similarity below a floor: nothing like it was ever labeled). Each flagged row carries its
reasons. How many products the default thresholds flag on the bundled demo: ``docs/operations.md``,
"Explaining and reviewing prices"; both are settings of ``pricing predictions --needs-review``.
"""

import numpy as np
import pandas as pd

#: An interval wider than this ratio (``price_high / price_low``) needs review.
DEFAULT_MAX_WIDTH_RATIO = 20.0
#: A best comparable less similar than this (cosine / TF-IDF similarity in [0, 1]) needs review.
DEFAULT_MIN_SIMILARITY = 0.55

#: Columns of the review list.
REVIEW_COLUMNS = ("sample_id", "price", "price_low", "price_high", "width_ratio", "best_similarity", "reason")


def check_thresholds(max_width_ratio: float, min_similarity: float) -> None:
    """ValueError naming the threshold when ``max_width_ratio <= 1`` or ``min_similarity`` is outside [0, 1]."""
    if not max_width_ratio > 1:
        raise ValueError(f"max width ratio must be > 1 (price_high / price_low), got {max_width_ratio:g}")
    if not 0 <= min_similarity <= 1:
        raise ValueError(f"min similarity must be in [0, 1], got {min_similarity:g}")


def needs_review(
    predictions: pd.DataFrame,
    comparables: pd.DataFrame,
    max_width_ratio: float = DEFAULT_MAX_WIDTH_RATIO,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> pd.DataFrame:
    """The served prices that need review, with the reason(s) of each.

    Args:
        predictions: ``price_predictions`` rows: ``sample_id``, ``price`` (USD), ``price_low`` /
            ``price_high`` (USD; NaN or absent: no interval, never flagged for width).
        comparables: ``price_explanations`` rows (``sample_id``, ``rank``, ``similarity``) of those
            products; a product without any is flagged ("no comparables").
        max_width_ratio: flag ``price_high / price_low`` above it (> 1).
        min_similarity: flag a rank-1 similarity below it (in [0, 1]).

    Returns:
        DataFrame with :data:`REVIEW_COLUMNS`, the flagged rows only, widest interval first; ``reason``
        joins the reasons with ``"; "`` (e.g. ``interval x27.3 wide (> x20)``).

    Raises:
        ValueError: on a threshold out of range.
    """
    check_thresholds(max_width_ratio, min_similarity)
    p = predictions.assign(sample_id=predictions["sample_id"].astype(str)).reset_index(drop=True)
    low = p["price_low"] if "price_low" in p else pd.Series(np.nan, index=p.index)
    high = p["price_high"] if "price_high" in p else pd.Series(np.nan, index=p.index)
    width = (high / low).astype(float)
    top = comparables.assign(sample_id=comparables["sample_id"].astype(str))
    best = top.loc[top["rank"] == 1].drop_duplicates("sample_id").set_index("sample_id")["similarity"]
    sim = p["sample_id"].map(best).astype(float)
    wide = width > max_width_ratio
    far = sim < min_similarity
    none = sim.isna()
    reasons = [
        "; ".join(
            r
            for r, on in (
                (f"interval x{w:.1f} wide (> x{max_width_ratio:g})", is_wide),
                (f"best comparable similarity {s:.2f} (< {min_similarity:g})", is_far),
                ("no comparables", is_none),
            )
            if on
        )
        for w, s, is_wide, is_far, is_none in zip(width, sim, wide, far, none)
    ]
    out = pd.DataFrame(
        {
            "sample_id": p["sample_id"],
            "price": p["price"].astype(float),
            "price_low": low.astype(float),
            "price_high": high.astype(float),
            "width_ratio": width,
            "best_similarity": sim,
            "reason": reasons,
        }
    )
    out = out[wide | far | none].sort_values("width_ratio", ascending=False, kind="stable", na_position="last")
    return out[list(REVIEW_COLUMNS)].reset_index(drop=True)
