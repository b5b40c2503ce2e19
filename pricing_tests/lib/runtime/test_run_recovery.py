"""lib.runtime.run_recovery: which failed runs are retried, and when."""

import pytest

from pricing_assets.lib.runtime.run_recovery import LOOKBACK_S, MAX_ATTEMPTS, decide, is_transient

PG_DOWN = "DagsterCodeLocationLoadError: Failure loading pricing-assets\nDagsterPostgresException: too many retries for DB connection"
CONTRACT = "ContractViolation: raw_catalog violates its contract: column 'price' failed check greater_than(0)"


@pytest.mark.parametrize(
    ("reason", "messages", "expected"),
    [
        ("RUN_EXCEPTION", [PG_DOWN], True),
        (None, ["Execution of run failed.", PG_DOWN], True),
        ("UNKNOWN", ["run worker gone: pid 123 on host h no longer runs (killed, OOM, lost node)"], True),
        ("START_TIMEOUT", ["Run timed out due to taking longer than 300 seconds to start."], True),
        (
            "UNKNOWN",
            ["Run timed out due to taking longer than 21600 seconds."],
            False,
        ),  # a hang (max runtime): not retried
        (
            "STEP_FAILURE",
            [
                'OperationalError: (psycopg2.OperationalError) connection to server at "127.0.0.1", port 5432 failed: Connection refused'
            ],
            True,
        ),
        ("STEP_FAILURE", [CONTRACT], False),  # a contract violation fails the same way again
        ("STEP_FAILURE", [PG_DOWN, CONTRACT], False),  # any data failure among the step failures: not retried
        ("STEP_FAILURE", [], False),
        ("RUN_EXCEPTION", ["ValueError: catalog file has no column 'catalog_content'"], False),
        ("RUN_EXCEPTION", [], False),
    ],
)
def test_is_transient(reason, messages, expected):
    assert is_transient(reason, messages) is expected


def test_decide_backs_off_then_retries_then_gives_up():
    t0 = 1_000_000.0
    assert decide(0, t0, t0 + 10, False).retry is False  # first re-request due 30 s after the failure
    assert decide(0, t0, t0 + 10, False).wait_s == pytest.approx(20)
    first = decide(0, t0, t0 + 31, False)
    assert (first.retry, first.attempt) == (True, 1)
    assert decide(1, t0, t0 + 59, False).retry is False  # second: 60 s after the failure of the first
    assert decide(1, t0, t0 + 61, False).retry is True
    assert decide(3, t0, t0 + 241, False).attempt == 4
    last = decide(MAX_ATTEMPTS, t0, t0 + 10_000, False)
    assert last.retry is False and "gave up" in last.reason


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"superseded": True}, "later run"),
        ({"now": 1_000_000.0 + LOOKBACK_S + 1}, "ago"),
    ],
)
def test_decide_leaves_alone(kwargs, why):
    args = {"attempts_so_far": 0, "failed_at": 1_000_000.0, "now": 1_000_100.0, "superseded": False}
    d = decide(**{**args, **kwargs})
    assert d.retry is False and why in d.reason
