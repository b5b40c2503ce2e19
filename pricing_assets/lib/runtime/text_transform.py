"""Per-row work on many texts (tokenising, then a fitted model) on every CPU the step may use.

Tokenising is pure Python (the GIL holds it to one core); a fitted vectorizer's ``transform`` and a
linear model's ``predict`` are row-independent, so contiguous chunks of the texts go to worker
processes (joblib's ``loky`` backend) and the per-row results come back in order: the same values as
one call in this process. Used where a big batch is scored with the fitted TF-IDF ridges
(``batch_predictions``), whose tokenising is the largest per-row cost of scoring (docs/deployment.md,
"Sizing"). A worker returns only its chunk's predictions, not the sparse matrix, so little travels
back.
"""

from collections.abc import Callable

import numpy as np
import pandas as pd

#: Below this many texts one in-process call is used: starting the worker processes and sending them
#: the fitted models is a fixed cost (docs/experiments.md, "Scale: the TF-IDF ridges of scoring in
#: worker processes"), too much for a small batch. The threshold itself is a judgement, not tuned.
PARALLEL_MIN_TEXTS = 20_000


def map_text_chunks(
    fn: Callable, texts: pd.Series, *args, n_jobs: int | None = None, min_texts: int | None = None
) -> np.ndarray:
    """``fn(*args, chunk)`` over ``n_jobs`` contiguous chunks of ``texts`` in worker processes, the
    results concatenated in row order.

    Args:
        fn: picklable module-level function ``fn(*args, texts: pd.Series) -> (len(texts), ...) ndarray``
            computing each row from that row's text alone.
        texts: (n,) str.
        *args: picklable inputs of ``fn`` (fitted models), sent to every worker.
        n_jobs: worker processes (default ``lib.runtime.cpu.default_threads()``); 1 runs in this process.
        min_texts: with fewer texts than this, one in-process call (default :data:`PARALLEL_MIN_TEXTS`).

    Returns:
        (n, ...) ndarray, equal to ``fn(*args, texts)``.

    Raises:
        ValueError: ``n_jobs`` < 1 (and whatever ``fn`` raises).
    """
    from pricing_assets.lib.runtime.cpu import default_threads

    n_jobs = default_threads() if n_jobs is None else int(n_jobs)
    if n_jobs < 1:
        raise ValueError(f"map_text_chunks: n_jobs must be >= 1, got {n_jobs}")
    min_texts = PARALLEL_MIN_TEXTS if min_texts is None else int(min_texts)
    texts = pd.Series(texts).reset_index(drop=True)
    if n_jobs == 1 or len(texts) < max(min_texts, 2):
        return np.asarray(fn(*args, texts))
    from joblib import Parallel, delayed

    bounds = np.linspace(0, len(texts), n_jobs + 1).astype(int)
    chunks = [texts.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    return np.concatenate(Parallel(n_jobs=len(chunks), backend="loky")(delayed(fn)(*args, c) for c in chunks))
