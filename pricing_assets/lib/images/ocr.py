"""OCR on product photos: pluggable backends and a row-wise runner that never drops a row.

Backends follow :class:`OcrBackend` (``name`` + ``read(image) -> [(text, confidence)]``):

- :class:`RapidOcrBackend` (default): ``rapidocr==3.10.0`` on onnxruntime with the PP-OCR ONNX
  det/rec models shipped inside the wheel, so it works offline. Settings from
  ``shared/notes/stack.md``: no angle classifier, detector input limited by default to
  ``DEFAULT_DET_SIDE`` px on the longest side (speed: docs/experiments.md, "OCR detector size"). Language, OCR version and model type are left at
  the defaults on purpose: changing them makes RapidOCR download other models.
- :class:`PaddleOcrBackend` (optional): PaddleOCR 3.x pipeline when the ``paddleocr`` package and
  its det/rec models are on disk; otherwise :class:`OcrBackendUnavailable` says what is missing.

:func:`run_ocr` reads the ``image_uri`` of every ``status == "ok"`` row of the image stage
(:func:`pricing_assets.lib.images.fetch.fetch_images`) and returns one row per input row. One image
that fails marks its row ``error``; when more than ``max_error_share`` (default 0.5) of the images
tried fail, :func:`check_error_share` raises :class:`OcrStageFailed` instead, so a broken backend
fails the stage rather than storing a batch of error rows.
Parsing quantities out of the OCR text lives in ``pricing_assets.lib.features.listing``.
"""

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd
from PIL import Image

from pricing_assets.lib.images.decode import open_image_rgb

#: Output columns of :func:`run_ocr`, in order.
OCR_COLUMNS = ["sample_id", "ocr_status", "ocr_text", "n_lines", "mean_conf", "seconds", "ocr_reason"]
#: Separator between text lines in ``ocr_text``.
LINE_SEPARATOR = " | "


#: Default of :func:`check_error_share`: the stage fails when *more than* this share of the
#: images it tried to read ended ``error``. Photos reaching OCR were fully decoded by the image
#: stage already, so a row error means the engine or the store failed on it; a majority failing
#: is a broken backend, not bad data.
DEFAULT_MAX_ERROR_SHARE = 0.5
#: Default of :func:`check_error_share`: the share is only judged once at least this many distinct
#: images were tried. 2, because a single unreadable photo in a one-image batch (share 1.0 from one
#: data point) must not fail the partition, while 2 of 2 failing already is the broken-backend
#: pattern. One bad photo out of 2 (share 0.5) passes with the default share (strictly more than).
DEFAULT_MIN_IMAGES = 2


class OcrBackendUnavailable(RuntimeError):
    """The requested OCR backend cannot run here (package or model files missing)."""


