"""OCR cost control: seconds per photo and text read at several RapidOCR detector input sizes
(``OcrResource.det_limit_side_len``), against the default size, on the bundled photos.

    .venv/bin/python benchmarks/bench_ocr.py --sides 320 480 640 [--threads 2] [--limit 40]

Per size: backend build seconds, photos/s (after one warm-up photo), mean lines and characters read
per photo, the share of photos with any text, and the word recall against the default size (the
share of the default size's distinct upper-case words, over all photos, that this size also reads).
The raw library is the pipeline here (``lib.ocr.RapidOcrBackend.read`` is one RapidOCR call), so
photos/s is RapidOCR's own speed at that size. Keep the machine otherwise quiet for stable figures.
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
    from PIL import Image

    from pricing_assets.lib.ocr import DEFAULT_DET_SIDE, RapidOcrBackend

    images = []
    for p in sorted(IMAGES_DIR.glob("*.jpg")):
        try:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        except OSError:  # unreadable on purpose in the sample (the pipeline marks them, OCR never sees them)
            continue
    images = images[:limit]
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
        results.append({
            "side": side, "load_s": round(load_s, 2), "photos_per_s": round(len(images) / dt, 2),
            "lines_per_photo": round(sum(len(r) for r in read) / len(images), 2),
            "chars_per_photo": round(sum(len(t) for r in read for t, _ in r) / len(images), 1),
            "share_with_text": round(sum(bool(r) for r in read) / len(images), 3),
        })
        print(f"side {side}: {results[-1]['photos_per_s']} photos/s", file=sys.stderr, flush=True)
    base = words[DEFAULT_DET_SIDE]
    for r in results:
        r["word_recall_vs_default"] = round(len(words[r["side"]] & base) / max(len(base), 1), 3)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sides", type=int, nargs="+", default=[320, 480, 640], help="detector longest sides, px")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: lib.cpu.default_threads)")
    p.add_argument("--limit", type=int, default=None, help="first N bundled photos only")
    args = p.parse_args(argv)
    rows = run(args.sides, args.threads, args.limit)
    print(f"{'side px':>8}{'load s':>8}{'photos/s':>10}{'lines':>7}{'chars':>8}{'with text':>11}{'word recall':>13}")
    for r in rows:
        print(f"{r['side']:>8}{r['load_s']:>8}{r['photos_per_s']:>10}{r['lines_per_photo']:>7}{r['chars_per_photo']:>8}"
              f"{r['share_with_text']:>11}{r['word_recall_vs_default']:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
