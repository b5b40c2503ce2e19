"""How many CPU threads a step may use (one source for every library that takes a thread count)."""

import os


def default_threads() -> int:
    """Threads for torch, onnxruntime and sparse products: ``$OMP_NUM_THREADS`` when set to a positive
    integer, else the CPUs this process may run on (``os.sched_getaffinity``, which respects a
    container's cpuset), at least 1."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
