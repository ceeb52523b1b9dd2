"""SIGTERM and Ctrl-C as a request to save and stop (preemption): installed first thing, polled by the trainer.

Entry points call `install()` before their slow imports, so that a SIGTERM during start-up or compilation
also ends the run cleanly (exit status 0) instead of killing it. Ctrl-C (SIGINT) is the same request; a
second Ctrl-C stops the process at once (exit status 130), without saving. Imports nothing heavy on purpose.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

_requested = threading.Event()
_interrupted = threading.Event()  # a first Ctrl-C arrived (a second one stops at once; SIGTERM does not count)
_stderr: list[int] = []  # a copy of the console's stderr, taken at install: stderr may be held aside later


def _say(line: bytes) -> None:
    os.write(_stderr[0] if _stderr else 2, line)


def _handle(signum, frame) -> None:
    if signum == signal.SIGINT and _interrupted.is_set():
        _say(b"Ctrl-C again: stopped at once, without saving.\n")
        os._exit(130)
    _requested.set()
    if signum == signal.SIGINT:
        _interrupted.set()
        _say(b"Ctrl-C received: the run saves what it has and stops (Ctrl-C again stops at once, without saving).\n")
    else:
        _say(b"SIGTERM received: the run saves what it has and stops.\n")


def install() -> Any:
    """Turns SIGTERM and SIGINT into a flag (only possible from the main thread; elsewhere a no-op). Returns
    the handlers it replaced, for `restore` (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if not _stderr:
        _stderr.append(os.dup(2))
    return signal.signal(signal.SIGTERM, _handle), signal.signal(signal.SIGINT, _handle)


def restore(previous: Any) -> None:
    """Puts back the SIGTERM and SIGINT handlers that `install` replaced: a process that trained once (a
    notebook, a test session) is again stopped by them as before."""
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def requested() -> bool:
    """True once SIGTERM has arrived in this process."""
    return _requested.is_set()


def request() -> None:
    """Asks for a stop as SIGTERM would (tests, and code that wants to stop the run at the next step)."""
    _requested.set()


def reset() -> None:
    """Forgets an earlier request (tests that run several trainings in one process)."""
    _requested.clear()
    _interrupted.clear()
