"""Progress of long loops, reported once and shown wherever someone is watching.

Pure, Dagster-free. A long loop (image fetch, OCR, embedding, CV folds) calls :func:`report` with
its step name and counts; the asset's own callback also writes the Dagster event log. Listeners
registered with :func:`listening` (the ``pricing`` CLI's live progress bars, in the same process as
the in-process executor) receive every report. With no listener a report costs one empty loop.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: ``listener(step, done, total, unit)``: step name (e.g. ``"embeddings/text/minilm_l6"``), items
#: done and in total (int), and what an item is (``"rows"``, ``"images"``, ``"links"``, ``"folds"``).
Listener = Callable[[str, int, int, str], None]

_LISTENERS: list[Listener] = []


def report(step: str, done: int, total: int, unit: str = "rows") -> None:
    """Tell every listener that ``step`` has done ``done`` of ``total`` ``unit``.

    Raises:
        whatever a listener raises (a broken display is a bug to see, not to hide).
    """
    for fn in list(_LISTENERS):
        fn(step, done, total, unit)


@contextmanager
def listening(fn: Listener) -> Iterator[None]:
    """Register ``fn`` for the duration of the ``with`` block."""
    _LISTENERS.append(fn)
    try:
        yield
    finally:
        _LISTENERS.remove(fn)


def fold_counter(step: str, total: int, log: Callable[[str], None] | None = None) -> Callable[[str], None]:
    """A ``log`` callback for the CV trainers (one line per finished fold) that also reports
    ``done/total`` folds of ``step``; lines are passed on to ``log`` (e.g. ``context.log.info``)."""
    done = [0]

    def _log(line: str) -> None:
        if log is not None:
            log(line)
        if " fold " in f" {line} ":
            done[0] += 1
            report(step, min(done[0], total), total, "folds")

    return _log
