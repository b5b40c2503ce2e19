"""Tests of pricing_assets.lib.images.ocr: RapidOCR on real bundled photos, row handling, PaddleOCR errors."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pricing_assets.lib.images.fetch import FetchConfig, fetch_images
from pricing_assets.lib.images.ocr import (
    DEFAULT_DET_SIDE,
    OCR_COLUMNS,
    OcrBackend,
    OcrBackendUnavailable,
    OcrStageFailed,
    PaddleOcrBackend,
    RapidOcrBackend,
    check_error_share,
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


def test_rapidocr_cuda_settings_and_cpu_fallback(rapid):
    """On ``cuda`` RapidOCR asks onnxruntime for the CUDA provider; where the provider is missing
    (this CPU machine) it falls back to the CPU provider and reads the same lines."""
    import onnxruntime

    cpu = RapidOcrBackend.engine_params("cpu", num_threads=2)
    assert (
        cpu["EngineConfig.onnxruntime.use_cuda"] is False and cpu["EngineConfig.onnxruntime.intra_op_num_threads"] == 2
    )
    gpu1 = RapidOcrBackend.engine_params("cuda:1")
    assert (
        gpu1["EngineConfig.onnxruntime.use_cuda"] is True
        and gpu1["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] == 1
    )
    assert {k: gpu1[k] for k in RapidOcrBackend.PARAMS} == RapidOcrBackend.PARAMS  # same detector settings
    assert cpu["Det.limit_side_len"] == gpu1["Det.limit_side_len"] == DEFAULT_DET_SIDE
    assert RapidOcrBackend.engine_params("cpu", det_limit_side_len=320)["Det.limit_side_len"] == 320
    with pytest.raises(ValueError, match="det_limit_side_len"):
        RapidOcrBackend.engine_params("cpu", det_limit_side_len=8)
    for bad in ("gpu", "cuda:x", "auto"):
        with pytest.raises(ValueError, match="device must be"):
            RapidOcrBackend.engine_params(bad)
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA provider present: the fallback is not exercised on this machine")
    on_cuda = get_ocr_backend("rapidocr", device="cuda")
    assert on_cuda.params["EngineConfig.onnxruntime.use_cuda"] is True
    with Image.open(IMAGES / HERSHEYS) as im:
        assert [t for t, _ in on_cuda.read(im)] == [t for t, _ in rapid.read(im)]


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
    assert out["ocr_reason"].tolist() == [
        "",
        "image status 'missing'",
        "image_uri is empty",
        "image status 'http_error'",
    ]
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
# error share: a broken backend fails the stage, a few bad photos do not
# ------------------------------------------------------------------------------------------


class BrokenBackend:
    """Raises on every image, like an engine whose model session died."""

    name = "broken-engine"

    def __init__(self):
        self.calls = 0

    def read(self, image):
        self.calls += 1
        raise RuntimeError("onnxruntime session is dead")


def _batch(tmp_path: Path, n: int, bad: set[int] = frozenset()) -> pd.DataFrame:
    """n distinct photos (all status ok) in a fresh folder; indices in ``bad`` are 13 px wide
    (FakeBackend raises on those)."""
    d = tmp_path / f"batch{len(list(tmp_path.glob('batch*')))}"
    d.mkdir(parents=True)
    uris = [_png(d / f"img{i}.png", size=(13 if i in bad else 20 + i, 10)) for i in range(n)]
    return pd.DataFrame({"sample_id": [str(i) for i in range(n)], "status": ["ok"] * n, "image_uri": uris})


def test_broken_backend_fails_the_run_with_share_count_backend_and_reason(tmp_path):
    df = _batch(tmp_path, 10)
    backend = BrokenBackend()
    with pytest.raises(OcrStageFailed) as info:
        run_ocr(df, backend)
    err = info.value
    msg = str(err)
    assert "OCR failed on 10 of 10 distinct images (100%)" in msg
    assert "backend 'broken-engine'" in msg and "max_error_share=0.5" in msg
    assert "RuntimeError: onnxruntime session is dead" in msg
    assert (err.n_error, err.n_attempted, err.share, err.max_share) == (10, 10, 1.0, 0.5)
    assert err.reasons == ["RuntimeError: onnxruntime session is dead"]
    assert backend.calls == 10  # every row was tried; the rows are on the exception, not returned
    assert err.frame["ocr_status"].tolist() == ["error"] * 10


def test_one_bad_photo_in_ten_is_a_row_defect_not_a_stage_failure(tmp_path):
    out = run_ocr(_batch(tmp_path, 10, bad={4}), FakeBackend())
    assert out["ocr_status"].tolist() == ["ok"] * 4 + ["error"] + ["ok"] * 5
    assert out.loc[4, "ocr_reason"] == "RuntimeError: engine crashed on this one"
    assert (out["ocr_status"] == "error").sum() == 1


def test_share_limit_is_strictly_more_than_and_configurable(tmp_path):
    df = _batch(tmp_path, 10, bad={0, 1, 2, 3, 4})  # exactly half
    assert (run_ocr(df, FakeBackend())["ocr_status"] == "error").sum() == 5  # 0.5 is not > 0.5
    with pytest.raises(OcrStageFailed, match=r"5 of 10 distinct images \(50%\).*max_error_share=0.4"):
        run_ocr(df, FakeBackend(), max_error_share=0.4)
    # None switches the check off (the caller owns it); the rows come back
    out = run_ocr(_batch(tmp_path, 3), BrokenBackend(), max_error_share=None)
    assert out["ocr_status"].tolist() == ["error"] * 3


def test_minimum_images_before_the_share_is_judged(tmp_path):
    # one photo that fails alone: share 1.0 from a single data point -> row defect only
    out = run_ocr(_batch(tmp_path, 1), BrokenBackend())
    assert out["ocr_status"].tolist() == ["error"]
    # one of two failing is 0.5: tolerated
    assert (run_ocr(_batch(tmp_path, 2, bad={1}), FakeBackend())["ocr_status"] == "error").sum() == 1
    # two of two failing: broken backend
    with pytest.raises(OcrStageFailed, match="2 of 2 distinct images"):
        run_ocr(_batch(tmp_path, 2), BrokenBackend())
    # a higher minimum lets the 2-of-2 batch through
    assert len(run_ocr(_batch(tmp_path, 2), BrokenBackend(), min_images=3)) == 2


def test_rows_without_image_do_not_dilute_the_share(tmp_path):
    df = _batch(tmp_path, 3)
    df = pd.concat(
        [
            df,
            pd.DataFrame(
                {"sample_id": [f"m{i}" for i in range(20)], "status": ["missing"] * 20, "image_uri": [None] * 20}
            ),
        ],
        ignore_index=True,
    )
    with pytest.raises(OcrStageFailed, match="3 of 3 distinct images"):
        run_ocr(df, BrokenBackend())


def test_share_counts_distinct_photos_not_rows(tmp_path):
    # one bad photo shared by 4 rows + 3 good photos: 4 of 7 rows are errors, but 1 of 4 photos
    bad = _png(tmp_path / "bad.png", size=(13, 10))
    good = [_png(tmp_path / f"g{i}.png", size=(20 + i, 10)) for i in range(3)]
    df = pd.DataFrame({"sample_id": [str(i) for i in range(7)], "status": ["ok"] * 7, "image_uri": [bad] * 4 + good})
    out = run_ocr(df, FakeBackend())
    assert (out["ocr_status"] == "error").sum() == 4
    with pytest.raises(OcrStageFailed, match="4 of 7 rows with an image"):  # per-row count when no uris given
        check_error_share(out, 0.5, 2, backend="fake")


def test_check_error_share_reasons_and_argument_errors():
    out = pd.DataFrame(
        {
            "ocr_status": ["error"] * 9 + ["ok", "no_image"],
            "ocr_reason": ["OSError: a"] * 3
            + ["ValueError: b"] * 4
            + [f"KeyError: {i}" for i in range(2)]
            + ["", "image status 'missing'"],
        }
    )
    with pytest.raises(OcrStageFailed) as info:
        check_error_share(out, 0.5, 2, backend="x")
    assert info.value.reasons == ["ValueError: b", "OSError: a", "KeyError: 0", "KeyError: 1"]
    assert (info.value.n_error, info.value.n_attempted) == (9, 10)
    assert "4 distinct error reason(s)" in str(info.value)
    check_error_share(out, 0.9, 2)  # 0.9 share is not > 0.9
    with pytest.raises(ValueError, match="max_share"):
        check_error_share(out, 1.5, 2)
    with pytest.raises(ValueError, match="min_images"):
        check_error_share(out, 0.5, 0)
    with pytest.raises(ValueError, match="image_uri has 2 entries for 11 rows"):
        check_error_share(out, 0.5, 2, image_uri=["a", "b"])
    with pytest.raises(KeyError, match="ocr_reason"):
        check_error_share(out[["ocr_status"]], 0.5, 2)


def test_ocr_text_asset_fails_and_stores_nothing_when_the_backend_is_broken(tmp_path, monkeypatch):
    """Materialised through Dagster: the step fails with OcrStageFailed, no materialisation is
    recorded and no ocr_text file is written; a healthy backend on the same batch materialises."""
    import dagster as dg

    from pricing_assets.defs.images import ocr_text
    from pricing_assets.defs.resources import build_resources
    from pricing_assets.lib.images import ocr as ocr_lib
    from pricing_assets.partitions import CATALOG_BATCHES, catalog_batches
    from pricing_assets.resources import OcrResource
    from pricing_assets.settings import Settings

    frame = _batch(tmp_path / "photos", 6)

    @dg.asset(
        name="product_images", partitions_def=catalog_batches, group_name="images", io_manager_key="parquet_io_manager"
    )
    def product_images_stub() -> pd.DataFrame:
        return frame

    settings = Settings(
        home=str(tmp_path / "home"),
        storage=str(tmp_path / "storage"),
        s3_endpoint=None,
        device="cpu",
        image_mirror=None,
        images_offline=True,
        ocr_backend="rapidocr",
        inbox=str(tmp_path / "inbox"),
    )
    resources = build_resources(settings)
    monkeypatch.setitem(ocr_lib._BACKENDS, "broken", lambda device, det_side: BrokenBackend())
    monkeypatch.setitem(ocr_lib._BACKENDS, "fake", lambda device, det_side: FakeBackend())
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CATALOG_BATCHES, ["b1"])

    def run(backend: str):
        return dg.materialize(
            [product_images_stub, ocr_text],
            instance=instance,
            partition_key="b1",
            resources={**resources, "ocr": OcrResource(backend=backend)},
            raise_on_error=False,
        )

    def stored() -> list[str]:
        root = tmp_path / "storage"
        return sorted(
            str(p.relative_to(root)) for p in root.rglob("*") if "ocr_text" in p.relative_to(root).parts and p.is_file()
        )

    res = run("broken")
    assert not res.success
    done = {m.asset_key.to_user_string() for m in res.get_asset_materialization_events()}
    assert done == {"product_images"}
    errors = [e.event_specific_data.error.to_string() for e in res.all_events if e.is_step_failure]
    assert len(errors) == 1
    assert "OcrStageFailed" in errors[0] and "6 of 6 distinct images (100%)" in errors[0]
    assert "broken-engine" in errors[0] and "onnxruntime session is dead" in errors[0]
    assert stored() == []
    assert (tmp_path / "storage" / "assets" / "product_images" / "b1.parquet").is_file()  # the upstream was stored
    assert instance.get_latest_materialization_event(dg.AssetKey("ocr_text")) is None

    res = run("fake")  # same batch, healthy backend: stored with 6 ok rows
    assert res.success
    assert res.output_for_node("ocr_text")["ocr_status"].tolist() == ["ok"] * 6
    assert stored() == ["assets/ocr_text/b1.parquet"]


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
