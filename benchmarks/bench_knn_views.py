"""The TF-IDF kNN views at catalog scale: seconds to transform the queries and to search them,
exactly, with and without the document-frequency cap (``lib.retrieval.reference.KNN_TFIDF_MAX_DF``), and how many of
the uncapped top-10 neighbours the capped search still finds.

    .venv/bin/python benchmarks/bench_knn_views.py --rows 50000 [--caps 0.2 0.05]

The catalog is ``bench_scale.scaled_catalog(rows)`` (half labeled: the reference; half unlabeled:
the queries), parsed with ``lib.catalog.parsing.parse_catalog``; each view's vectorizer is fitted on the
reference texts by ``lib.retrieval.reference._fit_vectorizer`` (as ``fit_knn_reference`` does), once without a cap
(``max_df_share=1``) and once per cap. The
synthetic catalog holds ~rows / 7,216 near-copies of every listing, so ties among copies lower the
recall figure more than on a real catalog; SMAPE, not recall, decided the cap (docs/experiments.md).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def run(rows: int, caps: list[float], k: int = 20) -> list[dict]:
    """One result per view: ``{"view", "refs", "queries", "transform_s", "search_s", "caps": [{"cap",
    "search_s", "recall_at_10", "terms_dropped"}]}``."""
    import bench_scale

    from pricing_assets.lib.catalog.parsing import parse_catalog
    from pricing_assets.lib.retrieval import reference, search

    cat = bench_scale.scaled_catalog(rows)
    items = parse_catalog(cat.drop(columns=["template"]))
    lab = cat["price"].notna().to_numpy()
    texts = reference.view_texts(items)
    params = {"tfidf": reference._TFIDF_VIEW, **reference._TITLE_VECTORIZERS}
    out = []
    for view, p in params.items():
        ref_t, q_t = texts[view][lab].reset_index(drop=True), texts[view][~lab].reset_index(drop=True)
        vec, ref = reference._fit_vectorizer(p, ref_t, max_df_share=1.0, capped_above=None)
        t = time.perf_counter()
        q = reference.transform_view(vec, q_t)
        res = {
            "view": view,
            "refs": ref.shape[0],
            "queries": q.shape[0],
            "transform_s": round(time.perf_counter() - t, 2),
        }
        t = time.perf_counter()
        _, ids = search.search_top_k(ref, q, k)
        res["search_s"] = round(time.perf_counter() - t, 2)
        res["caps"] = []
        for cap in caps:
            capped, ref_c = reference._fit_vectorizer(p, ref_t, max_df_share=cap)
            q_c = reference.transform_view(capped, q_t)
            t = time.perf_counter()
            _, ids_c = search.search_top_k(ref_c, q_c, k)
            recall = float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(ids, ids_c)]))
            res["caps"].append(
                {
                    "cap": cap,
                    "search_s": round(time.perf_counter() - t, 2),
                    "recall_at_10": round(recall, 3),
                    "terms_dropped": len(vec.vocabulary_) - len(capped.vocabulary_),
                }
            )
        print(res, file=sys.stderr, flush=True)
        out.append(res)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=50_000, help="catalog rows (half references, half queries)")
    p.add_argument(
        "--caps", type=float, nargs="+", default=[0.2, 0.05], help="document-frequency caps (share of references)"
    )
    args = p.parse_args(argv)
    res = run(args.rows, args.caps)
    print(
        f"{'view':<12}{'refs':>8}{'queries':>9}{'transform s':>13}{'search s':>10}"
        + "".join(f"{f'cap {c}: s / recall@10':>28}" for c in args.caps)
    )
    for r in res:
        print(
            f"{r['view']:<12}{r['refs']:>8}{r['queries']:>9}{r['transform_s']:>13}{r['search_s']:>10}"
            + "".join(f"{c['search_s']:>19} / {c['recall_at_10']:>6}" for c in r["caps"])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
