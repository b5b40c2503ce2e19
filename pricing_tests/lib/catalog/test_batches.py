"""``lib.catalog.batches.latest_batch_wins``: one row per ``sample_id``, the latest batch's (the last row
within a batch), counted replacements; checked by hand on small frames."""

import pandas as pd
import pytest

from pricing_assets.lib.catalog.batches import latest_batch_wins


def _frame():
    return pd.DataFrame(
        {
            "sample_id": ["1", "2", "1", "3", "2", "1"],
            "batch": ["b2", "b1", "b1", "b3", "b3", "b3"],
            "price": [20.0, 2.0, 10.0, 3.0, 22.0, 30.0],
        }
    )


def test_the_latest_batch_wins_in_ingestion_order():
    out, replaced = latest_batch_wins(_frame(), ["b1", "b2", "b3"])
    # b1 rows, then b2, then b3; "1" and "2" replaced by their b3 rows
    assert out.to_dict("list") == {
        "sample_id": ["3", "2", "1"],
        "batch": ["b3", "b3", "b3"],
        "price": [3.0, 22.0, 30.0],
    }
    assert replaced == 3
    assert list(out.index) == [0, 1, 2]


def test_the_order_of_batches_decides_not_the_row_order():
    out, replaced = latest_batch_wins(_frame(), ["b3", "b2", "b1"])
    assert dict(zip(out["sample_id"], out["price"])) == {"3": 3.0, "1": 10.0, "2": 2.0}
    assert list(out["batch"]) == ["b3", "b1", "b1"] and replaced == 3


def test_unknown_batches_count_as_the_newest():
    out, _ = latest_batch_wins(_frame(), ["b3"])  # b1, b2 unknown: after b3, in row order
    assert dict(zip(out["sample_id"], out["price"])) == {"3": 3.0, "1": 10.0, "2": 2.0}


def test_without_a_batch_column_the_last_row_wins():
    f = pd.DataFrame({"sample_id": ["a", "b", "a"], "price": [1.0, 2.0, 3.0]}, index=[10, 11, 12])
    out, replaced = latest_batch_wins(f)
    assert out.to_dict("list") == {"sample_id": ["b", "a"], "price": [2.0, 3.0]} and replaced == 1
    assert out.equals(f.drop_duplicates("sample_id", keep="last").reset_index(drop=True))


def test_no_duplicates_and_empty_frames_are_unchanged():
    f = pd.DataFrame({"sample_id": ["a", "b"], "batch": ["x", "x"], "price": [1.0, 2.0]})
    out, replaced = latest_batch_wins(f, ["x"])
    assert out.equals(f) and replaced == 0
    empty, replaced = latest_batch_wins(f.iloc[:0], ["x"])
    assert empty.empty and list(empty.columns) == ["sample_id", "batch", "price"] and replaced == 0


def test_the_same_rows_as_the_copies_it_replaces():
    """What the rule's former copies (in ``lib.features.training_data`` and ``price_predictions``: rank sort, then
    ``drop_duplicates(keep="last")``) computed, row for row."""
    f, order = _frame(), ["b1", "b2", "b3"]
    rank = {b: i for i, b in enumerate(order)}
    by_rank = f.assign(_rank=f["batch"].map(lambda b: rank.get(b, len(rank)))).sort_values("_rank", kind="stable")
    expected = by_rank.drop_duplicates("sample_id", keep="last").drop(columns="_rank").reset_index(drop=True)
    out, replaced = latest_batch_wins(f, order)
    assert out.equals(expected) and replaced == len(f) - len(expected)


def test_a_frame_without_sample_id_is_refused():
    with pytest.raises(KeyError):
        latest_batch_wins(pd.DataFrame({"x": [1]}))
