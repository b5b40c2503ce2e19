"""Who executes a run, and is that process still alive: the facts behind stale-run detection.

A Dagster run executes in one process, its *run worker*: the ``pricing`` CLI's own process for the
in-process runs of ``pricing materialize``, or the ``dagster api execute_run`` subprocess that the
default run launcher starts from the code server. When that process is killed (SIGKILL, OOM kill, a
lost node, a closed laptop) nothing marks the run finished: it stays ``STARTED`` and keeps the pool
slots its steps claimed. This module identifies a worker (:class:`WorkerIdentity`: host, pid and the
process's start time, so a recycled pid is not mistaken for the worker) and judges whether it is
alive (:func:`worker_state`). It knows nothing of Dagster; ``pricing_assets.instance_state`` applies
it to the instance's runs.

A worker on another host is never judged dead from here (:data:`UNKNOWN`): only a process on this
machine can be checked.
"""

import os
import socket
from dataclasses import dataclass

import psutil

#: Run tags that carry a worker's identity (set by the ``pricing`` CLI on its in-process runs).
HOST_TAG = "pricing/worker_host"
PID_TAG = "pricing/worker_pid"
STARTED_TAG = "pricing/worker_started"

ALIVE, DEAD, UNKNOWN = "alive", "dead", "unknown"

#: Seconds of tolerance when comparing a process's start time with the recorded one (psutil derives
#: it from boot time and clock ticks: sub-second jitter) or with the time a run reported its pid.
START_TIME_SLACK_S = 2.0


@dataclass(frozen=True)
class WorkerIdentity:
    """The process that executes a run.

    Attributes:
        host: ``socket.gethostname()`` of the machine (container) the process runs on.
        pid: its process id.
        started_at: its start time, seconds since the epoch (UTC), or None when unknown.
        started_before: an upper bound of the start time (epoch s), when only that is known (the
            time the worker reported its pid in the run's event log); None otherwise.
    """

    host: str
    pid: int
    started_at: float | None = None
    started_before: float | None = None

    def describe(self) -> str:
        """``pid 123 on host h`` (for messages)."""
        return f"pid {self.pid} on host {self.host}"


def this_host() -> str:
    """This machine's (container's) host name, as recorded in :data:`HOST_TAG`."""
    return socket.gethostname()


def current_worker() -> WorkerIdentity:
    """The identity of the calling process (host, pid, start time)."""
    pid = os.getpid()
    return WorkerIdentity(this_host(), pid, psutil.Process(pid).create_time())


def worker_tags(worker: WorkerIdentity | None = None) -> dict[str, str]:
    """Run tags naming ``worker`` (default: this process); read back by :func:`worker_from_tags`."""
    w = worker or current_worker()
    return {
        HOST_TAG: w.host,
        PID_TAG: str(w.pid),
        STARTED_TAG: f"{w.started_at:.3f}" if w.started_at is not None else "",
    }


def worker_from_tags(tags: dict[str, str]) -> WorkerIdentity | None:
    """The worker named by a run's tags (:func:`worker_tags`), or None when they name none.

    Raises:
        ValueError: the pid or start-time tag is not a number (tags edited by hand).
    """
    if HOST_TAG not in tags or PID_TAG not in tags:
        return None
    started = tags.get(STARTED_TAG) or None
    return WorkerIdentity(tags[HOST_TAG], int(tags[PID_TAG]), float(started) if started else None)


def worker_state(worker: WorkerIdentity, host: str | None = None) -> str:
    """Whether ``worker`` still runs: :data:`ALIVE`, :data:`DEAD` or :data:`UNKNOWN`.

    ``DEAD`` only when the worker is on this host (``host``, default :func:`this_host`) and either no
    process has its pid, or the process holding that pid started at another time than the worker
    (``started_at`` differs by more than :data:`START_TIME_SLACK_S`, or it started after
    ``started_before``): the pid was recycled. A zombie (exited, not yet reaped by its parent) is dead.
    A worker on another host is ``UNKNOWN``: it is never judged from here.
    """
    if worker.host != (host or this_host()):
        return UNKNOWN
    try:
        proc = psutil.Process(worker.pid)
        created = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return DEAD
    except psutil.NoSuchProcess:
        return DEAD
    except psutil.AccessDenied:  # a process of another user holds the pid: it exists, not ours to judge
        return UNKNOWN
    if worker.started_at is not None and abs(created - worker.started_at) > START_TIME_SLACK_S:
        return DEAD
    if worker.started_before is not None and created > worker.started_before + START_TIME_SLACK_S:
        return DEAD
    return ALIVE
