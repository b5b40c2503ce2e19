"""Tests for pricing_assets.lib.embeddings.text: the text an encoder embeds."""

import numpy as np
import pytest

from pricing_assets.lib.embeddings.text import text_for_embedding


def test_text_for_embedding_layout_and_limits():
    t = text_for_embedding(
        "Chex Mix  Muddy Buddies,\n4.5 Oz", ["Crunchy", "", "Mint   flavour"], "Tasty snack.", ocr_text="NET WT 4.5 OZ"
    )
    assert t == "Chex Mix Muddy Buddies, 4.5 Oz\nImage text: NET WT 4.5 OZ\nCrunchy\nMint flavour\nTasty snack."
    assert text_for_embedding("Name", None, float("nan")) == "Name"
    assert text_for_embedding("Name", "one bullet", None, ocr_text="  ") == "Name\none bullet"
    assert text_for_embedding(None, [], None) == ""
    assert text_for_embedding("N", float("nan"), None) == "N"
    assert text_for_embedding("N", np.array(["b1", "b2"], dtype=object), "d") == "N\nb1\nb2\nd"
    long = text_for_embedding("Name", ["word " * 1000], None, max_chars=100)
    assert len(long) <= 100 and long.startswith("Name\nword") and not long.endswith(" ")
    assert text_for_embedding("x" * 50, None, None, max_chars=10) == "x" * 10
    with pytest.raises(ValueError, match="max_chars"):
        text_for_embedding("a", None, None, max_chars=0)
    with pytest.raises(TypeError, match="expected str"):
        text_for_embedding("a", [3.5], None)


def test_texts_for_items_joins_ocr_by_sample_id():
    import pandas as pd

    from pricing_assets.lib.embeddings.text import texts_for_items

    items = pd.DataFrame(
        {"sample_id": ["1", "2"], "item_name": ["Tea", "Coffee"], "bullets": ["b1", ""], "description": ["", "d"]}
    )
    ocr = pd.DataFrame({"sample_id": ["2", "9"], "ocr_text": ["ARABICA 12 OZ", "x"]})
    assert texts_for_items(items, ocr) == ["Tea\nb1", "Coffee\nImage text: ARABICA 12 OZ\nd"]
    assert texts_for_items(items) == ["Tea\nb1", "Coffee\nd"]
