"""OCR cost control: seconds per photo and text read at several RapidOCR detector input sizes
(``OcrResource.det_limit_side_len``), against the default size, on the bundled photos.

    .venv/bin/python benchmarks/bench_ocr.py --sides 320 480 640 [--threads 2] [--limit 40]

Per size: backend build seconds, photos/s (after one warm-up photo), mean lines and characters read
per photo, the share of photos with any text, and the word recall against the default size (the
share of the default size's distinct upper-case words, over all photos, that this size also reads).
The raw library is the pipeline here (``lib.images.ocr.RapidOcrBackend.read`` is one RapidOCR call), so
photos/s is RapidOCR's own speed at that size. Keep the machine otherwise quiet for stable figures.

``--controls`` measures the two other cost controls at the default size instead:

- where the time goes: detector vs recogniser seconds (RapidOCR's ``elapse_list``) and the photos
  in which the detector finds no text region (RapidOCR already skips recognition for those);
- skipping photos without text regions before the full pass: a detector-only pre-pass at
  ``--prescreen`` sides, its seconds and the photos it would skip although the default pass reads
  text in them;
- batching: the recogniser's batch size (``Rec.rec_batch_num``, RapidOCR's default 6) against photos/s.
"""

import argparse
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IMAGES_DIR = REPO / "data" / "sample" / "images"


def _words(lines: list[tuple[str, float]]) -> set[str]:
    return {w for text, _ in lines for w in re.findall(r"[A-Z0-9]{2,}", text.upper())}


def run(sides: list[int], threads: int | None, limit: int | None) -> list[dict]:
    """One result per size: ``{"side", "load_s", "photos_per_s", "lines_per_photo",
    "chars_per_photo", "share_with_text", "word_recall_vs_default"}``."""
    from pricing_assets.lib.images.ocr import DEFAULT_DET_SIDE, RapidOcrBackend

    images = _load_images(limit)
    results, words = [], {}
    for side in sorted(set(sides) | {DEFAULT_DET_SIDE}):
        t = time.perf_counter()
        backend = RapidOcrBackend(num_threads=threads, det_limit_side_len=side)
        load_s = time.perf_counter() - t
        backend.read(images[0])  # warm-up
        t = time.perf_counter()
        read = [backend.read(im) for im in images]
        dt = time.perf_counter() - t
        words[side] = set().union(*(_words(r) for r in read))
        results.append(
            {
                "side": side,
                "load_s": round(load_s, 2),
                "photos_per_s": round(len(images) / dt, 2),
                "lines_per_photo": round(sum(len(r) for r in read) / len(images), 2),
                "chars_per_photo": round(sum(len(t) for r in read for t, _ in r) / len(images), 1),
                "share_with_text": round(sum(bool(r) for r in read) / len(images), 3),
            }
        )
        print(f"side {side}: {results[-1]['photos_per_s']} photos/s", file=sys.stderr, flush=True)
    base = words[DEFAULT_DET_SIDE]
    for r in results:
        r["word_recall_vs_default"] = round(len(words[r["side"]] & base) / max(len(base), 1), 3)
    return results


def _load_images(limit: int | None) -> list:
    from PIL import Image

    images = []
    for p in sorted(IMAGES_DIR.glob("*.jpg")):
        try:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        except OSError:  # unreadable on purpose in the sample (the pipeline marks them, OCR never sees them)
            continue
    return images[:limit]


def controls(threads: int | None, limit: int | None, prescreen: list[int], batches: list[int]) -> dict:
    """``{"photos", "seconds", "det_s", "rec_s", "no_region", "prescreen": [{"side", "seconds",
    "skipped", "skipped_with_text"}], "batches": [{"rec_batch_num", "photos_per_s"}]}`` at the default size."""
    from rapidocr import RapidOCR

    from pricing_assets.lib.images.ocr import DEFAULT_DET_SIDE, RapidOcrBackend

    images = _load_images(limit)

    def engine(side: int, **extra):
        eng = RapidOCR(params={**RapidOcrBackend.engine_params("cpu", threads, side), **extra})
        eng(images[0])  # warm-up
        return eng

    full = engine(DEFAULT_DET_SIDE)
    t = time.perf_counter()
    res = [full(im) for im in images]
    out = {
        "photos": len(images),
        "seconds": round(time.perf_counter() - t, 2),
        "det_s": round(sum((r.elapse_list or [0])[0] or 0 for r in res), 2),
        "rec_s": round(sum(r.elapse_list[2] or 0 for r in res if len(r.elapse_list) > 2), 2),
    }
    regions = [0 if r.boxes is None else len(r.boxes) for r in res]
    out["no_region"] = sum(n == 0 for n in regions)
    out["prescreen"] = []
    for side in prescreen:
        pre = engine(side)
        t = time.perf_counter()
        found = [pre(im, use_det=True, use_cls=False, use_rec=False).boxes is not None for im in images]
        out["prescreen"].append(
            {
                "side": side,
                "seconds": round(time.perf_counter() - t, 2),
                "skipped": sum(not f for f in found),
                "skipped_with_text": sum((not f) and n > 0 for f, n in zip(found, regions)),
            }
        )
    out["batches"] = []
    for b in batches:
        eng = engine(DEFAULT_DET_SIDE, **{"Rec.rec_batch_num": b})
        t = time.perf_counter()
        for im in images:
            eng(im)
        out["batches"].append({"rec_batch_num": b, "photos_per_s": round(len(images) / (time.perf_counter() - t), 2)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sides", type=int, nargs="+", default=[320, 480, 640], help="detector longest sides, px")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime intra-op threads (default: lib.runtime.cpu.default_threads)",
    )
    p.add_argument("--limit", type=int, default=None, help="first N bundled photos only")
    p.add_argument(
        "--controls", action="store_true", help="measure region skipping and recogniser batching instead of sizes"
    )
    p.add_argument(
        "--prescreen", type=int, nargs="+", default=[160, 256], help="detector-only pre-pass sides, px (--controls)"
    )
    p.add_argument("--batches", type=int, nargs="+", default=[6, 16, 32], help="recogniser batch sizes (--controls)")
    args = p.parse_args(argv)
    if args.controls:
        c = controls(args.threads, args.limit, args.prescreen, args.batches)
        print(
            f"{c['photos']} photos at the default size: {c['seconds']} s (detector {c['det_s']} s, recogniser {c['rec_s']} s); "
            f"no text region in {c['no_region']}"
        )
        for r in c["prescreen"]:
            print(
                f"pre-pass {r['side']} px: {r['seconds']} s, would skip {r['skipped']} photos, {r['skipped_with_text']} of them with text at the default size"
            )
        for r in c["batches"]:
            print(f"Rec.rec_batch_num {r['rec_batch_num']}: {r['photos_per_s']} photos/s")
        return 0
    rows = run(args.sides, args.threads, args.limit)
    print(f"{'side px':>8}{'load s':>8}{'photos/s':>10}{'lines':>7}{'chars':>8}{'with text':>11}{'word recall':>13}")
    for r in rows:
        print(
            f"{r['side']:>8}{r['load_s']:>8}{r['photos_per_s']:>10}{r['lines_per_photo']:>7}{r['chars_per_photo']:>8}"
            f"{r['share_with_text']:>11}{r['word_recall_vs_default']:>13}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
