"""The inbox sensor's decisions without a sensor context (``lib.catalog.inbox``: ``start_tick``, ``InboxTick``,
``listing_failed``, ``claimed_batches``): which files are tried, what a stored file requests, what
each kind of failure records and logs, the next cursor and the skip message; checked by value."""

import pytest

from pricing_assets.lib.catalog.inbox import (
    ERROR_AFTER_ATTEMPTS,
    InboxDefect,
    InboxFile,
    claimed_batches,
    listing_failed,
    start_tick,
)

NOW = 1_000.0


def _file(name: str, size: int = 10, mtime: float = 0.0, version: str = "v1") -> InboxFile:
    return InboxFile(path=f"/in/{name}", size=size, mtime=mtime, version=version)


def _tick(files, cursor=None):
    return start_tick("/in", files, cursor or {}, NOW, min_age_s=0, object_store=True)


def test_start_tick_keeps_the_records_of_present_files_and_their_batch_names():
    a, b = _file("a.csv"), _file("b.csv")
    cursor = {
        "done": {"/in/gone.csv": "1|x"},
        "retry": {
            "/in/a.csv": {
                "signature": "10|v1",
                "attempts": 1,
                "first_failed_at": 900.0,
                "next_try_at": 930.0,
                "error": "OSError: x",
            },
            "/in/gone.csv": {"signature": "1|x", "attempts": 2},
        },
        "defects": {"/in/gone.csv": {"signature": "1|x", "reason": "r", "at": 1.0}},
        "listing": {"failures": 2, "since": 1.0, "error": "e"},
    }
    tick = _tick([a, b], cursor)
    assert tick.ready == [a, b]
    assert list(tick.retry) == ["/in/a.csv"] and tick.defects == {}
    assert tick.claimed == {"a": "/in/a.csv"}
    assert tick.cursor == {"done": {}, "sizes": {"/in/a.csv": 10, "/in/b.csv": 10}}


def test_claimed_batches_first_sorted_path_wins():
    assert claimed_batches({"/in/x/day1.csv": {}, "/in/a/day1.parquet": {}, "/in/b.csv": {}}) == {
        "day1": "/in/a/day1.parquet",
        "b": "/in/b.csv",
    }


def test_a_stored_file_requests_one_run_and_is_done_in_its_version():
    f = _file("day 1.csv", size=42, version="e1")
    tick = _tick(
        [f],
        {
            "retry": {f.path: {"signature": "42|e1", "attempts": 1, "next_try_at": NOW - 1, "error": "x"}},
            "defects": {f.path: {"signature": "old", "reason": "r", "at": 1.0}},
        },
    )
    assert tick.hold_back(f) is False  # the retry is due
    batch = tick.batch_for(f)
    assert batch == "day_1"
    request = tick.stored(f, batch)
    assert request == {
        "run_key": "/in/day 1.csv|42|e1",
        "partition_key": "day_1",
        "tags": {"pricing/inbox_file": "/in/day 1.csv", "pricing/inbox_version": "42|e1"},
    }
    assert tick.next_cursor() == {
        "done": {"/in/day 1.csv": "42|e1"},
        "sizes": {"/in/day 1.csv": 42},
        "retry": {},
        "defects": {},
    }
    assert tick.skip_message() is None
    assert tick.new_batches(lambda b: False) == ["day_1"] and tick.new_batches({"day_1"}.__contains__) == []


def test_a_batch_name_owned_by_another_file_is_a_defect():
    older, newer = _file("day1.csv"), _file("day1.parquet")
    tick = _tick([older, newer])
    tick.stored(older, tick.batch_for(older))
    with pytest.raises(InboxDefect, match="'day1' is also derived from /in/day1.csv"):
        tick.batch_for(newer)
    assert tick.batch_for(older) == "day1"  # the owner itself may come again
    with pytest.raises(InboxDefect, match="unusable file name"):
        tick.batch_for(_file("_draft.csv"))


def test_a_defect_is_refused_once_and_logged_as_an_error():
    f = _file("bad.csv")
    tick = _tick([f], {"retry": {f.path: {"signature": "10|v1", "attempts": 2, "next_try_at": NOW, "error": "x"}}})
    level, msg = tick.failed_with(f, "bad", InboxDefect("missing required column(s) ['image_link']"))
    assert (level, msg) == (
        "error",
        "refused /in/bad.csv, not retried until the file changes: missing required column(s) ['image_link']",
    )
    assert tick.refused == {f.path: "missing required column(s) ['image_link']"}
    assert tick.defects == {
        f.path: {"signature": "10|v1", "reason": "missing required column(s) ['image_link']", "at": NOW}
    }
    assert tick.cursor["done"] == {f.path: "10|v1"} and tick.retry == {}
    assert tick.skip_message() == (
        "no new catalog file in /in; refused 1 (file defects, not retried until the file changes): "
        "{'/in/bad.csv': \"missing required column(s) ['image_link']\"}"
    )


