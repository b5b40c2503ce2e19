"""Helpers shared by tests: paths and slices of the bundled real sample, the `pricing` script."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
LABELED_CSV = SAMPLE / "amazon_pricing_sample.csv"
UNLABELED_CSV = SAMPLE / "amazon_pricing_unlabeled.csv"
IMAGES = SAMPLE / "images"


def default_text_model() -> str:
    """Name of the text encoder the code location computes here (the registry's enabled text model,
    or the one ``PRICING_EMBEDDING_MODELS`` selects): its asset is ``embeddings/text/<name>``."""
    from pricing_assets.lib.embeddings.registry import indexed_text_model
    from pricing_assets.settings import current_registry

    return indexed_text_model(current_registry()).name


#: The text encoder of the default registry (``minilm_l6_onnx_int8_t64`` unless the env selects another).
TEXT_MODEL = default_text_model()
TEXT_KEY = f"embeddings/text/{TEXT_MODEL}"


def image_basenames() -> set[str]:
    return {p.name for p in IMAGES.glob("*.jpg")}


def sample_slice(
    n_labeled: int = 120, n_with_image: int = 8, n_unlabeled: int = 30
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic slice of real rows: ``n_with_image`` labeled rows whose photo is bundled, the
    rest without; and the first ``n_unlabeled`` unlabeled rows."""
    lab = pd.read_csv(LABELED_CSV, dtype={"sample_id": str})
    has = lab["image_link"].str.rsplit("/", n=1).str[-1].isin(image_basenames())
    lab = pd.concat([lab[has].head(n_with_image), lab[~has].head(n_labeled - n_with_image)], ignore_index=True)
    unl = pd.read_csv(UNLABELED_CSV, dtype={"sample_id": str}).head(n_unlabeled)
    return lab, unl


PRICING = str(Path(sys.executable).parent / "pricing")


def run_pricing(args, env, check=True):
    """Run the ``pricing`` console script of this venv; raise with its output when it fails."""
    res = subprocess.run([PRICING, *args], env=env, capture_output=True, text=True, timeout=900)
    if check and res.returncode != 0:
        raise AssertionError(
            f"pricing {' '.join(args)} exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr[-4000:]}"
        )
    return res


def run_pricing_here(args, env, check=True) -> subprocess.CompletedProcess:
    """Run ``pricing`` *in this process* (``pricing_assets.cli.main``) with ``env`` as the environment
    for the call, capturing stdout/stderr; the same result shape as :func:`run_pricing` without the
    ~10 s start-up of a new interpreter (importing the CLI and the code location). ``os.environ`` is
    restored afterwards. Commands whose exit path is the point of the test use :func:`run_pricing`."""
    from pricing_assets.cli import main

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as exc:  # argparse: --help, --version, usage errors
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    res = subprocess.CompletedProcess(["pricing", *args], rc, out.getvalue(), err.getvalue())
    if check and rc != 0:
        raise AssertionError(
            f"pricing {' '.join(map(str, args))} exited {rc}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr[-4000:]}"
        )
    return res
