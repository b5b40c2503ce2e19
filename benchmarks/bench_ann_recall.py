"""Recall and cost of the bounded kNN searches against the exact ones, at catalog scale: the approximate
dense index of ``lib.retrieval.search.build_index`` (past ``APPROXIMATE_ABOVE``) against the exact
``faiss.IndexFlatIP``, and the TF-IDF views with the absolute document-frequency cap of
``lib.retrieval.reference.max_df_docs`` (past the same threshold) against the 20 %-share cap alone.

    .venv/bin/python benchmarks/bench_ann_recall.py --refs 50000 150000 [--compare] [--oof-fold]

Data (realistic vectors and texts, no model run): the 11,697 rows of the bundled sample
(``data/sample/amazon_pricing_sample.csv`` + ``amazon_pricing_unlabeled.csv``), parsed by
``lib.catalog.parsing.parse_catalog``, with their real MiniLM text vectors (``minilm_l6``), read from a
demo instance's ``embeddings/text/minilm_l6/*.parquet`` (``--vectors-dir``) or, when that folder is
absent, encoded here with the registry's ``minilm_l6_onnx_int8_t64`` (``load_encoder``, CPU).
2,000 rows (seeded) are held out as the queries (their own vector and texts, never in the catalog);
a catalog of N references resamples the other 9,697 rows: copy 0 of a row is the row itself, copy
c > 0 gets Gaussian noise of norm U(0.3, 0.6) added to its vector, re-normalised (cosine 0.86-0.96 to
the original; on the sample a product's nearest other product is at cosine 0.75 median), and its
texts with each word dropped with probability 0.15 and one pair of neighbouring words swapped, so
no two copies are identical.

Per N and view kind:

* dense: ``build_index(x, approximate_above=None)`` (exact) against ``build_index(x,
  approximate_above=0)`` (the approximate index as built past the threshold, forced at every N here):
  build seconds, seconds to search the 2,000 queries (k = 10), recall@10 = the share of the exact
  top-10 ids the approximate search returns. ``--compare`` adds the alternatives the parameters were
  chosen among (IVF ``nprobe`` 16 / 64, HNSW ``M`` 32 with ``efConstruction`` 40 and ``efSearch``
  64 / 128). ``--oof-fold`` adds one out-of-fold search as ``knn_features`` runs it (20 % of the catalog
  querying the other 80 %, build included), exact vs approximate.
* sparse (``tfidf``, ``title_char``, ``title_word``): each view's vectorizer fitted on the catalog
  texts through ``lib.retrieval.reference._fit_vectorizer`` (as ``fit_knn_reference`` does) with
  ``capped_above=None`` (20 % share only: today's exact search) and ``capped_above=0`` (the absolute
  cap ``KNN_TFIDF_MAX_DF_DOCS`` forced; ``--caps`` for others); the 2,000 queries transformed by each
  and searched by ``search_top_k`` (``sparse_dot_topn``, exact on the rows given). recall@10 counts
  the exact top-10 ids of positive similarity found. ``postings/query``: the mean over the queries of
  the summed document frequencies of their terms (the references a query's search touches).

It prints a table (and each result to stderr as it comes); it writes no files.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = REPO / "data" / "sample"
DEFAULT_VECTORS = Path("/tmp/ci_clone3/.dagster_home/storage/assets/embeddings/text/minilm_l6")


def load_sample(vectors_dir: Path, cache_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """(parsed ``catalog_items`` rows of the 11,697 sample rows, (n, 384) float32 L2-normalised
    MiniLM vectors in the same order)."""
    from pricing_assets.lib.catalog.parsing import parse_catalog

    lab = pd.read_csv(SAMPLE / "amazon_pricing_sample.csv", dtype={"sample_id": str})
    unl = pd.read_csv(SAMPLE / "amazon_pricing_unlabeled.csv", dtype={"sample_id": str}).assign(price=np.nan)
    rows = pd.concat([lab, unl], ignore_index=True)
    items = parse_catalog(rows).reset_index(drop=True)
    if vectors_dir.is_dir():
        emb = pd.concat([pd.read_parquet(p) for p in sorted(vectors_dir.glob("*.parquet"))], ignore_index=True)
        emb = emb.drop_duplicates("sample_id").set_index("sample_id")
        vec = np.stack(emb.loc[items["sample_id"].astype(str), "embedding"].to_numpy()).astype(np.float32)
    else:
        from pricing_assets.lib.embeddings.encoders import load_encoder
        from pricing_assets.lib.embeddings.registry import load_registry
        from pricing_assets.lib.models.tfidf_ridge import product_text

        print(f"{vectors_dir} absent: encoding {len(items)} texts with minilm_l6_onnx_int8_t64", file=sys.stderr)
        enc = load_encoder(load_registry()["minilm_l6_onnx_int8_t64"], "cpu", cache_dir)
        vec = np.asarray(enc.encode(product_text(items).tolist()), dtype=np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    return items, np.ascontiguousarray(vec)


def _vary_text(text: str, rng: np.random.Generator) -> str:
    words = text.split()
    keep = [w for w in words if rng.random() >= 0.15] or words[:1]
    if len(keep) > 1:
        i = int(rng.integers(0, len(keep) - 1))
        keep[i], keep[i + 1] = keep[i + 1], keep[i]
    return " ".join(keep)


def catalog(base_vec: np.ndarray, base_texts: dict, n: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """(n, d) float32 vectors and ``{view: list of n texts}`` resampled from the base rows (module
    docstring: copy 0 as is, later copies perturbed)."""
    rng = np.random.default_rng(seed)
    b, d = base_vec.shape
    tmpl, copy = np.arange(n) % b, np.arange(n) // b
    norm = rng.uniform(0.3, 0.6, n) * (copy > 0)
    noise = rng.standard_normal((n, d)).astype(np.float32)
    noise *= (norm / np.linalg.norm(noise, axis=1)).astype(np.float32)[:, None]
    x = base_vec[tmpl] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    texts = {
        view: [t[i] if c == 0 else _vary_text(t[i], rng) for i, c in zip(tmpl, copy)] for view, t in base_texts.items()
    }
    return np.ascontiguousarray(x, dtype=np.float32), texts


def _recall(exact_ids: np.ndarray, ids: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean over queries of the share of the exact top-k ids (those with ``valid``) found in ``ids``."""
    found, total = 0, 0
    for r in range(len(exact_ids)):
        want = set(exact_ids[r][valid[r]] if valid is not None else exact_ids[r])
        if want:
            found += len(want & set(ids[r]))
            total += len(want)
    return found / max(total, 1)