def test_a_transient_failure_backs_off_keeps_the_name_and_turns_to_an_error_at_the_fifth_attempt():
    f = _file("day1.csv")
    tick = _tick([f])
    level, msg = tick.failed_with(f, "day1", PermissionError(13, "Permission denied"))
    assert level == "warning"
    assert (
        msg
        == "cannot store /in/day1.csv (attempt 1, failing for 0 s): PermissionError: [Errno 13] Permission denied; next try in 30 s"
    )
    assert tick.retry[f.path] == {
        "signature": "10|v1",
        "attempts": 1,
        "first_failed_at": NOW,
        "next_try_at": NOW + 30,
        "error": "PermissionError: [Errno 13] Permission denied",
    }
    assert tick.claimed == {"day1": f.path} and tick.failed == {
        f.path: "attempt 1: PermissionError: [Errno 13] Permission denied"
    }
    assert tick.unreachable is None and f.path not in tick.cursor["done"]
    assert (
        tick.skip_message()
        == "no new catalog file in /in; failed, will retry 1: {'/in/day1.csv': 'attempt 1: PermissionError: [Errno 13] Permission denied'}"
    )

    record = {**tick.retry[f.path], "attempts": ERROR_AFTER_ATTEMPTS - 1, "first_failed_at": NOW - 100}
    later = _tick([f], {"retry": {f.path: record}})
    level, msg = later.failed_with(f, "day1", OSError(5, "Input/output error"))
    assert level == "error" and later.retry[f.path]["attempts"] == ERROR_AFTER_ATTEMPTS
    assert later.retry[f.path]["next_try_at"] == NOW + 480 and "failing for 100 s" in msg


def test_an_unreachable_endpoint_holds_back_the_rest_of_the_tick():
    a, b = _file("a.csv"), _file("b.csv")
    tick = _tick([a, b])
    tick.failed_with(a, "a", ConnectionRefusedError(111, "Connection refused"))
    assert tick.unreachable == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert tick.hold_back(b) is True
    assert tick.waiting == {
        b.path: "not tried this tick, an endpoint is unreachable: ConnectionRefusedError: [Errno 111] Connection refused"
    }
    assert b.path not in tick.retry  # not counted as an attempt


def test_a_retry_not_due_waits_with_its_attempt_and_delay():
    f = _file("a.csv")
    rec = {
        "signature": "10|v1",
        "attempts": 2,
        "first_failed_at": 900.0,
        "next_try_at": NOW + 45,
        "error": "OSError: [Errno 5] x",
    }
    tick = _tick([f], {"retry": {f.path: rec}})
    assert tick.hold_back(f) is True
    assert tick.waiting == {f.path: "attempt 3 in 45 s (last: OSError: [Errno 5] x)"}
    changed = _file("a.csv", size=11)  # another version: tried at once
    assert _tick([changed], {"retry": {f.path: rec}}).hold_back(changed) is False


def test_a_vanished_file_records_nothing_and_a_programming_error_is_raised():
    f = _file("a.csv")
    tick = _tick([f])
    level, msg = tick.failed_with(f, "a", FileNotFoundError(2, "No such file"))
    assert level == "warning" and msg.startswith("/in/a.csv: not found (FileNotFoundError: [Errno 2] No such file)")
    assert (
        tick.retry == {}
        and tick.defects == {}
        and tick.cursor["done"] == {}
        and tick.failed == {}
        and tick.refused == {}
    )
    with pytest.raises(KeyError, match="bug"):
        tick.failed_with(f, "a", KeyError("bug"))


def test_skip_message_names_at_most_three_waiting_files():
    files = [_file(f"f{i}.csv") for i in range(5)]
    tick = start_tick("/in", files, {}, NOW, min_age_s=0, object_store=False)  # first sight: size not yet stable
    assert tick.ready == [] and len(tick.waiting) == 5
    assert tick.skip_message() == (
        "no new catalog file in /in; waiting for 5: {'/in/f0.csv': 'size not yet stable (seen for the first time or still growing)', "
        "'/in/f1.csv': 'size not yet stable (seen for the first time or still growing)', "
        "'/in/f2.csv': 'size not yet stable (seen for the first time or still growing)'}"
    )


def test_a_failed_listing_keeps_the_cursor_and_counts():
    cursor = {"done": {"/in/a.csv": "1|x"}}
    kept, level, msg = listing_failed(cursor, NOW, ConnectionRefusedError(111, "refused"), "s3://bucket")
    assert kept == {
        "done": {"/in/a.csv": "1|x"},
        "listing": {"failures": 1, "since": NOW, "error": "ConnectionRefusedError: [Errno 111] refused"},
    }
    assert level == "warning"
    assert msg == (
        "cannot list the inbox s3://bucket (1 tick(s) in a row): ConnectionRefusedError: [Errno 111] refused; "
        "nothing marked, listing again next tick"
    )
    for _ in range(ERROR_AFTER_ATTEMPTS - 1):
        kept, level, _msg = listing_failed(kept, NOW + 30, OSError("down"), "s3://bucket")
    assert (
        kept["listing"] == {"failures": ERROR_AFTER_ATTEMPTS, "since": NOW, "error": "OSError: down"}
        and level == "error"
    )
    assert "listing" not in _tick([]).next_cursor()  # a listing that works drops the record
