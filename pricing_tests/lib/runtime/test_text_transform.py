"""Per-row work over chunks of texts in worker processes (``lib.runtime.text_transform``): the same values,
in row order, as one call; and the TF-IDF ridge prediction that uses it."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.runtime.text_transform import map_text_chunks


def _texts(n: int) -> pd.Series:
    rng = np.random.default_rng(0)
    words = np.array(["salt", "sea", "pack", "of", "12", "oz", "organic", "tea", "green", "bag", "coffee", "bean"])
    return pd.Series([" ".join(rng.choice(words, size=rng.integers(1, 9))) for _ in range(n)], index=np.arange(n) * 3)


def _lengths(scale: float, texts: pd.Series) -> np.ndarray:
    return scale * texts.str.len().to_numpy(dtype=float)


@pytest.mark.parametrize("n_jobs", [1, 2, 3])
def test_map_text_chunks_equals_one_call_in_row_order(n_jobs):
    texts = _texts(301)  # a non-default index: rows come back in position order
    got = map_text_chunks(_lengths, texts, 2.0, n_jobs=n_jobs, min_texts=1)
    assert got.shape == (301,) and np.array_equal(got, 2.0 * texts.str.len().to_numpy())
    with pytest.raises(ValueError, match="n_jobs"):
        map_text_chunks(_lengths, texts, 2.0, n_jobs=0)


def test_tfidf_ridge_prediction_of_a_big_batch_in_workers_equals_the_pipelines_own(monkeypatch):
    """``predict_tfidf_ridge`` on a batch over the parallel threshold (lowered here) splits it over 2
    worker processes; the result equals each fold pipeline's own ``predict`` averaged in this process."""
    from pricing_assets.lib.models.tfidf_ridge import predict_tfidf_ridge, train_tfidf_ridge_cv
    from pricing_assets.lib.runtime import text_transform

    texts = _texts(240).reset_index(drop=True)
    y = np.log1p(1.0 + texts.str.count("o").to_numpy() + 3.0 * texts.str.contains("coffee").to_numpy())
    cv = train_tfidf_ridge_cv(texts, y, np.arange(240) % 3)
    want = np.mean([m.predict(texts) for m in cv.models], axis=0)
    calls = []
    real = text_transform.map_text_chunks
    monkeypatch.setattr(text_transform, "PARALLEL_MIN_TEXTS", 100)
    monkeypatch.setattr(
        text_transform, "map_text_chunks", lambda *a, **k: calls.append(len(a[1])) or real(*a, n_jobs=2, **k)
    )
    got = predict_tfidf_ridge(cv.models, texts)
    assert calls == [240] and got.shape == (240,) and np.allclose(got, want, rtol=0, atol=1e-12)
