"""Tests of pricing_assets.lib.ocr: RapidOCR on real bundled photos, row handling, PaddleOCR errors."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pricing_assets.lib.images import FetchConfig, fetch_images
from pricing_assets.lib.ocr import (
    OCR_COLUMNS,
    OcrBackend,
    OcrBackendUnavailable,
    PaddleOcrBackend,
    RapidOcrBackend,
    get_ocr_backend,
    run_ocr,
)

from pricing_tests.helpers import IMAGES

# Bundled photos with large printed words (checked by eye and with RapidOCR):
HERSHEYS = "617LyMgoMJL.jpg"  # sample 31920, HERSHEY'S Milk Chocolate Drops, 8 Ounce
BODYARMOR = "81lSX9agSyL.jpg"  # sample 71500, BODYARMOR LYTE 28 fl oz 12 pack
CAMPBELLS = "71T5J1upYnL.jpg"  # sample 35395, Campbell's Chicken and Stars Soup


@pytest.fixture(scope="module")
def rapid() -> RapidOcrBackend:
    return RapidOcrBackend()


class FakeBackend:
    """Returns scripted lines per image width; raises for width 13."""

    name = "fake"

    def __init__(self, lines=None):
        self.lines = lines if lines is not None else [("HELLO", 0.5), ("  ", 0.1), ("WORLD", 1.0)]
        self.calls = 0

    def read(self, image: Image.Image):
        self.calls += 1
        assert image.mode == "RGB"
        if image.width == 13:
            raise RuntimeError("engine crashed on this one")
        return list(self.lines)


def _png(path: Path, size=(20, 10)) -> str:
    Image.new("RGB", size, "white").save(path)
    return str(path)


# ------------------------------------------------------------------------------------------
# RapidOCR on real photos
# ------------------------------------------------------------------------------------------


def test_rapidocr_reads_known_words_on_real_photos(rapid, tmp_path):
    """Photos go through the real image stage (offline, bundled folder as mirror) then OCR."""
    rows = pd.DataFrame(
        {
            "sample_id": ["31920", "71500", "35395", "1"],
            "image_link": [
                f"https://m.media-amazon.com/images/I/{HERSHEYS}",
                f"https://m.media-amazon.com/images/I/{BODYARMOR}",
                f"https://m.media-amazon.com/images/I/{CAMPBELLS}",
                "https://m.media-amazon.com/images/I/not-bundled.jpg",
            ],
        }
    )
    images = fetch_images(rows, FetchConfig(store_base=str(tmp_path / "store"), mirror_dir=str(IMAGES), offline=True))
    assert images["status"].tolist() == ["ok", "ok", "ok", "missing"]

    out = run_ocr(images, rapid)

    assert list(out.columns) == OCR_COLUMNS and len(out) == 4
    assert out["ocr_status"].tolist() == ["ok", "ok", "ok", "no_image"]
    texts = out["ocr_text"].str.upper().tolist()
    assert "HERSHEY" in texts[0] and "DROPS" in texts[0] and "MILK CHOCOLATE" in texts[0]
    assert "BODYARMOR" in texts[1] and "FL OZ" in texts[1]
    assert "CONDENSED SOUP" in texts[2]
    assert (out.loc[:2, "n_lines"] >= 5).all()
    assert out.loc[:2, "mean_conf"].between(0.5, 1.0).all()
    assert (out.loc[:2, "seconds"] > 0).all()
    assert out.loc[0, "n_lines"] == len(out.loc[0, "ocr_text"].split(" | "))


def test_rapidocr_blank_image_gives_no_lines(rapid):
    assert rapid.read(Image.new("RGB", (200, 120), "white")) == []


def test_rapidocr_read_returns_text_conf_pairs(rapid):
    with Image.open(IMAGES / HERSHEYS) as im:
        lines = rapid.read(im)
    assert lines and all(isinstance(t, str) and 0.0 <= c <= 1.0 for t, c in lines)
    assert isinstance(rapid, OcrBackend)


# ------------------------------------------------------------------------------------------
# run_ocr row handling (fake backend: fast, deterministic)
# ------------------------------------------------------------------------------------------


def test_rows_without_image_are_kept_as_no_image(tmp_path):
    good = _png(tmp_path / "a.png")
    df = pd.DataFrame(
        {
            "sample_id": [10, 11, 12, 13],
            "status": ["ok", "missing", "ok", "http_error"],
            "image_uri": [good, None, None, good],  # status wins over a present uri
        }
    )
    backend = FakeBackend()
    out = run_ocr(df, backend)

    assert out["sample_id"].tolist() == ["10", "11", "12", "13"]
    assert out["ocr_status"].tolist() == ["ok", "no_image", "no_image", "no_image"]
    assert out["ocr_reason"].tolist() == ["", "image status 'missing'", "image_uri is empty", "image status 'http_error'"]
    assert out.loc[1:, "n_lines"].tolist() == [0, 0, 0]
    assert out.loc[1:, "ocr_text"].tolist() == ["", "", ""]
    assert out.loc[1:, "mean_conf"].isna().all()
    assert backend.calls == 1


def test_text_join_line_count_and_mean_confidence(tmp_path):
    df = pd.DataFrame({"sample_id": ["1"], "status": ["ok"], "image_uri": [_png(tmp_path / "a.png")]})
    out = run_ocr(df, FakeBackend())
    row = out.iloc[0]
    assert row["ocr_text"] == "HELLO | WORLD"  # blank line dropped
    assert row["n_lines"] == 2
    assert row["mean_conf"] == pytest.approx(0.75)
    assert out["n_lines"].dtype == "int64" and out["mean_conf"].dtype == "float64"


def test_image_with_no_text_is_ok_with_zero_lines(tmp_path):
    df = pd.DataFrame({"sample_id": ["1"], "status": ["ok"], "image_uri": [_png(tmp_path / "a.png")]})
    row = run_ocr(df, FakeBackend(lines=[])).iloc[0]
    assert (row["ocr_status"], row["ocr_text"], row["n_lines"]) == ("ok", "", 0)
    assert math.isnan(row["mean_conf"])


def test_one_failing_image_does_not_stop_the_batch(tmp_path):
    df = pd.DataFrame(
        {
            "sample_id": ["1", "2", "3", "4"],
            "status": ["ok"] * 4,
            "image_uri": [
                _png(tmp_path / "a.png"),
                _png(tmp_path / "boom.png", size=(13, 10)),  # FakeBackend raises on width 13
                str(tmp_path / "does-not-exist.jpg"),
                _png(tmp_path / "d.png", size=(30, 10)),
            ],
        }
    )
    calls = []
    out = run_ocr(df, FakeBackend(), progress=lambda d, t: calls.append((d, t)))

    assert out["ocr_status"].tolist() == ["ok", "error", "error", "ok"]
    assert out.loc[1, "ocr_reason"] == "RuntimeError: engine crashed on this one"
    assert out.loc[2, "ocr_reason"].startswith("FileNotFoundError")
    assert out.loc[1, "n_lines"] == 0 and out.loc[1, "ocr_text"] == ""
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_repeated_image_uri_is_read_once(tmp_path):
    uri = _png(tmp_path / "a.png")
    df = pd.DataFrame({"sample_id": ["1", "2"], "status": ["ok", "ok"], "image_uri": [uri, uri]})
    backend = FakeBackend()
    out = run_ocr(df, backend)
    assert backend.calls == 1
    assert out["ocr_text"].tolist() == ["HELLO | WORLD"] * 2
    assert out.loc[1, "seconds"] == 0.0


def test_backend_unavailable_is_not_swallowed(tmp_path):
    class Gone:
        name = "gone"

        def read(self, image):
            raise OcrBackendUnavailable("models vanished")

    df = pd.DataFrame({"sample_id": ["1"], "status": ["ok"], "image_uri": [_png(tmp_path / "a.png")]})
    with pytest.raises(OcrBackendUnavailable, match="vanished"):
        run_ocr(df, Gone())


def test_missing_columns_raise():
    with pytest.raises(KeyError, match="image_uri"):
        run_ocr(pd.DataFrame({"sample_id": ["1"], "status": ["ok"]}), FakeBackend())


def test_output_satisfies_ocr_text_contract(tmp_path):
    from data_contracts.images import OcrText

    df = pd.DataFrame(
        {"sample_id": ["1", "2"], "status": ["ok", "missing"], "image_uri": [_png(tmp_path / "a.png"), None]}
    )
    out = OcrText.validate(run_ocr(df, FakeBackend()))  # raises SchemaError on a contract breach
    assert out["sample_id"].tolist() == ["1", "2"]
    assert out["ocr_status"].tolist() == ["ok", "no_image"]


# ------------------------------------------------------------------------------------------
# backend selection and the optional PaddleOCR backend
# ------------------------------------------------------------------------------------------


def test_get_ocr_backend_names(rapid):
    assert isinstance(get_ocr_backend("RapidOCR"), RapidOcrBackend)
    with pytest.raises(ValueError, match="unknown OCR backend 'tesseract'"):
        get_ocr_backend("tesseract")


def test_paddle_not_installed_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "paddleocr", None)  # makes `import paddleocr` raise ImportError
    with pytest.raises(OcrBackendUnavailable) as info:
        get_ocr_backend("paddleocr")
    msg = str(info.value)
    assert "'paddleocr' package is not installed" in msg and "pip install paddleocr paddlepaddle" in msg


def _fake_paddleocr(monkeypatch, fail_build: bool = False) -> types.SimpleNamespace:
    seen = types.SimpleNamespace(kwargs=None, inputs=[])

    class PaddleOCR:
        def __init__(self, **kwargs):
            if fail_build:
                raise RuntimeError("model hoster unreachable")
            seen.kwargs = kwargs

        def predict(self, arr):
            seen.inputs.append(arr)
            return [
                {"rec_texts": ["NET WT 8 OZ", "DROPS"], "rec_scores": [0.9, 1.2]},
                {"rec_texts": ["extra"], "rec_scores": []},
            ]

    monkeypatch.setitem(sys.modules, "paddleocr", types.SimpleNamespace(PaddleOCR=PaddleOCR))
    return seen


def _model_dirs(tmp_path: Path) -> tuple[Path, Path]:
    det, rec = tmp_path / "det", tmp_path / "rec"
    for d in (det, rec):
        d.mkdir()
        (d / "inference.json").write_text("{}")
    return det, rec


def test_paddle_backend_parses_predict_results(monkeypatch, tmp_path):
    seen = _fake_paddleocr(monkeypatch)
    det, rec = _model_dirs(tmp_path)
    backend = PaddleOcrBackend(det_model_dir=det, rec_model_dir=rec)

    img = Image.new("RGB", (8, 6), (255, 0, 0))
    lines = backend.read(img)

    assert lines[:2] == [("NET WT 8 OZ", 0.9), ("DROPS", 1.0)]  # score clipped to [0, 1]
    assert lines[2] == ("extra", 0.0)  # missing score -> 0.0, never NaN
    assert seen.kwargs["text_detection_model_dir"] == str(det)
    assert seen.kwargs["use_textline_orientation"] is False
    arr = seen.inputs[0]
    assert arr.shape == (6, 8, 3) and arr.dtype == np.uint8
    assert tuple(arr[0, 0]) == (0, 0, 255)  # BGR order
    assert backend.name == "paddleocr:PP-OCRv5_mobile_det+PP-OCRv5_mobile_rec"

    df = pd.DataFrame({"sample_id": ["1"], "status": ["ok"], "image_uri": [_png(tmp_path / "a.png")]})
    assert run_ocr(df, backend).loc[0, "ocr_text"] == "NET WT 8 OZ | DROPS | extra"


def test_paddle_backend_without_models_gives_clear_error(monkeypatch, tmp_path):
    _fake_paddleocr(monkeypatch)
    monkeypatch.setenv("PADDLE_PDX_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(OcrBackendUnavailable) as info:
        PaddleOcrBackend()
    msg = str(info.value)
    assert "missing detection model at" in msg and "recognition model" in msg
    assert str(tmp_path / "empty-cache" / "official_models" / "PP-OCRv5_mobile_det") in msg


def test_paddle_backend_build_failure_is_unavailable(monkeypatch, tmp_path):
    _fake_paddleocr(monkeypatch, fail_build=True)
    det, rec = _model_dirs(tmp_path)
    with pytest.raises(OcrBackendUnavailable, match="model hoster unreachable"):
        PaddleOcrBackend(det_model_dir=det, rec_model_dir=rec)
