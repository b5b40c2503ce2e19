"""Which failed runs to run again: a run failed by its infrastructure (the instance's database, the
code location or its worker briefly unreachable) is retried with backoff; a run failed by its data
or code is not.

Dagster's own run retries (``run_retries`` in the instance config, crash-only) retry a run at once,
once its failure is recorded. When the fault lasts (a database down for a minute), that retry fails
too, or cannot even be launched ("Failed to retry run": Dagster then marks the run ``will_retry:
false`` for good), and nothing tries again once the database is back. ``recovery_sensors`` closes
that gap with :func:`decide`: bounded attempts spaced by ``lib.catalog.inbox.backoff_delay_s`` (30 s doubling,
capped at 15 min), only for failures this module classifies as transient (:func:`is_transient`).

Nothing here knows Dagster: the sensor hands in plain facts (failure reason, messages, times).
"""

from dataclasses import dataclass

from pricing_assets.lib.catalog.inbox import backoff_delay_s

#: Re-requests of one failed run at most (after Dagster's own retries): 30 s + 60 s + 120 s + 240 s
#: of backoff, about 7 min — several times the 60 s database outage the soak test injects.
MAX_ATTEMPTS = 4
#: Failed runs older than this are left alone (a fault of yesterday is an operator's decision).
LOOKBACK_S = 6 * 3600.0

#: Text of an error (class name or message, any level of its cause chain) that means the run's
#: infrastructure was unreachable, not that its data or code is wrong. Sources: dagster-postgres
#: (``DagsterPostgresException: too many retries for DB connection``), psycopg2/SQLAlchemy
#: (``OperationalError``: connection refused / server closed the connection), SQLite's
#: ``database is locked``, Dagster's code-location and gRPC errors, and this project's run-worker
#: watchdog ("run worker gone", ``instance_state.StaleRun.reason``).
TRANSIENT_MARKERS = (
    "DagsterPostgresException",
    "too many retries for DB connection",
    "OperationalError",
    "could not connect to server",
    "connection refused",
    "server closed the connection unexpectedly",
    "connection to server at",
    "database is locked",
    "DagsterCodeLocationLoadError",
    "DagsterUserCodeUnreachableError",
    "DagsterUserCodeProcessError",
    "StatusCode.UNAVAILABLE",
    "run worker gone",
    "seconds to start",  # run monitoring's start timeout (not its max-runtime timeout: a hang is not retried)
)
#: Dagster's ``dagster/failure_reason`` values that say the run's process, not a step, failed.
RUN_LEVEL_REASONS = (
    "RUN_EXCEPTION",
    "JOB_INITIALIZATION_FAILURE",
    "START_TIMEOUT",
    "UNEXPECTED_TERMINATION",
    "UNKNOWN",
)


def is_transient(failure_reason: str | None, messages: list[str]) -> bool:
    """True when a failed run's cause is its infrastructure, so running it again can succeed.

    Args:
        failure_reason: the run's ``dagster/failure_reason`` tag (``STEP_FAILURE``, ``RUN_EXCEPTION``, …)
            or None.
        messages: the texts of its failure: the run-failure message and every failed step's error
            chain (class names and messages).

    A step failure counts only when *every* message names an infrastructure error: a contract
    violation or a bad file fails the same way again and is never retried.
    """
    hits = [any(m.lower() in text.lower() for m in TRANSIENT_MARKERS) for text in messages]
    if failure_reason == "STEP_FAILURE":
        return bool(hits) and all(hits)
    return any(hits) and (failure_reason is None or failure_reason in RUN_LEVEL_REASONS)


@dataclass(frozen=True)
class RetryDecision:
    """What to do with one failed run.

    Attributes:
        retry: request a new run now.
        attempt: the attempt number the new run would be (1 = first re-request).
        reason: why (or why not), one sentence for the sensor's log and skip reason.
        wait_s: seconds until it is due, when it is transient but not due yet.
    """

    retry: bool
    attempt: int
    reason: str
    wait_s: float = 0.0


def decide(attempts_so_far: int, failed_at: float, now: float, superseded: bool) -> RetryDecision:
    """Whether to re-request now a run that failed transiently (:func:`is_transient`) and that
    Dagster's own run retries will not retry (the caller checks both first).

    Args:
        attempts_so_far: re-requests already made for the same original run.
        failed_at: when this (latest) failure ended, epoch s.
        now: epoch s.
        superseded: a later run of the same partition and assets is in progress or succeeded.
    """
    attempt = attempts_so_far + 1
    if superseded:
        return RetryDecision(False, attempt, "a later run of the same work is running or succeeded")
    if now - failed_at > LOOKBACK_S:
        return RetryDecision(False, attempt, f"failed more than {LOOKBACK_S / 3600:.0f} h ago")
    if attempts_so_far >= MAX_ATTEMPTS:
        return RetryDecision(False, attempt, f"gave up after {MAX_ATTEMPTS} re-requests")
    wait = failed_at + backoff_delay_s(attempt) - now
    if wait > 0:
        return RetryDecision(False, attempt, f"transient failure: attempt {attempt} due in {wait:.0f} s", wait)
    return RetryDecision(True, attempt, f"transient failure: attempt {attempt} of {MAX_ATTEMPTS}")
