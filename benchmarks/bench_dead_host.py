"""A batch whose image host is dead: ``fetch_images`` with and without the per-host circuit breaker.

    python benchmarks/bench_dead_host.py [--rows 500] [--mode both|before|after] [--host NAME | --real-links]

Rows: the first ``--rows`` rows of ``data/sample/amazon_pricing_sample.csv`` (real sample ids and
links), with the host of every ``image_link`` replaced by ``--host`` (default
``images-na.pricing-bench.invalid``: RFC 6761 reserves ``.invalid``, so the name never resolves and
the figures do not depend on this machine's network). ``--real-links`` keeps the real CDN links
(meaningful only where the CDN does not resolve or is unreachable).

Each mode runs :func:`pricing_assets.lib.images.fetch.fetch_images` once on a fresh temporary store with
the production defaults of ``ImageFetchResource`` (timeout 10 s, 8 workers, 3 retries, backoff
0.5 s, no mirror, online, private hosts refused so the name is resolved by ``check_url``):

- ``before``: ``host_failure_threshold=0``, the breaker off = the behaviour before it existed
  (every link: 4 attempts with exponential backoff; about 4-5 min for 500 rows);
- ``after``: ``host_failure_threshold=3`` (the default).

Prints, per mode: rows, distinct links, wall seconds, rows/s, status counts and the fetcher's stats.
"""

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pricing_assets.lib.images.fetch import FetchConfig, fetch_images  # noqa: E402

SAMPLE_CSV = REPO / "data" / "sample" / "amazon_pricing_sample.csv"


def build_rows(n_rows: int, host: str | None) -> pd.DataFrame:
    """The first ``n_rows`` sample rows as ``(sample_id, image_link)``, links moved to ``host``.

    Args:
        n_rows: rows to take (> 0; fewer if the sample is smaller).
        host: new hostname for every link (scheme, path and query kept), or None for the real links.

    Returns:
        DataFrame with columns ``sample_id`` (str) and ``image_link`` (str), ``n_rows`` rows.

    Raises:
        ValueError: if ``n_rows`` <= 0.
        FileNotFoundError: if the bundled sample CSV is absent.
    """
    if n_rows <= 0:
        raise ValueError(f"--rows must be > 0, got {n_rows}")
    df = pd.read_csv(SAMPLE_CSV, dtype={"sample_id": str}, usecols=["sample_id", "image_link"], nrows=n_rows)
    if host is not None:
        df["image_link"] = [urlunsplit(urlsplit(link)._replace(netloc=host)) for link in df["image_link"]]
    return df


def run_mode(rows: pd.DataFrame, threshold: int) -> dict:
    """Fetch ``rows`` into a fresh temporary store; return the measured figures.

    Returns:
        dict: ``rows`` (int), ``distinct_links`` (int), ``seconds`` (float, wall clock),
        ``rows_per_s`` (float), ``status_counts`` ({status: int}), ``stats`` (fetcher stats).
    """
    with tempfile.TemporaryDirectory(prefix="bench_dead_host_") as tmp:
        cfg = FetchConfig(store_base=str(Path(tmp) / "store"), host_failure_threshold=threshold)
        t0 = time.perf_counter()
        out = fetch_images(rows, cfg)
        seconds = time.perf_counter() - t0
    return {
        "rows": len(out),
        "distinct_links": int(rows["image_link"].nunique()),
        "seconds": seconds,
        "rows_per_s": len(out) / seconds if seconds > 0 else float("inf"),
        "status_counts": dict(Counter(out["status"]).most_common()),
        "stats": out.attrs["stats"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=500, help="rows of the sample to fetch (default 500)")
    ap.add_argument(
        "--mode",
        choices=["both", "before", "after"],
        default="both",
        help="before = breaker off (host_failure_threshold=0), after = default threshold 3",
    )
    ap.add_argument("--before", action="store_true", help="same as --mode before")
    ap.add_argument(
        "--host",
        default="images-na.pricing-bench.invalid",
        help="hostname put into every link (default: an RFC 6761 .invalid name)",
    )
    ap.add_argument("--real-links", action="store_true", help="keep the real CDN links (ignores --host)")
    args = ap.parse_args(argv)
    mode = "before" if args.before else args.mode

    rows = build_rows(args.rows, None if args.real_links else args.host)
    example = rows["image_link"].iloc[0] if len(rows) else ""
    print(f"dead-host benchmark: {len(rows)} rows from {SAMPLE_CSV.name}, e.g. {example}")
    modes = [("before", 0), ("after", 3)]
    for name, threshold in modes:
        if mode not in ("both", name):
            continue
        r = run_mode(rows, threshold)
        print(
            f"{name:6s} host_failure_threshold={threshold}: rows {r['rows']} (distinct links "
            f"{r['distinct_links']}), {r['seconds']:.2f} s, {r['rows_per_s']:.1f} rows/s"
        )
        print(f"       status counts: {r['status_counts']}")
        print(f"       stats: {r['stats']}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
