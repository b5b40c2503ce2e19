"""The GPU path, stage by stage: rows/s of each per-row stage on CUDA and on CPU, and the largest
difference between the two devices' outputs. One short script to run on a GPU machine:

    .venv/bin/python benchmarks/bench_gpu.py                    # cuda vs cpu (needs CUDA)
    .venv/bin/python benchmarks/bench_gpu.py --devices cpu      # the CPU half only (any machine)

Stages (the registry's enabled models, the pipeline's own loaders and settings):

- text encoders (``minilm_l6``): torch / sentence-transformers, float16 on CUDA with the registry's
  ``cuda_batch_multiplier`` (``lib.embeddings.encoders.load_encoder``), on ``--texts`` sample texts;
- image encoders (``effnet_lite0``): the exported ONNX model on onnxruntime's CUDA provider, on the
  bundled photos;
- OCR: RapidOCR with ``EngineConfig.onnxruntime.use_cuda`` (``lib.images.ocr.RapidOcrBackend``) on
  ``--photos`` bundled photos; the difference is the share of photos whose lines differ.

Printed per stage and device: load seconds, rows/s (after a warm-up batch), and for CUDA the max abs
difference of the vectors (or the OCR line mismatch share) against the CPU run. Prints the
onnxruntime providers and torch's CUDA device so a silent CPU fallback shows. With ``--json PATH``
the rows are written there too. Budget: under 5 minutes on one GPU with the defaults.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
IMAGES_DIR = REPO / "data" / "sample" / "images"
LABELED_CSV = REPO / "data" / "sample" / "amazon_pricing_sample.csv"


def _texts(n: int) -> list[str]:
    import pandas as pd

    from pricing_assets.lib.catalog.parsing import parse_catalog_content
    from pricing_assets.lib.embeddings.text import text_for_embedding

    raw = pd.read_csv(LABELED_CSV, nrows=n)
    parts = [parse_catalog_content(t) for t in raw["catalog_content"]]
    return [text_for_embedding(p["item_name"], p["bullet_points"], p["description"]) for p in parts]


def _photos(n: int | None):
    from PIL import Image

    out = []
    for p in sorted(IMAGES_DIR.glob("*.jpg")):
        try:
            with Image.open(p) as im:
                out.append(im.convert("RGB"))
        except OSError:  # the bundled sample holds unreadable photos on purpose (quarantined by the pipeline)
            continue
    return out[:n]


def _timed(fn, inputs, warmup):
    fn(inputs[:warmup])
    t = time.perf_counter()
    out = fn(inputs)
    return out, len(inputs) / (time.perf_counter() - t)


def run(devices: list[str], n_texts: int, n_photos: int | None) -> list[dict]:
    """Rows ``{"stage", "device", "load_s", "rows_per_s", "max_abs_diff_vs_cpu"}`` (the last is
    None on CPU; for OCR it is the share of photos whose lines differ from the CPU run)."""
    from pricing_assets.lib.embeddings.encoders import load_encoder
    from pricing_assets.lib.embeddings.registry import enabled_models, load_registry
    from pricing_assets.lib.images.ocr import RapidOcrBackend
    from pricing_assets.settings import model_cache_dir

    texts, photos = _texts(n_texts), _photos(n_photos)
    rows, ref = [], {}
    for spec in enabled_models(load_registry()):
        inputs = texts if spec.modality == "text" else photos
        for dev in devices:
            t = time.perf_counter()
            enc = load_encoder(spec, device=dev, cache_dir=model_cache_dir())
            load_s = time.perf_counter() - t
            vec, rate = _timed(enc.encode, inputs, enc.batch_size)
            diff = None if dev == "cpu" or spec.name not in ref else float(np.abs(vec - ref[spec.name]).max())
            if dev == "cpu":
                ref[spec.name] = vec
            rows.append(
                {
                    "stage": f"embed:{spec.name}",
                    "device": dev,
                    "load_s": round(load_s, 2),
                    "rows_per_s": round(rate, 1),
                    "max_abs_diff_vs_cpu": diff,
                }
            )
            print(rows[-1], file=sys.stderr, flush=True)
    for dev in devices:
        t = time.perf_counter()
        ocr = RapidOcrBackend(device=dev)
        load_s = time.perf_counter() - t
        lines, rate = _timed(lambda ims, ocr=ocr: [ocr.read(im) for im in ims], photos, 1)
        texts_read = [[t for t, _ in r] for r in lines]
        diff = None
        if dev != "cpu" and "ocr" in ref:
            diff = round(sum(a != b for a, b in zip(texts_read, ref["ocr"])) / max(len(photos), 1), 3)
        if dev == "cpu":
            ref["ocr"] = texts_read
        rows.append(
            {
                "stage": "ocr:rapidocr",
                "device": dev,
                "load_s": round(load_s, 2),
                "rows_per_s": round(rate, 2),
                "max_abs_diff_vs_cpu": diff,
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cpu first: the reference outputs")
    p.add_argument("--texts", type=int, default=1024, help="sample texts for the text encoders")
    p.add_argument("--photos", type=int, default=None, help="bundled photos (default: all)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    if args.devices[0] != "cpu":
        p.error("--devices must start with cpu (the reference for the differences)")
    import onnxruntime as ort
    import torch

    print(
        f"onnxruntime providers: {ort.get_available_providers()}; torch {torch.__version__}, "
        f"cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}"
    )
    rows = run(args.devices, args.texts, args.photos)
    print(f"{'stage':<22}{'device':>8}{'load s':>8}{'rows/s':>10}{'max diff vs cpu':>17}")
    for r in rows:
        d = "" if r["max_abs_diff_vs_cpu"] is None else f"{r['max_abs_diff_vs_cpu']:.2e}"
        print(f"{r['stage']:<22}{r['device']:>8}{r['load_s']:>8}{r['rows_per_s']:>10}{d:>17}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
