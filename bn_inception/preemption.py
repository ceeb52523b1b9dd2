"""SIGTERM and Ctrl-C as a request to save and stop (preemption): installed first thing, polled by the trainer.

Entry points call `install()` before their slow imports, so that a SIGTERM during start-up or compilation
also ends the run cleanly (exit status 0) instead of killing it. Ctrl-C (SIGINT) is the same request; a
second Ctrl-C stops the process at once (exit status 130), without saving. Imports nothing heavy on purpose.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_requested = threading.Event()
_interrupted = threading.Event()  # a first Ctrl-C arrived (a second one stops at once; SIGTERM does not count)
_HELPER = "unless_stopped"  # the name of `unless_stopped`'s helper threads
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


class Stopped(Exception):
    """A stop request arrived while `unless_stopped` waited."""


def unless_stopped(work: Callable[[], T], poll_seconds: float = 0.1) -> T:
    """`work()`, run on a helper thread while this one watches for a stop request, which raises `Stopped`.

    Python runs a signal's handler only between two bytecodes of the main thread, so a SIGTERM that arrives
    during a call that stays in C++ for long (an XLA compilation: 40 s for BN-Inception on a CPU; tf.data
    filling a shuffle buffer) is otherwise seen only when it returns. Here the main thread only waits, and
    sees it within `poll_seconds`. On `Stopped` the helper thread (a daemon) is left to finish, or to end
    with the process; its result is dropped. Errors of `work` are raised here."""
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as error:  # raised in the caller's thread below
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=run, name=_HELPER, daemon=True).start()
    while not done.wait(poll_seconds):
        if requested():
            raise Stopped
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def exit_if_work_abandoned() -> None:
    """Ends the process at once, with status 0, if work that `unless_stopped` gave up on still runs. For entry
    points, once the run has saved and closed everything: Python would otherwise end the daemon thread
    inside XLA's C++ at exit, which aborts the process (SIGABRT), or wait out the compilation."""
    if any(thread.name == _HELPER and thread.is_alive() for thread in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def reset() -> None:
    """Forgets an earlier request (tests that run several trainings in one process)."""
    _requested.clear()
    _interrupted.clear()
