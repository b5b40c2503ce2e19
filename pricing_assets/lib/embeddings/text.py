"""The text an encoder embeds for one product: :func:`text_for_embedding`. Pure, standard library only."""

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

__all__ = ["text_for_embedding"]


def _clean(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if not isinstance(x, str):
        raise TypeError(f"expected str or None, got {type(x).__name__}: {x!r}")
    return " ".join(x.split())


def text_for_embedding(
    item_name: str | None,
    bullets: Sequence[str] | str | None,
    description: str | None,
    ocr_text: str | None = None,
    max_chars: int = 2000,
) -> str:
    """The string text models embed for one product.

    Layout (one part per line, whitespace collapsed, empty parts skipped)::

        <item name>
        Image text: <ocr text>          (only when OCR found text)
        <bullet 1>
        ...
        <description>

    OCR text comes right after the name because encoders truncate (MiniLM: 128 tokens, roughly
    the first 500 characters) and label text (brand, "16 oz", "pack of 6") is short and price-relevant.
    The result is cut to ``max_chars`` characters at a word boundary when possible.

    Args:
        item_name: product title (None / NaN -> skipped).
        bullets: bullet points (list / array of str, or a single str; None / NaN -> none).
        description: product description (None / NaN -> skipped).
        ocr_text: text read from the product image, if any.
        max_chars: maximum length of the result in characters (>= 1).

    Returns:
        str of length <= max_chars ("" when every part is empty).

    Raises:
        ValueError: max_chars < 1.
        TypeError: a part is neither str nor None/NaN (the message shows the value).
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    if bullets is None or isinstance(bullets, (str, float)):  # float: NaN from a missing cell
        bullet_list = [bullets]
    else:
        bullet_list = list(bullets)
    parts = [_clean(item_name)]
    ocr = _clean(ocr_text)
    if ocr:
        parts.append(f"Image text: {ocr}")
    parts += [_clean(b) for b in bullet_list]
    parts.append(_clean(description))
    text = "\n".join(p for p in parts if p)
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:space] if space >= max_chars // 2 else cut).rstrip()


def texts_for_items(items: pd.DataFrame, ocr_text: pd.DataFrame | None = None) -> list[str]:
    """:func:`text_for_embedding` of every row of a ``catalog_items`` frame, in its order.

    Args:
        items: rows with ``sample_id``, ``item_name``, ``bullets``, ``description``.
        ocr_text: optional ``ocr_text`` rows (``sample_id``, ``ocr_text``), joined by ``sample_id``;
            rows without one embed no image text.

    Returns:
        list of n str (the strings the text encoders embed and the embedding cache keys hash).
    """
    if ocr_text is None or len(ocr_text) == 0:
        ocr = [""] * len(items)
    else:
        ocr = ocr_text.set_index("sample_id")["ocr_text"].reindex(items["sample_id"].astype(str)).fillna("").tolist()
    return [
        text_for_embedding(r.item_name, r.bullets, r.description, o or None)
        for r, o in zip(items.itertuples(index=False), ocr)
    ]
