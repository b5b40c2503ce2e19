"""The ``ModelPredictions`` frame every price model asset writes (:func:`predictions_frame`)."""

import numpy as np
import pandas as pd


def predictions_frame(fm: pd.DataFrame, oof_log: np.ndarray, test_log: np.ndarray) -> pd.DataFrame:
    """The ``ModelPredictions`` frame: OOF for labeled rows, ``test_log`` for unlabeled rows.

    Args:
        fm: feature matrix (sample_id, fold, price, ...), n rows.
        oof_log: (n_labeled,) OOF ``log1p`` predictions in the order of labeled rows of ``fm``.
        test_log: (n_unlabeled,) ``log1p`` predictions for the unlabeled rows.

    Returns:
        DataFrame sample_id, fold, price, pred_price (USD, clipped to >= 0.01).
    """
    lab = (fm["fold"] >= 0).to_numpy()
    pred = np.empty(len(fm), dtype=np.float64)
    pred[lab] = oof_log
    pred[~lab] = test_log
    return pd.DataFrame(
        {
            "sample_id": fm["sample_id"].to_numpy(),
            "fold": fm["fold"].to_numpy(),
            "price": fm["price"].to_numpy(),
            "pred_price": np.clip(np.expm1(pred), 0.01, None),
        }
    )
