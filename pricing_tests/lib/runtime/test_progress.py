"""Progress reports reach listeners, and the CLI's live bars draw them only on a terminal."""

import io

import pytest

from pricing_assets.lib.runtime import progress
from pricing_assets.progress_display import live_progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_reports_reach_listeners_only_while_listening():
    seen = []
    with progress.listening(lambda *a: seen.append(a)):
        progress.report("ocr_text", 3, 10, "rows")
    progress.report("ocr_text", 4, 10, "rows")
    assert seen == [("ocr_text", 3, 10, "rows")]


def test_a_broken_listener_is_not_hidden():
    def boom(*_):
        raise RuntimeError("display broke")

    with progress.listening(boom), pytest.raises(RuntimeError, match="display broke"):
        progress.report("x", 1, 2)


def test_fold_counter_counts_fold_lines_and_passes_them_on():
    seen, lines = [], []
    log = progress.fold_counter("lightgbm_model", 5, lines.append)
    with progress.listening(lambda *a: seen.append(a)):
        for f in range(5):
            log(f"lightgbm fold {f}: best_iter=[10] smape=50.00")
        log("something else")
    assert [s[1] for s in seen] == [1, 2, 3, 4, 5] and seen[-1] == ("lightgbm_model", 5, 5, "folds")
    assert len(lines) == 6


def test_bars_are_drawn_on_a_terminal():
    out = FakeTerminal()
    with live_progress(stream=out):
        for i in range(1, 101):
            progress.report("embeddings/minilm_l6", i, 100, "rows")
        progress.report("product_images", 7, 7, "links")
    text = out.getvalue()
    assert "embeddings/minilm_l6" in text and "100/100" in text and "rows" in text
    assert "product_images" in text and "7/7" in text and "links" in text


def test_nothing_is_drawn_when_not_a_terminal_or_disabled():
    for stream, enabled in ((io.StringIO(), True), (FakeTerminal(), False)):
        with live_progress(enabled=enabled, stream=stream):
            progress.report("ocr_text", 1, 2)
        assert stream.getvalue() == ""
