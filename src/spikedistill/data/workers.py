"""Worker processes that die with their parent, stop on Ctrl-C and report errors as one line.

Every pool of worker processes the package starts (``compare`` / ``ablate --jobs``, ``events
convert`` / ``emulate --workers``, the streaming DataLoader's workers) runs
:func:`die_with_parent` first in each worker:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (through ``ctypes``) when the pool is started
  from the parent's main thread (the signal follows the *thread* that forked the worker);
- everywhere, a daemon thread that polls ``os.getppid()`` every ``interval`` seconds and ends the
  worker (``os._exit``) once the parent is gone, even while the worker is busy in Python code.

So ``kill -9`` of the command leaves no worker behind (no orphan goes on training or holds a run
lock). :func:`process_pool` makes such a pool; :func:`stop_pool` ends its workers at once (on
Ctrl-C or an error: ``shutdown(wait=True)`` would wait for every running job);
:func:`worker_message` cuts the traceback that DataLoader puts into a worker's error message back
to the worker's one line.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Optional

PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> bool:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``; False where it is not available (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent_pid:
            os._exit(1)


def die_with_parent(parent_pid: int, interval: float = 0.5, death_signal: bool = True,
                    *_: Any) -> None:
    """Initializer of a worker process whose parent is ``parent_pid``: the parent-death signal
    (``death_signal``, Linux) and the ``os.getppid()`` watchdog (module docstring). Extra
    arguments (a DataLoader's worker id) are ignored."""
    if death_signal:
        _set_parent_death_signal()
    if os.getppid() != parent_pid:            # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, float(interval)), daemon=True,
                     name="spikedistill-parent-watchdog").start()


def parent_watch(interval: float = 0.5):
    """``die_with_parent`` bound to this process as the parent (an ``initializer`` /
    ``worker_init_fn``); the death signal only when called from the main thread."""
    main = threading.current_thread() is threading.main_thread()
    return functools.partial(die_with_parent, os.getpid(), interval, main)


def process_pool(max_workers: int, mp_context=None) -> ProcessPoolExecutor:
    """A :class:`ProcessPoolExecutor` whose workers die with this process."""
    init = parent_watch()
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=mp_context,
                               initializer=init.func, initargs=init.args)


def stop_pool(pool: ProcessPoolExecutor, grace: float = 2.0) -> None:
    """End ``pool`` now: pending jobs cancelled, running workers terminated (SIGTERM, then
    SIGKILL after ``grace`` seconds), without waiting for their jobs to finish."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(timeout=grace)


def worker_message(exc: BaseException) -> str:
    """The worker's own one-line message of an error re-raised by a DataLoader (``Caught
    DataError in DataLoader worker process 0.\\nOriginal Traceback ...\\nmodule.DataError: MSG``
    gives ``MSG``); other messages unchanged."""
    text = str(exc)
    if "\n" not in text or not text.startswith("Caught "):
        return text
    last = text.rstrip().splitlines()[-1]
    for prefix in (f"{type(exc).__module__}.{type(exc).__qualname__}: ", f"{type(exc).__name__}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


def pool_failure(exc: BaseException, what: str) -> Optional[str]:
    """One line for a pool whose worker died outright (``BrokenProcessPool``: killed, out of
    memory), else None."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, BrokenProcessPool):
        return (f"{what}: a worker process died unexpectedly (killed, or out of memory?); "
                "run again with fewer workers or --jobs 1 / --workers 1 to see its error")
    return None


def pool_map(fn, jobs, workers: int, what: str, mp_context=None):
    """``fn(job)`` of every job in order, computed by ``workers`` processes of
    :func:`process_pool`; on an error, Ctrl-C or a consumer that stops early the pool is ended at
    once (:func:`stop_pool`); a worker that died outright is one line (:func:`pool_failure`)."""
    from spikedistill.errors import SpikeDistillError

    pool = process_pool(workers, mp_context)
    try:
        for result in pool.map(fn, jobs):
            yield result
    except BaseException as exc:
        stop_pool(pool)
        line = pool_failure(exc, what)
        if line is not None:
            raise SpikeDistillError(line) from None
        raise
    pool.shutdown(wait=True)
