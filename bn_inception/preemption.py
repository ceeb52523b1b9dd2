"""SIGTERM as a request to save and stop (preemption): installed first thing, polled by the trainer.

Entry points call `install()` before their slow imports, so that a SIGTERM during start-up or compilation
also ends the run cleanly (exit status 0) instead of killing it. Imports nothing heavy on purpose.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

_requested = threading.Event()
_stderr: list[int] = []  # a copy of the console's stderr, taken at install: stderr may be held aside later


def _handle(signum, frame) -> None:
    _requested.set()
    os.write(_stderr[0] if _stderr else 2, b"SIGTERM received: the run saves what it has and stops.\n")


def install() -> Any:
    """Turns SIGTERM into a flag (only possible from the main thread; elsewhere a no-op). Returns the
    handler it replaced, for `restore` (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if not _stderr:
        _stderr.append(os.dup(2))
    return signal.signal(signal.SIGTERM, _handle)


def restore(previous: Any) -> None:
    """Puts back the SIGTERM handler that `install` replaced: a process that trained once (a notebook, a
    test session) is again stopped by SIGTERM as before."""
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def requested() -> bool:
    """True once SIGTERM has arrived in this process."""
    return _requested.is_set()


def request() -> None:
    """Asks for a stop as SIGTERM would (tests, and code that wants to stop the run at the next step)."""
    _requested.set()


def reset() -> None:
    """Forgets an earlier request (tests that run several trainings in one process)."""
    _requested.clear()
