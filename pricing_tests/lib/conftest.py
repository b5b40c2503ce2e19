"""Fixtures shared by the lib tests: a real MiniLM encoder and 500 real labeled rows."""

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.embeddings.encoders import load_encoder
from pricing_assets.lib.embeddings.registry import load_registry
from pricing_assets.lib.models.cross_validation import assign_folds
from pricing_tests.helpers import LABELED_CSV as SAMPLE


@pytest.fixture(scope="session")
def minilm(tmp_path_factory):
    """The registry's MiniLM text encoder on CPU (one thread), loaded once for the encoder and cache tests."""
    return load_encoder(load_registry()["minilm_l6"], "cpu", tmp_path_factory.mktemp("models"), num_threads=1)


@pytest.fixture(scope="module")
def real():
    """500 real labeled rows: parsed text, log price, folds."""
    from pricing_assets.lib.catalog.parsing import parse_catalog_content

    df = pd.read_csv(SAMPLE, dtype={"sample_id": str}, nrows=500)
    parsed = pd.DataFrame([parse_catalog_content(t) for t in df["catalog_content"]])
    folds = assign_folds(df["sample_id"], df["image_link"], 4, 42)
    return parsed, np.log1p(df["price"].to_numpy(dtype=float)), folds
