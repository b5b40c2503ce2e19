"""Alerts for operators: what failed, formatted once, delivered to a webhook (no Dagster here).

An :class:`Alert` is one event: a failed run, a failed ERROR-severity asset check, or an asset
whose freshness turned ``FAIL``. :func:`format_alert` renders it as one headline plus detail lines
(job, failed step, the cause's first line, run id, a link to the run in the UI);
:func:`post_webhook` POSTs it as JSON whose ``text`` field is that rendering (what a Slack incoming
webhook shows) next to the structured fields. The sensors of ``pricing_assets/defs/alerts.py``
build the alerts from the instance and decide which sinks get them.

Delivery is bounded: a connection error, a timeout, a 429 or a 5xx is retried
(:data:`WEBHOOK_ATTEMPTS` attempts, backoff :data:`BACKOFF_S` doubling), a 4xx is not, and no
delivery takes longer than about ``timeout_s * WEBHOOK_ATTEMPTS`` plus the backoff: a dead
endpoint costs seconds, never the sensor's tick.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

#: The kinds of alert, one per kind of event.
RUN_FAILURE = "run_failure"
CHECK_FAILURE = "check_failure"
FRESHNESS = "freshness"
ALERT_KINDS = (RUN_FAILURE, CHECK_FAILURE, FRESHNESS)
#: Base URL of the Dagster UI when ``PRICING_UI_URL`` is unset (``dg dev``'s default address).
DEFAULT_UI_URL = "http://127.0.0.1:3000"
#: Seconds one webhook request may take (connect, send, read), per attempt.
DEFAULT_TIMEOUT_S = 5.0
#: Attempts per webhook delivery (1 + retries) on a transient error.
WEBHOOK_ATTEMPTS = 3
#: Seconds before the first retry; doubles per retry, at most :data:`MAX_BACKOFF_S`.
BACKOFF_S = 0.25
MAX_BACKOFF_S = 2.0
#: Characters kept of a cause's first line.
MAX_CAUSE_CHARS = 300
#: Alerts sent per sensor tick at most; the rest are summed up in one more alert (no storm).
MAX_ALERTS_PER_TICK = 10


@dataclass(frozen=True)
class Alert:
    """One event an operator should see.

    Attributes:
        kind: one of :data:`ALERT_KINDS`.
        title: the headline, one line (what failed).
        details: ``(label, value)`` lines under the headline, in order (empty values are left out).
        run_id: the run the event belongs to, if any.
        job: that run's job name, if any.
        asset: the asset (``a/b`` user string), for check and freshness alerts.
        check: the asset check's name, for check alerts.
        link: URL of the run (or asset) in the Dagster UI, if known.
        event_id: what makes the event unique besides the fields above (an event log storage id);
            part of :attr:`dedupe_key`.
    """

    kind: str
    title: str
    details: tuple[tuple[str, str], ...] = ()
    run_id: str | None = None
    job: str | None = None
    asset: str | None = None
    check: str | None = None
    link: str | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert kind {self.kind!r}: expected one of {ALERT_KINDS}")

    @property
    def dedupe_key(self) -> str:
        """One key per event: ``kind:run_id:asset:check:event_id`` (empty parts for absent fields)."""
        return ":".join(p or "" for p in (self.kind, self.run_id, self.asset, self.check, self.event_id))

    @property
    def text(self) -> str:
        """The rendering of :func:`format_alert`."""
        return format_alert(self)

    def payload(self) -> dict:
        """The webhook's JSON body: ``text`` (Slack-compatible), ``kind``, ``title``, ``run_id``,
        ``job``, ``asset``, ``check``, ``link``, ``dedupe_key`` and ``details`` (a label → value map)."""
        return {
            "text": self.text,
            "kind": self.kind,
            "title": self.title,
            "run_id": self.run_id,
            "job": self.job,
            "asset": self.asset,
            "check": self.check,
            "link": self.link,
            "dedupe_key": self.dedupe_key,
            "details": dict(self.details),
        }


def first_line(text: str | None, limit: int = MAX_CAUSE_CHARS) -> str:
    """The first non-blank line of ``text``, stripped, cut to ``limit`` characters ("" for none)."""
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def run_link(ui_url: str | None, run_id: str) -> str:
    """``{ui_url}/runs/{run_id}`` (``ui_url`` default :data:`DEFAULT_UI_URL`, trailing ``/`` dropped)."""
    return f"{(ui_url or DEFAULT_UI_URL).rstrip('/')}/runs/{run_id}"


def asset_link(ui_url: str | None, asset: str) -> str:
    """``{ui_url}/assets/{asset}`` (the asset's page in the Dagster UI; ``asset`` as ``a/b``)."""
    return f"{(ui_url or DEFAULT_UI_URL).rstrip('/')}/assets/{asset}"


def format_alert(alert: Alert) -> str:
    """``[pricing] <title>`` then one ``label: value`` line per non-empty detail, then the link."""
    lines = [f"[pricing] {alert.title}"]
    lines += [f"{label}: {value}" for label, value in alert.details if value]
    if alert.link:
        lines.append(f"link: {alert.link}")
    return "\n".join(lines)


def run_failure_alert(
    run_id: str,
    job: str,
    step: str | None,
    cause: str | None,
    ui_url: str | None = None,
    partition: str | None = None,
    retry: tuple[int, int] | None = None,
) -> Alert:
    """The alert of one failed run.

    Args:
        run_id: the failed run's id.
        job: its job name.
        step: the first failed step's key (None when the run failed outside a step).
        cause: the error message; its first line is kept.
        ui_url: base URL of the Dagster UI (default :data:`DEFAULT_UI_URL`).
        partition: the run's partition, if any.
        retry: ``(attempt, max_attempts)`` when the run was itself a re-request of a failed run.
    """
    where = f" at {step}" if step else ""
    suffix = f" (retry {retry[0]} of {retry[1]})" if retry else ""
    return Alert(
        kind=RUN_FAILURE,
        title=f"run of {job} failed{where}{suffix}",
        details=(
            ("job", job),
            ("partition", partition or ""),
            ("failed step", step or ""),
            ("cause", first_line(cause) or "unknown (see the run)"),
            ("run", run_id),
        ),
        run_id=run_id,
        job=job,
        link=run_link(ui_url, run_id),
    )


def check_failure_alert(
    asset: str,
    check: str,
    run_id: str | None,
    description: str | None,
    event_id: str,
    ui_url: str | None = None,
    job: str | None = None,
    partition: str | None = None,
    blocking: bool = False,
) -> Alert:
    """The alert of one failed asset check evaluation.

    Args:
        asset: the checked asset (``a/b``).
        check: the check's name.
        run_id: the run that evaluated it (None for a runless evaluation).
        description: the check result's description (its first line becomes the cause).
        event_id: the evaluation's event log storage id (one alert per evaluation).
        ui_url: base URL of the Dagster UI.
        job: the run's job name, if known.
        partition: the checked partition, if any.
        blocking: the check blocks its downstream assets.
    """
    return Alert(
        kind=CHECK_FAILURE,
        title=f"{'blocking ' if blocking else ''}check {check} failed on {asset}",
        details=(
            ("asset", asset),
            ("partition", partition or ""),
            ("check", check),
            ("job", job or ""),
            ("cause", first_line(description)),
            ("run", run_id or ""),
        ),
        run_id=run_id,
        job=job,
        asset=asset,
        check=check,
        link=run_link(ui_url, run_id) if run_id else asset_link(ui_url, asset),
        event_id=event_id,
    )


def freshness_alert(asset: str, previous_state: str, event_id: str, ui_url: str | None = None) -> Alert:
    """The alert of an asset whose freshness state turned ``FAIL`` (from ``previous_state``).

    Args:
        asset: the asset (``a/b``).
        previous_state: its freshness state before (``PASS``, ``WARN``, ``UNKNOWN``, …).
        event_id: the state change's event log storage id.
        ui_url: base URL of the Dagster UI.
    """
    return Alert(
        kind=FRESHNESS,
        title=f"{asset} is stale: freshness {previous_state} -> FAIL",
        details=(("asset", asset), ("previous state", previous_state)),
        asset=asset,
        link=asset_link(ui_url, asset),
        event_id=event_id,
    )


def cap_alerts(alerts: Sequence[Alert], limit: int = MAX_ALERTS_PER_TICK) -> list[Alert]:
    """At most ``limit`` alerts: the first ``limit - 1`` and one that counts and names the rest (so
    a burst of failures is a bounded number of messages); ``alerts`` unchanged when within ``limit``."""
    if len(alerts) <= limit:
        return list(alerts)
    kept, rest = list(alerts[: limit - 1]), alerts[limit - 1 :]
    names = ", ".join(sorted({a.asset or a.job or a.kind for a in rest}))
    kept.append(
        Alert(
            kind=rest[0].kind,
            title=f"{len(rest)} more failures this tick",
            details=(("of", first_line(names)),),
            event_id="+".join(a.dedupe_key for a in rest)[:200],
        )
    )
    return kept


def _transient(exc: BaseException) -> bool:
    """A connection error, a timeout, or a 429 / 5xx reply: worth another attempt."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


@dataclass
class WebhookSender:
    """POSTs alerts to one URL with bounded retries (:func:`post_webhook` is the one-call form).

    Attributes:
        url: the webhook URL.
        timeout_s: seconds per attempt (connect, write, read each).
        attempts: attempts on a transient error (:data:`WEBHOOK_ATTEMPTS`).
        backoff_s: seconds before the first retry, doubling up to :data:`MAX_BACKOFF_S`.
        attempts_made: attempts of the last :meth:`send` (for logs and tests).
    """

    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    attempts: int = WEBHOOK_ATTEMPTS
    backoff_s: float = BACKOFF_S
    attempts_made: int = field(default=0, init=False)

    def send(self, alert: Alert) -> int:
        """POST ``alert.payload()`` as JSON; returns the HTTP status of the accepted reply (2xx/3xx).

        Raises:
            httpx.HTTPStatusError: the endpoint answered 4xx (not retried), or 429/5xx on every attempt.
            httpx.TransportError: it could not be reached (refused, DNS, timeout) on every attempt.
        """
        self.attempts_made = 0

        @retry(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=wait_exponential(multiplier=self.backoff_s, min=self.backoff_s, max=MAX_BACKOFF_S),
            reraise=True,
        )
        def attempt() -> int:
            self.attempts_made += 1
            with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
                response = client.post(self.url, json=alert.payload())
            response.raise_for_status()
            return response.status_code

        return attempt()


def post_webhook(url: str, alert: Alert, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """POST one alert to ``url`` (see :class:`WebhookSender`); returns the reply's HTTP status.

    Raises:
        httpx.HTTPError: delivery failed (a 4xx at once; a transient error after
            :data:`WEBHOOK_ATTEMPTS` attempts). The caller logs it; it never retries further.
    """
    return WebhookSender(url, timeout_s=timeout_s).send(alert)