class OcrStageFailed(RuntimeError):
    """Too many images failed OCR for the batch to count as read (see :func:`check_error_share`).

    Attributes:
        backend: backend name (``OcrBackend.name``).
        n_error: distinct images whose OCR raised.
        n_attempted: distinct images OCR tried to read.
        share: ``n_error / n_attempted``.
        max_share: the limit that was exceeded.
        reasons: up to 5 distinct ``"<ExceptionType>: <message>"`` strings, most frequent first.
        frame: the full :func:`run_ocr` output (for inspection; it was not stored).
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        n_error: int,
        n_attempted: int,
        max_share: float,
        reasons: list[str],
        frame: pd.DataFrame | None = None,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.n_error = n_error
        self.n_attempted = n_attempted
        self.share = n_error / n_attempted if n_attempted else 0.0
        self.max_share = max_share
        self.reasons = reasons
        self.frame = frame


@runtime_checkable
class OcrBackend(Protocol):
    """Reads text lines from one image.

    ``name`` identifies the backend and its settings (use it in cache keys).
    ``read(image)`` takes an RGB ``PIL.Image.Image`` and returns ``[(text, confidence)]`` in
    reading order as the engine reports it, confidence a float in [0, 1]; an image without text
    gives ``[]``.
    """

    name: str

    def read(self, image: Image.Image) -> list[tuple[str, float]]:
        """Text lines of ``image`` (RGB PIL image) in reading order, each ``(text, confidence 0-1)``."""
        ...


def _clip01(x: Any) -> float:
    v = float(x)
    if math.isnan(v):
        return 0.0
    return min(1.0, max(0.0, v))


#: RapidOCR's detector input size by default (longest side, px; stack.md's tested value): the cost
#: control of ``OcrResource.det_limit_side_len`` (speed and text per size: ``benchmarks/bench_ocr.py``,
#: docs/experiments.md, "OCR detector size").
DEFAULT_DET_SIDE = 480


class RapidOcrBackend:
    """RapidOCR 3.10.0 (PP-OCR det + rec ONNX models from the wheel, run by onnxruntime).

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (resolved, e.g. ``DeviceResource.resolve()``). On
            CUDA, RapidOCR's onnxruntime sessions ask for the CUDAExecutionProvider (the ``gpu`` extra:
            ``onnxruntime-gpu``); where that provider is missing RapidOCR logs a warning and runs on the
            CPU provider, with the same outputs.
        num_threads: onnxruntime intra-op threads on CPU (default ``lib.runtime.cpu.default_threads()``).

    Raises:
        OcrBackendUnavailable: if ``rapidocr`` or ``onnxruntime`` cannot be imported.
        ValueError: on a device that is not cpu / cuda / cuda:N (``lib.embeddings.devices.cuda_index``).
    """

    #: Engine settings, from shared/notes/stack.md (tested offline on this machine kind).
    PARAMS = {"Global.use_cls": False, "Det.limit_type": "max"}

    def __init__(
        self, device: str = "cpu", num_threads: int | None = None, det_limit_side_len: int = DEFAULT_DET_SIDE
    ) -> None:
        try:
            import onnxruntime  # noqa: F401 - fail early with a clear message
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise OcrBackendUnavailable(
                f"RapidOCR backend needs 'rapidocr==3.10.0' and 'onnxruntime' ({exc}); "
                "install with: pip install -e '.[cpu]' (or '.[gpu]' on CUDA nodes)"
            ) from exc
        self.params = self.engine_params(device, num_threads, det_limit_side_len)
        self.name = f"rapidocr-3.10.0:ppocr-det{int(det_limit_side_len)}-nocls"
        self._engine = RapidOCR(params=dict(self.params))

    @classmethod
    def engine_params(
        cls, device: str = "cpu", num_threads: int | None = None, det_limit_side_len: int = DEFAULT_DET_SIDE
    ) -> dict:
        """RapidOCR ``params`` for ``device``: :data:`PARAMS` with the detector's longest input side
        (px) and the onnxruntime provider settings (``EngineConfig.onnxruntime.use_cuda`` /
        ``cuda_ep_cfg.device_id``, intra-op threads).

        Raises:
            ValueError: on a device that is not cpu / cuda / cuda:N, or a side outside 32..4096 px.
        """
        from pricing_assets.lib.embeddings.devices import cuda_index
        from pricing_assets.lib.runtime.cpu import default_threads

        index = cuda_index(device)
        if not 32 <= int(det_limit_side_len) <= 4096:
            raise ValueError(f"RapidOcrBackend: det_limit_side_len must be 32..4096 px, got {det_limit_side_len}")
        return {
            **cls.PARAMS,
            "Det.limit_side_len": int(det_limit_side_len),
            "EngineConfig.onnxruntime.intra_op_num_threads": int(num_threads or default_threads()),
            "EngineConfig.onnxruntime.use_cuda": index is not None,
            "EngineConfig.onnxruntime.cuda_ep_cfg.device_id": index or 0,
        }

    def read(self, image: Image.Image) -> list[tuple[str, float]]:
        """OCR one image.

        Args:
            image: PIL image (converted to RGB here). Passed to RapidOCR as a PIL image, which it
                converts RGB -> BGR itself (a bare ``np.asarray`` would be taken as BGR already).

        Returns:
            ``[(text, confidence in [0, 1])]``, ``[]`` when nothing is detected.
        """
        res = self._engine(image.convert("RGB"))
        txts = getattr(res, "txts", None)
        if not txts:
            return []
        scores = getattr(res, "scores", None) or [float("nan")] * len(txts)
        return [(str(t), _clip01(s)) for t, s in zip(txts, scores)]


def _paddlex_cache_home() -> Path:
    # PaddleX 3.x keeps downloaded models under $PADDLE_PDX_CACHE_HOME/official_models,
    # default ~/.paddlex/official_models (paddlex/utils/cache.py).
    return Path(os.environ.get("PADDLE_PDX_CACHE_HOME", Path.home() / ".paddlex")) / "official_models"


class PaddleOcrBackend:
    """PaddleOCR 3.x pipeline (text detection + recognition, no document preprocessing).

    Args:
        det_model_name: PaddleOCR detection model name.
        rec_model_name: PaddleOCR recognition model name.
        det_model_dir: folder of the detection model; default ``<PaddleX cache>/official_models/
            <det_model_name>``.
        rec_model_dir: folder of the recognition model; same default rule.
        **paddle_kwargs: passed on to ``paddleocr.PaddleOCR`` (e.g. ``device="cpu"``).

    Raises:
        OcrBackendUnavailable: ``paddleocr`` is not importable, a model folder is missing or empty
            (PaddleOCR would try to download it, which fails offline), or the pipeline fails to
            build. The message says what is missing and how to install it.
    """

    INSTALL_HINT = (
        "install with: pip install paddleocr paddlepaddle  (about 1.4 GB), then fetch the models "
        "once on a machine with internet access (e.g. run PaddleOCR once) and copy "
        "~/.paddlex/official_models here, or pass det_model_dir/rec_model_dir"
    )

    def __init__(
        self,
        det_model_name: str = "PP-OCRv5_mobile_det",
        rec_model_name: str = "PP-OCRv5_mobile_rec",
        det_model_dir: str | os.PathLike | None = None,
        rec_model_dir: str | os.PathLike | None = None,
        **paddle_kwargs: Any,
    ) -> None:
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")  # no network probe
        try:
            import paddleocr
        except ImportError as exc:
            raise OcrBackendUnavailable(
                f"PaddleOCR backend unavailable: the 'paddleocr' package is not installed ({exc}); " + self.INSTALL_HINT
            ) from exc

        dirs = {
            "detection": Path(det_model_dir) if det_model_dir else _paddlex_cache_home() / det_model_name,
            "recognition": Path(rec_model_dir) if rec_model_dir else _paddlex_cache_home() / rec_model_name,
        }
        missing = [f"{kind} model at {d}" for kind, d in dirs.items() if not d.is_dir() or not any(d.iterdir())]
        if missing:
            raise OcrBackendUnavailable(
                "PaddleOCR backend unavailable: missing " + "; ".join(missing) + ". " + self.INSTALL_HINT
            )
        try:
            self._ocr = paddleocr.PaddleOCR(
                text_detection_model_name=det_model_name,
                text_detection_model_dir=str(dirs["detection"]),
                text_recognition_model_name=rec_model_name,
                text_recognition_model_dir=str(dirs["recognition"]),
                use_doc_orientation_classify=False,
                use_doc_unwarping=False,
                use_textline_orientation=False,
                **paddle_kwargs,
            )
        except Exception as exc:  # noqa: BLE001 - any build failure means "cannot run here"
            raise OcrBackendUnavailable(
                f"PaddleOCR backend unavailable: building the pipeline failed "
                f"({type(exc).__name__}: {exc}). " + self.INSTALL_HINT
            ) from exc
        self.name = f"paddleocr:{det_model_name}+{rec_model_name}"

    def read(self, image: Image.Image) -> list[tuple[str, float]]:
        """OCR one image.

        Args:
            image: PIL image; sent to ``PaddleOCR.predict`` as a (h, w, 3) uint8 BGR array
                (PaddleX's convention for array input, as it reads files with OpenCV).

        Returns:
            ``[(text, confidence in [0, 1])]`` from each result's ``rec_texts``/``rec_scores``.
        """
        import numpy as np

        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        lines: list[tuple[str, float]] = []
        for res in self._ocr.predict(bgr):
            texts = list(res.get("rec_texts") or [])
            scores = list(res.get("rec_scores") or [])
            scores += [float("nan")] * (len(texts) - len(scores))
            lines.extend((str(t), _clip01(s)) for t, s in zip(texts, scores))
        return lines


#: Backend name -> factory ``(device, det_limit_side_len) -> OcrBackend``; PaddleOCR keeps its own
#: device choice and detector size.
_BACKENDS: dict[str, Callable[[str, int], OcrBackend]] = {
    "rapidocr": lambda device, det_side: RapidOcrBackend(device=device, det_limit_side_len=det_side),
    "paddleocr": lambda device, det_side: PaddleOcrBackend(),
}


def get_ocr_backend(name: str, device: str = "cpu", det_limit_side_len: int = DEFAULT_DET_SIDE) -> OcrBackend:
    """Build an OCR backend by name.

    Args:
        name: ``"rapidocr"`` or ``"paddleocr"`` (case-insensitive).
        device: resolved device (``"cpu"``, ``"cuda"``, ``"cuda:N"``); RapidOCR runs its ONNX models
            on CUDA there (:class:`RapidOcrBackend`); PaddleOCR keeps its own device choice.
        det_limit_side_len: RapidOCR's detector input size, longest side in px (cost control).

    Returns:
        A ready :class:`OcrBackend`.

    Raises:
        ValueError: unknown name (the message lists the known ones).
        OcrBackendUnavailable: the backend cannot run here.
    """
    key = str(name).strip().lower()
    if key not in _BACKENDS:
        raise ValueError(f"unknown OCR backend {name!r}; choose one of {sorted(_BACKENDS)}")
    return _BACKENDS[key](device, det_limit_side_len)


def check_error_share(
    out: pd.DataFrame,
    max_share: float = DEFAULT_MAX_ERROR_SHARE,
    min_images: int = DEFAULT_MIN_IMAGES,
    *,
    backend: str = "?",
    image_uri: Any = None,
) -> None:
    """Raise when too many of the images OCR tried to read failed (a broken backend or store).

    Counted over images OCR tried, i.e. rows with ``ocr_status`` ``"ok"`` or ``"error"``
    (``no_image`` / ``disabled`` rows are not attempts). With ``image_uri`` the count is per
    distinct image (a photo shared by several rows counts once), else per row.

    The check fails when ``n_attempted >= min_images`` and ``n_error / n_attempted > max_share``.

    Args:
        out: a :func:`run_ocr` frame (``ocr_status``, ``ocr_reason``).
        max_share: float in [0, 1]; the largest tolerated share of failed images.
        min_images: int >= 1; below this many attempted images nothing is judged.
        backend: backend name for the message.
        image_uri: optional sequence aligned with ``out`` (the ``image_uri`` of each input row).

    Raises:
        OcrStageFailed: the share is exceeded. The message names the count, the share, the limit,
            the backend and the first (most frequent) distinct error reasons.
        ValueError: ``max_share`` not in [0, 1], ``min_images < 1``, or ``image_uri`` of another length.
        KeyError: ``out`` lacks ``ocr_status`` or ``ocr_reason``.
    """
    if not 0.0 <= float(max_share) <= 1.0:
        raise ValueError(f"max_share must be in [0, 1], got {max_share!r}")
    if int(min_images) < 1:
        raise ValueError(f"min_images must be >= 1, got {min_images!r}")
    missing = [c for c in ("ocr_status", "ocr_reason") if c not in out.columns]
    if missing:
        raise KeyError(f"check_error_share: OCR frame lacks column(s) {missing}; has {list(out.columns)}")
    tried = out[out["ocr_status"].isin(["ok", "error"])]
    if image_uri is not None:
        uri_list = list(image_uri)
        if len(uri_list) != len(out):
            raise ValueError(f"image_uri has {len(uri_list)} entries for {len(out)} rows")
        uris = pd.Series(uri_list, index=out.index, dtype=object)
        per_image = tried.assign(_img=uris.loc[tried.index]).groupby("_img", sort=False)
        # an image counts as failed when its read raised (repeats of a failed image are re-read)
        failed_img = per_image["ocr_status"].agg(lambda s: bool((s == "error").any()))
        n_attempted, n_error, unit = len(failed_img), int(failed_img.sum()), "distinct images"
    else:
        n_attempted, n_error, unit = len(tried), int((tried["ocr_status"] == "error").sum()), "rows with an image"
    if n_attempted < int(min_images) or n_error <= max_share * n_attempted:
        return
    reasons = tried.loc[tried["ocr_status"] == "error", "ocr_reason"].astype(str).value_counts()
    top = [str(r) for r in reasons.index[:5]]
    share = n_error / n_attempted
    raise OcrStageFailed(
        f"OCR failed on {n_error} of {n_attempted} {unit} ({share:.0%}) with backend {backend!r}, "
        f"more than max_error_share={max_share:g}; the backend or the image store looks broken. "
        f"{len(reasons)} distinct error reason(s), most frequent first: {top}",
        backend=backend,
        n_error=n_error,
        n_attempted=n_attempted,
        max_share=float(max_share),
        reasons=top,
        frame=out,
    )


def run_ocr(
    images: pd.DataFrame,
    backend: OcrBackend,
    progress: Callable[[int, int], None] | None = None,
    storage_options: dict | None = None,
    *,
    max_error_share: float | None = DEFAULT_MAX_ERROR_SHARE,
    min_images: int = DEFAULT_MIN_IMAGES,
) -> pd.DataFrame:
    """OCR the stored photo of every row; one output row per input row, same order.

    Args:
        images: DataFrame with ``sample_id``, ``status`` and ``image_uri`` (the output of
            ``fetch_images``). Only rows with ``status == "ok"`` and a non-empty ``image_uri`` are
            read.
        backend: an :class:`OcrBackend`.
        progress: optional ``progress(done, total)`` after each row.
        storage_options: fsspec options to open ``image_uri`` (e.g. S3 ``endpoint_url``).
        max_error_share: float in [0, 1], or None to skip the check (the caller then owns it).
        min_images: int >= 1, see :func:`check_error_share`.

    Returns:
        DataFrame with columns :data:`OCR_COLUMNS`: ``sample_id`` (str), ``ocr_status``
        (``"ok"`` | ``"no_image"`` | ``"error"``), ``ocr_text`` (str, non-empty lines joined by
        ``" | "``, "" when none), ``n_lines`` (int64), ``mean_conf`` (float64 mean confidence in
        [0, 1], NaN when no line), ``seconds`` (float64 wall seconds to open + OCR the image;
        0.0 for rows without an image and for repeats of an ``image_uri`` already read in this
        call, which reuse its result), ``ocr_reason`` (str, "" when ok: why there is no image,
        or ``"<ExceptionType>: <message>"`` for errors).
        An exception on one image marks that row ``error`` and the run goes on; once every row
        is done, :func:`check_error_share` (per distinct ``image_uri``) fails the whole run when
        more than ``max_error_share`` of the images it tried failed.

    Raises:
        KeyError: if a required column is missing.
        OcrBackendUnavailable: raised by the backend (affects every row, so not a row fault).
        OcrStageFailed: more than ``max_error_share`` of the images tried failed (at least
            ``min_images`` tried); the exception's ``frame`` holds the rows anyway.
    """
    missing = [c for c in ("sample_id", "status", "image_uri") if c not in images.columns]
    if missing:
        raise KeyError(f"run_ocr: images lacks column(s) {missing}; has {list(images.columns)}")

    total = len(images)
    cache: dict[str, tuple[str, int, float]] = {}
    records = []
    for done, (sid, status, uri) in enumerate(
        zip(images["sample_id"].tolist(), images["status"].tolist(), images["image_uri"].tolist()),
        start=1,
    ):
        rec = {
            "sample_id": str(sid),
            "ocr_text": "",
            "n_lines": 0,
            "mean_conf": float("nan"),
            "seconds": 0.0,
            "ocr_reason": "",
        }
        has_uri = isinstance(uri, str) and uri.strip() != ""
        if status != "ok" or not has_uri:
            rec["ocr_status"] = "no_image"
            rec["ocr_reason"] = f"image status {status!r}" if status != "ok" else "image_uri is empty"
        elif uri in cache:
            text, n, conf = cache[uri]
            rec.update(ocr_status="ok", ocr_text=text, n_lines=n, mean_conf=conf)
        else:
            t0 = time.perf_counter()
            try:
                lines = backend.read(open_image_rgb(uri, storage_options))
                kept = [(str(t).strip(), float(c)) for t, c in lines if str(t).strip()]
                text = LINE_SEPARATOR.join(t for t, _ in kept)
                conf = sum(c for _, c in kept) / len(kept) if kept else float("nan")
                cache[uri] = (text, len(kept), conf)
                rec.update(ocr_status="ok", ocr_text=text, n_lines=len(kept), mean_conf=conf)
            except OcrBackendUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - isolate one bad image from the batch
                rec["ocr_status"] = "error"
                rec["ocr_reason"] = f"{type(exc).__name__}: {exc}"
            rec["seconds"] = time.perf_counter() - t0
        records.append(rec)
        if progress is not None:
            progress(done, total)

    out = pd.DataFrame.from_records(records, columns=OCR_COLUMNS)
    out = out.astype({"sample_id": str, "n_lines": "int64", "mean_conf": "float64", "seconds": "float64"})
    if max_error_share is not None:
        check_error_share(
            out,
            max_error_share,
            min_images,
            backend=str(getattr(backend, "name", type(backend).__name__)),
            image_uri=images["image_uri"].tolist(),
        )
    return out
