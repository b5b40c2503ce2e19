"""Live progress bars for the ``pricing`` CLI (rich), fed by :mod:`pricing_assets.lib.runtime.progress`.

One bar per step (image fetch, OCR, each embedding model, each model's CV folds) with items done /
total, items/s and time left. Shown only when standard output is a terminal: in CI, logs or a pipe
nothing is drawn and the CLI's plain lines are all that is printed.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pricing_assets.lib.runtime import progress


def _columns():
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        """``12.3 rows/s`` from rich's own moving speed estimate."""

        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} {task.fields.get('unit', 'items')}/s" if speed else "", style="cyan")

    return (
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        Rate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )


@contextmanager
def live_progress(enabled: bool = True, stream=None) -> Iterator[None]:
    """Draw progress bars for the reports made inside the ``with`` block.

    Args:
        enabled: False draws nothing (``--no-progress``).
        stream: where to draw (default ``sys.stdout``); nothing is drawn unless it is a terminal.
    """
    stream = stream or sys.stdout
    if not enabled or not stream.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import Progress

    tasks: dict[str, list] = {}  # step -> [task id, last done, total]
    with Progress(*_columns(), console=Console(file=stream), transient=False, refresh_per_second=4) as bars:

        def listener(step: str, done: int, total: int, unit: str) -> None:
            t = tasks.get(step)
            if t is None or (t[1] >= t[2] and done < total) or done < t[1]:  # new step, or the step started again
                t = tasks[step] = [bars.add_task(step, total=total, unit=unit), 0, total]
            t[1], t[2] = done, total
            bars.update(t[0], completed=done, total=total)

        with progress.listening(listener):
            yield