def _timed(fn, *args, **kwargs):
    """(``fn(*args, **kwargs)``, seconds it took)."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def bench_dense(x: np.ndarray, q: np.ndarray, k: int, compare: bool, oof_fold: bool) -> list[dict]:
    """Rows ``{"method", "build_s", "search_s", "recall"}`` (and an OOF-fold pair with ``oof_fold``)."""
    import faiss

    from pricing_assets.lib.retrieval.search import build_index, search_top_k

    exact, tb = _timed(build_index, x, approximate_above=None)
    (_, ids_e), ts = _timed(search_top_k, exact, q, k)
    rows = [{"method": "exact IndexFlatIP", "build_s": tb, "search_s": ts, "recall": 1.0}]
    ivf, tb = _timed(build_index, x, approximate_above=0)
    (_, ids), ts = _timed(search_top_k, ivf, q, k)
    label = f"IVF{ivf.nlist},Flat nprobe={ivf.nprobe} (project)"
    rows.append({"method": label, "build_s": tb, "search_s": ts, "recall": _recall(ids_e, ids)})
    if compare:
        chosen = ivf.nprobe
        for nprobe in (16, 64):
            ivf.nprobe = nprobe
            (_, ids), ts = _timed(search_top_k, ivf, q, k)
            rows.append(
                {
                    "method": f"IVF{ivf.nlist},Flat nprobe={nprobe}",
                    "build_s": np.nan,
                    "search_s": ts,
                    "recall": _recall(ids_e, ids),
                }
            )
        ivf.nprobe = chosen

        def hnsw():
            h = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            h.hnsw.efConstruction = 40
            h.add(x)
            return h

        h, tb = _timed(hnsw)
        for ef in (64, 128):
            h.hnsw.efSearch = ef
            (_, ids), ts = _timed(search_top_k, h, q, k)
            rows.append(
                {"method": f"HNSW32 efC=40 efSearch={ef}", "build_s": tb, "search_s": ts, "recall": _recall(ids_e, ids)}
            )
    if oof_fold:
        fold = np.random.default_rng(1).random(len(x)) < 0.2
        ref, qq = x[~fold], x[fold]
        for name, above in (("OOF fold exact", None), ("OOF fold approximate", 0)):
            (_, ids), t = _timed(search_top_k, ref, qq, k, approximate_above=above)
            if above is None:
                oof_exact = ids
            rows.append(
                {
                    "method": f"{name} ({fold.sum()} x {(~fold).sum()})",
                    "build_s": np.nan,
                    "search_s": t,
                    "recall": _recall(oof_exact, ids),
                }
            )
    return rows


def bench_sparse(ref_texts: dict, q_texts: dict, k: int, caps: list[int]) -> list[dict]:
    """Rows ``{"view", "cap", "fit_s", "search_s", "recall", "postings", "max_df", "terms"}`` per view
    (cap None: the 20 % share alone, today's search)."""
    from pricing_assets.lib.retrieval import reference
    from pricing_assets.lib.retrieval.search import search_top_k

    params = {"tfidf": reference._TFIDF_VIEW, **reference._TITLE_VECTORIZERS}
    rows = []
    for view, p in params.items():
        r_t, q_t = pd.Series(ref_texts[view]), pd.Series(q_texts[view])
        exact_ids = exact_valid = None
        for cap in [None, *caps]:
            kw = {"capped_above": None} if cap is None else {"capped_above": 0, "cap_docs": cap}
            (vec, ref), tf = _timed(reference._fit_vectorizer, p, r_t, **kw)
            qm = reference.transform_view(vec, q_t)
            (sims, ids), ts = _timed(search_top_k, ref, qm, k)
            df = np.asarray((ref != 0).sum(axis=0)).ravel()
            postings = float(np.asarray((qm != 0) @ df).mean())
            if cap is None:
                exact_ids, exact_valid = ids, sims > 0
            rows.append(
                {
                    "view": view,
                    "cap": cap,
                    "fit_s": tf,
                    "search_s": ts,
                    "recall": _recall(exact_ids, ids, exact_valid),
                    "postings": postings,
                    "max_df": int(df.max()),
                    "terms": ref.shape[1],
                }
            )
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    from pricing_assets.lib.retrieval.reference import KNN_TFIDF_MAX_DF_DOCS, view_texts

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--refs", type=int, nargs="+", default=[50_000, 150_000], help="catalog sizes (references)")
    p.add_argument("--queries", type=int, default=2_000, help="held-out query rows")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--caps", type=int, nargs="+", default=[KNN_TFIDF_MAX_DF_DOCS], help="absolute df caps (docs)")
    p.add_argument("--compare", action="store_true", help="also IVF nprobe 16/64 and HNSW")
    p.add_argument("--oof-fold", action="store_true", help="also one out-of-fold search (dense)")
    p.add_argument("--skip-sparse", action="store_true")
    p.add_argument("--skip-dense", action="store_true")
    p.add_argument("--vectors-dir", type=Path, default=DEFAULT_VECTORS)
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/ann_bench_models"))
    args = p.parse_args(argv)

    items, vec = load_sample(args.vectors_dir, args.cache_dir)
    texts = {v: t.fillna("").astype(str).tolist() for v, t in view_texts(items).items()}
    perm = np.random.default_rng(0).permutation(len(items))
    qi, bi = perm[: args.queries], perm[args.queries :]
    q_vec = vec[qi]
    q_texts = {v: [t[i] for i in qi] for v, t in texts.items()}
    base_texts = {v: [t[i] for i in bi] for v, t in texts.items()}
    dense_out, sparse_out = [], []
    for n in args.refs:
        x, ref_texts = catalog(vec[bi], base_texts, n)
        if not args.skip_dense:
            for r in bench_dense(x, q_vec, args.k, args.compare, args.oof_fold):
                dense_out.append({"refs": n, **r})
                print(dense_out[-1], file=sys.stderr, flush=True)
        if not args.skip_sparse:
            sparse_out += [{"refs": n, **r} for r in bench_sparse(ref_texts, q_texts, args.k, args.caps)]
    print(f"\n{args.queries} held-out queries, k = {args.k}")
    if dense_out:
        print(f"\n{'refs':>8}  {'dense index':<44}{'build s':>9}{'search s':>10}{'recall@10':>11}")
        for r in dense_out:
            print(f"{r['refs']:>8}  {r['method']:<44}{r['build_s']:>9.2f}{r['search_s']:>10.3f}{r['recall']:>11.4f}")
    if sparse_out:
        print(
            f"\n{'refs':>8}  {'view':<11}{'df cap':>8}{'terms':>9}{'max df':>8}{'fit s':>8}{'search s':>10}"
            f"{'postings/query':>16}{'recall@10':>11}"
        )
        for r in sparse_out:
            cap = "20 %" if r["cap"] is None else str(r["cap"])
            print(
                f"{r['refs']:>8}  {r['view']:<11}{cap:>8}{r['terms']:>9}{r['max_df']:>8}{r['fit_s']:>8.1f}"
                f"{r['search_s']:>10.2f}{r['postings']:>16.0f}{r['recall']:>11.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
