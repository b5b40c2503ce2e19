"""Tests for pricing_assets.lib.catalog.parsing on the bundled real sample and real rows turned bad."""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricing_assets.lib.catalog.parsing import (
    ITEM_COLUMNS,
    MAX_TEXT_CHARS,
    QUARANTINE_COLUMNS,
    ROW_COLUMNS,
    CatalogFormatError,
    parse_catalog,
    parse_catalog_content,
    read_catalog,
)
from pricing_tests.helpers import LABELED_CSV as LABELED
from pricing_tests.helpers import UNLABELED_CSV as UNLABELED

HEADER = ["sample_id", "catalog_content", "image_link", "price"]


@pytest.fixture(scope="module")
def real_rows() -> list[dict]:
    """First 6 real labeled rows as dicts of strings."""
    with open(LABELED, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        return [next(reader) for _ in range(6)]


def write_csv(path: Path, rows: list[dict], header: list[str] = HEADER) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def assert_invariant(rows: pd.DataFrame, quarantine: pd.DataFrame, n_input: int) -> None:
    assert len(rows) + quarantine["row"].nunique() == n_input
    assert len(quarantine) == quarantine["row"].nunique()
    assert set(rows["row"]).isdisjoint(set(quarantine["row"]))


# ------------------------------------------------------------------ real sample


def test_real_labeled_sample_reads_clean():
    rows, quarantine = read_catalog(str(LABELED))
    assert len(rows) == 7216
    assert len(quarantine) == 0
    assert list(rows.columns) == list(ROW_COLUMNS)
    assert list(quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert rows["row"].tolist() == list(range(1, 7217))
    assert rows["sample_id"].iloc[0] == "16"
    assert rows["price"].dtype == np.float64
    assert rows["price"].iloc[0] == pytest.approx(19.37)
    assert rows["price"].between(0, 10_000, inclusive="neither").all()
    first = rows["catalog_content"].iloc[0]
    assert first.startswith("Item Name: Chex Mix Muddy Buddies")
    assert rows["content_hash"].iloc[0] == hashlib.sha256(first.encode("utf-8")).hexdigest()
    assert rows["sample_id"].is_unique
    assert rows.attrs["extra_columns"] == []
    assert rows["image_link"].str.startswith("https://").all()


def test_real_unlabeled_sample_has_nan_prices():
    rows, quarantine = read_catalog(str(UNLABELED))
    assert (len(rows), len(quarantine)) == (4481, 0)
    assert rows["price"].isna().all()
    assert rows["price"].dtype == np.float64
    assert rows.attrs["has_price"] is False


# ------------------------------------------------------------------ row-level problems

LONG_TEXT = "Item Name: Long thing\nProduct Description: " + "x" * 100_000


@pytest.mark.parametrize(
    ("column", "bad_value", "field", "reason_part"),
    [
        ("sample_id", "", "sample_id", "missing or empty sample_id"),
        ("sample_id", "   ", "sample_id", "missing or empty sample_id"),
        ("catalog_content", "", "catalog_content", "empty or whitespace"),
        ("catalog_content", "  \n\t ", "catalog_content", "empty or whitespace"),
        ("catalog_content", LONG_TEXT, "catalog_content", f"{len(LONG_TEXT)} chars > {MAX_TEXT_CHARS}"),
        ("price", "", "price", "price missing"),
        ("price", "nan", "price", "price missing"),
        ("price", "0", "price", "price is zero"),
        ("price", "0.0", "price", "price is zero"),
        ("price", "-3.5", "price", "price is negative"),
        ("price", "abc", "price", "price non-numeric"),
        ("price", "$19.37", "price", "price non-numeric"),
        ("price", "25000", "price", "price absurd"),
        ("price", "inf", "price", "price absurd"),
    ],
)
def test_bad_row_is_quarantined_with_reason(tmp_path, real_rows, column, bad_value, field, reason_part):
    rows_in = [dict(r) for r in real_rows]
    rows_in[2][column] = bad_value
    path = write_csv(tmp_path / "bad_catalog_row.csv", rows_in)
    rows, quarantine = read_catalog(str(path))
    assert len(quarantine) == 1
    rec = quarantine.iloc[0]
    assert rec["row"] == 3
    assert rec["field"] == field
    assert reason_part in rec["reason"]
    assert rec["source"] == str(path)
    assert len(rec["value"]) <= 200
    assert 3 not in set(rows["row"])
    assert_invariant(rows, quarantine, len(rows_in))


def test_duplicate_sample_id_keeps_first(tmp_path, real_rows):
    rows_in = [dict(r) for r in real_rows]
    rows_in[4]["sample_id"] = rows_in[1]["sample_id"]
    path = write_csv(tmp_path / "bad_catalog_dup.csv", rows_in)
    rows, quarantine = read_catalog(str(path))
    assert quarantine["row"].tolist() == [5]
    assert quarantine["reason"].iloc[0] == "duplicate sample_id, first seen at row 2"
    assert quarantine["sample_id"].iloc[0] == rows_in[1]["sample_id"]
    kept = rows.set_index("sample_id").loc[rows_in[1]["sample_id"]]
    assert kept["row"] == 2
    assert_invariant(rows, quarantine, 6)


def test_non_utf8_byte_quarantines_only_that_row(tmp_path, real_rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HEADER)
    w.writeheader()
    w.writerows(real_rows)
    data = buf.getvalue().encode("utf-8")
    target = real_rows[3]["catalog_content"][:30].encode("utf-8")
    assert target in data
    data = data.replace(target, target[:10] + b"\xff\xfe" + target[10:], 1)
    path = tmp_path / "bad_catalog_bytes.csv"
    path.write_bytes(data)
    rows, quarantine = read_catalog(str(path))
    assert quarantine[["row", "field", "reason"]].values.tolist() == [[4, "catalog_content", "non-UTF-8 bytes"]]
    assert "\ufffd" in quarantine["value"].iloc[0]
    assert len(rows) == 5
    assert not rows["catalog_content"].str.contains("\ufffd").any()


def test_many_problems_one_record_per_row(tmp_path, real_rows):
    rows_in = [dict(r) for r in real_rows]
    rows_in[0]["sample_id"] = ""
    rows_in[0]["price"] = "-1"  # second problem on the same row: only the first is reported
    rows_in[2]["price"] = "0"
    rows_in[5]["sample_id"] = rows_in[2]["sample_id"]  # dup of a row that is itself quarantined
    path = write_csv(tmp_path / "bad_catalog_many.csv", rows_in)
    rows, quarantine = read_catalog(str(path))
    assert quarantine["row"].tolist() == [1, 3, 6]
    assert quarantine["field"].tolist() == ["sample_id", "price", "sample_id"]
    assert quarantine["reason"].iloc[2] == "duplicate sample_id, first seen at row 3"
    assert rows["row"].tolist() == [2, 4, 5]
    assert_invariant(rows, quarantine, 6)


def test_image_links_are_not_quarantined(tmp_path, real_rows):
    rows_in = [dict(r) for r in real_rows]
    rows_in[0]["image_link"] = ""
    rows_in[1]["image_link"] = "ftp://example.com/a.jpg"
    rows_in[2]["image_link"] = "not a url"
    rows, quarantine = read_catalog(str(write_csv(tmp_path / "links.csv", rows_in)))
    assert len(quarantine) == 0
    assert rows["image_link"].iloc[0] is None
    assert rows["image_link"].iloc[1] == "ftp://example.com/a.jpg"
    assert rows["image_link"].iloc[2] == "not a url"


# ------------------------------------------------------------------ file-level problems


def test_malformed_csv_raises_with_file_and_line(tmp_path, real_rows):
    path = write_csv(tmp_path / "bad_catalog_fields.csv", real_rows)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.append('999,"Item Name: x",https://a/b.jpg,1.0,EXTRA,MORE\n')
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(CatalogFormatError, match=r"bad_catalog_fields\.csv.*malformed CSV.*line"):
        read_catalog(str(path))


def test_unterminated_quote_raises(tmp_path, real_rows):
    path = write_csv(tmp_path / "bad_catalog_quote.csv", real_rows[:2])
    path.write_text(path.read_text(encoding="utf-8") + '77,"Item Name: never closed,https://x/y.jpg,3\n')
    with pytest.raises(CatalogFormatError, match="bad_catalog_quote.csv"):
        read_catalog(str(path))


def test_missing_columns_are_named(tmp_path, real_rows):
    path = write_csv(tmp_path / "bad_catalog_cols.csv", real_rows, header=["sample_id", "price"])
    with pytest.raises(CatalogFormatError, match=r"catalog_content.*image_link") as exc:
        read_catalog(str(path))
    assert "bad_catalog_cols.csv" in str(exc.value)


@pytest.mark.parametrize("content", ["", "\n\n  \n", "sample_id,catalog_content,image_link,price\n"])
def test_empty_file_raises(tmp_path, content):
    path = tmp_path / "bad_catalog_empty.csv"
    path.write_text(content)
    with pytest.raises(CatalogFormatError, match="bad_catalog_empty.csv.*empty"):
        read_catalog(str(path))


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_catalog(str(tmp_path / "nope.csv"))


def test_extra_columns_dropped_and_listed(tmp_path, real_rows):
    rows_in = [dict(r, brand="x", note="y") for r in real_rows]
    path = write_csv(tmp_path / "extra.csv", rows_in, header=HEADER + ["brand", "note"])
    rows, quarantine = read_catalog(str(path))
    assert rows.attrs["extra_columns"] == ["brand", "note"]
    assert list(rows.columns) == list(ROW_COLUMNS)
    assert (len(rows), len(quarantine)) == (6, 0)


def test_parquet_with_wrong_dtypes(tmp_path, real_rows):
    frame = pd.DataFrame(
        {
            "sample_id": [int(r["sample_id"]) for r in real_rows],  # ints, not str
            "catalog_content": [r["catalog_content"] for r in real_rows],
            "image_link": [r["image_link"] for r in real_rows[:-1]] + [None],
            "price": [r["price"] for r in real_rows[:-2]] + ["abc", None],  # strings
        }
    )
    path = tmp_path / "typed.parquet"
    frame.to_parquet(path)
    rows, quarantine = read_catalog(str(path))
    assert rows["sample_id"].tolist() == [r["sample_id"] for r in real_rows[:4]]
    assert rows["price"].tolist() == pytest.approx([float(r["price"]) for r in real_rows[:4]])
    assert quarantine["reason"].tolist() == ["price non-numeric", "price missing in a labeled file"]
    assert_invariant(rows, quarantine, 6)


def test_reads_fsspec_url(real_rows):
    import fsspec

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HEADER)
    w.writeheader()
    w.writerows(real_rows)
    with fsspec.open("memory://bucket/batch_001.csv", "w", encoding="utf-8") as fh:
        fh.write(buf.getvalue())
    rows, quarantine = read_catalog("memory://bucket/batch_001.csv")
    assert len(rows) == 6 and len(quarantine) == 0
    assert rows["source"].iloc[0] == "memory://bucket/batch_001.csv"


# ------------------------------------------------------------------ parsing


def test_parse_real_content(real_rows):
    parsed = parse_catalog_content(real_rows[0]["catalog_content"])
    assert parsed["item_name"] == "Chex Mix Muddy Buddies, Mint Chocolate, 4.5 Oz (Pack of 7)"
    assert len(parsed["bullet_points"]) == 4
    assert parsed["bullet_points"][3] == "Country of origin is United States"
    assert parsed["description"] == ""
    assert parsed["ipq_value"] == 31.5
    assert parsed["ipq_unit"] == "Ounce"


def test_parse_real_content_with_description(real_rows):
    parsed = parse_catalog_content(real_rows[1]["catalog_content"])
    assert parsed["item_name"] == "FRONTIER Organic Bulk Garlic Flakes, 1 LB"
    assert parsed["bullet_points"][3] == "1 pound bulk bag (16 ounces)"
    assert parsed["description"].startswith("Garlics potency has earned it")
    assert (parsed["ipq_value"], parsed["ipq_unit"]) == (16.0, "Ounce")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # real row (sample_id 203602 style): numbered descriptions
            "Item Name: Food Coloring\nProduct Description 1: Whether you want a rainbow cake\n"
            "Product Description 2: GMO free\nValue: 1.0\nUnit: Count\n",
            {
                "item_name": "Food Coloring",
                "bullet_points": [],
                "description": "Whether you want a rainbow cake\nGMO free",
                "ipq_value": 1.0,
                "ipq_unit": "Count",
            },
        ),
        (  # real: "Bullet Point:" without number
            "Item Name: Fruit in Hand Original Pineapple, 35 Ounce -- 6 per case.\n"
            "Bullet Point: Food items cannot be returned.\nValue: 35.0\nUnit: Ounce\n",
            {
                "item_name": "Fruit in Hand Original Pineapple, 35 Ounce -- 6 per case.",
                "bullet_points": ["Food items cannot be returned."],
                "ipq_value": 35.0,
            },
        ),
        (  # lower-case keys, extra whitespace
            "item name :   Rice Paper  \n  bullet point 1:  round  \nvalue: nan\nunit:   None  \n",
            {"item_name": "Rice Paper", "bullet_points": ["round"], "ipq_unit": "None"},
        ),
        (  # missing Value/Unit
            "Item Name: Snyder's of Hanover Mini Pretzels\nBullet Point 1: Crunchy\n",
            {"item_name": "Snyder's of Hanover Mini Pretzels", "ipq_unit": ""},
        ),
        (  # no structure at all
            "Wonderful Pistachios 1.25 Ounce\nroasted and salted\n",
            {
                "item_name": "Wonderful Pistachios 1.25 Ounce",
                "bullet_points": [],
                "description": "roasted and salted",
                "ipq_unit": "",
            },
        ),
        ("", {"item_name": "", "bullet_points": [], "description": "", "ipq_unit": ""}),
    ],
)
def test_parse_odd_formats(text, expected):
    parsed = parse_catalog_content(text)
    for key, value in expected.items():
        assert parsed[key] == value, key
    if "ipq_value" not in expected:
        assert math.isnan(parsed["ipq_value"])


def test_parse_rejects_non_str():
    with pytest.raises(TypeError, match="catalog_content must be str"):
        parse_catalog_content(None)  # type: ignore[arg-type]


def test_parse_catalog_table_on_real_sample():
    rows, _ = read_catalog(str(LABELED))
    items = parse_catalog(rows)
    assert list(items.columns) == list(ITEM_COLUMNS)
    assert len(items) == 7216
    first = items.iloc[0]
    assert first["n_bullets"] == 4
    assert first["bullets"].count("\n") == 3
    assert first["ipq_value"] == 31.5 and first["ipq_unit"] == "Ounce"
    assert not first["has_description"]
    body = "\n".join([first["item_name"], first["bullets"]])
    assert first["text_chars"] == len(body) and first["text_words"] == len(body.split())
    assert first["price"] == pytest.approx(19.37)
    assert items["item_name"].str.len().gt(0).all()
    assert items["n_bullets"].dtype == np.int64
    assert items["has_description"].dtype == bool
    # ~1.5% of real rows have "Value: nan"/no value; the rest parse to numbers
    assert 0 < items["ipq_value"].isna().mean() < 0.05
    assert (items["content_hash"] == rows["content_hash"]).all()


def test_whitespace_never_changes_the_parsed_item():
    from pricing_assets.lib.catalog.parsing import normalise_whitespace

    text = "Item Name: Green  Tea ,  20 bags\nBullet Point 1: Strong\t black\n\nValue: 20.0\nUnit: Count"
    spaced = "\n".join("  " + "  ".join(line.split(" ")) + " \t" for line in text.split("\n")) + "\n\n"
    assert normalise_whitespace(spaced) == normalise_whitespace(text)
    assert normalise_whitespace(text).splitlines()[0] == "Item Name: Green Tea , 20 bags"
    a, b = (parse_catalog(pd.DataFrame({"sample_id": ["1"], "catalog_content": [t]})) for t in (text, spaced))
    cols = [c for c in ITEM_COLUMNS if c != "content_hash"]  # the hash identifies the row as delivered
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert a["item_name"].iloc[0] == "Green Tea , 20 bags" and a["bullets"].iloc[0] == "Strong black"
    with pytest.raises(TypeError):
        normalise_whitespace(None)


def test_text_size_ignores_the_pack_quantity():
    rows = pd.DataFrame(
        {
            "sample_id": ["1", "2"],
            "catalog_content": ["Item Name: Tea\nValue: 6.0\nUnit: Count", "Item Name: Tea\nValue: 120.0\nUnit: Count"],
        }
    )
    items = parse_catalog(rows)
    assert items["text_chars"].tolist() == [3, 3] and items["text_words"].tolist() == [1, 1]
    assert items["ipq_value"].tolist() == [6.0, 120.0]
    only_value = parse_catalog(pd.DataFrame({"sample_id": ["3"], "catalog_content": ["Value: 2\nUnit: Count"]}))
    assert only_value["text_chars"].iloc[0] == 0
