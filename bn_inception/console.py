"""What a user reads: a quiet console by default, one-line errors, the same for every command.

By default the commands print only their own lines (progress, evaluations, checkpoints, a closing summary)
and warnings; `--verbose` also shows the libraries' INFO logs (orbax, TensorFlow, clu) and the traceback of
an error. TensorFlow's C++ logs are decided when TensorFlow is imported, before flags are parsed, so entry
points call `quiet_tensorflow_import(sys.argv)` before importing anything that imports TensorFlow.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence

from absl import app, flags
from absl import logging as absl_logging

FLAGS = flags.FLAGS
flags.DEFINE_bool("verbose", False, "Also print the libraries' INFO logs (orbax, TensorFlow, clu) and tracebacks.")

_HELP = ("--help", "-h", "--helpshort", "-?")
_LIBRARY_LOGGERS = ("jax", "orbax", "tensorflow", "absl")


def _verbose_in(argv: Sequence[str]) -> bool:
    return any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1") for a in argv)


def quiet_tensorflow_import(argv: Sequence[str]) -> None:
    """Imports TensorFlow without its start-up lines unless `--verbose` is in `argv`.

    TensorFlow's C++ start-up lines (oneDNN, CPU features) are written before its logging is set up, so
    TF_CPP_MIN_LOG_LEVEL does not hide them: standard error is held aside during the import and shown
    only if the import fails. Later C++ warnings and errors still reach the console.
    """
    if _verbose_in(argv):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_libraries(verbose: bool) -> None:
    """Library logs at WARNING and above (INFO too when `verbose`), except, unless `verbose`, the tracebacks
    orbax's background threads log for a failed asynchronous save: the save's error is raised to the command,
    which says it in one line (a full disk gave 356 lines of them)."""
    level = logging.INFO if verbose else logging.WARNING
    absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    for name in ("absl", "asyncio"):
        logger = logging.getLogger(name)
        logger.removeFilter(_hide_background_save_errors)
        if not verbose:
            logger.addFilter(_hide_background_save_errors)
    sys.unraisablehook = sys.__unraisablehook__ if verbose else _hide_closed_loop_callbacks


def _hide_closed_loop_callbacks(unraisable: "sys.UnraisableHookArgs") -> None:
    """Drops TensorStore's callbacks into orbax's closed event loop, one traceback per write still in flight
    when a save failed (hundreds on a full disk); shows every other unraisable exception."""
    if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
        sys.__unraisablehook__(unraisable)


def _hide_background_save_errors(record: logging.LogRecord) -> bool:
    """False (hide) for orbax's ERROR records and asyncio's unretrieved exceptions of orbax's writes."""
    if record.levelno < logging.ERROR:
        return True
    text = record.getMessage() + str(record.exc_info and record.exc_info[1])
    return not (f"{os.sep}orbax{os.sep}" in record.pathname or "orbax" in text and "never retrieved" in text)


def say(message: str) -> None:
    """Prints a line of the command's own output (process 0 only on a pod)."""
    import jax

    if jax.process_index() == 0:
        print(message, flush=True)


def duration(seconds: float) -> str:
    """'42s', '3m05s' or '2h07m'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def fail(error: BaseException) -> None:
    """Exits with status 1 and the error in one line (its traceback too with --verbose)."""
    verbose = FLAGS.is_parsed() and FLAGS.verbose
    if verbose:
        traceback.print_exception(error)
    message = str(error).strip().replace("\n", " ")
    hint = "" if verbose else " (--verbose shows the traceback)"
    print(f"error: {type(error).__name__}: {message}{hint}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(main: Callable[[list[str]], None], usage: str, check: Callable[[], None] | None = None) -> None:
    """`absl.app.run(main)`, with: `--help` printing `usage` and the command's flags and exiting 0; flag
    errors (a misspelled config file or key) in one line, exit status 2; errors raised by `main` in one line,
    exit status 1 (tracebacks with --verbose); quiet libraries unless --verbose. `check()` runs right after
    parsing, where its errors count as flag errors (e.g. a config file that does not exist)."""

    def parse(argv: list[str]) -> list[str]:
        if any(a in _HELP for a in argv[1:]):
            print(usage.strip() + "\n")
            print("Flags of this command:\n" + FLAGS.main_module_help())
            for module in (__name__, "bn_inception.distributed"):
                if module in sys.modules:
                    print("\n" + FLAGS.module_help(module))
            sys.exit(0)
        try:
            remaining = FLAGS(argv)
            if check is not None:
                check()
        except Exception as error:  # absl and ml_collections raise many types for bad flags
            raw = str(error)
            if "Traceback (most recent call last)" in raw:  # an error inside a config file: its last line
                raw = f"{raw.split(':', 1)[0]}: {raw.strip().splitlines()[-1]}"
            message = " ".join(raw.replace("\\n", " ").replace("\\'", "'").split())
            suggestion = re.search(r"(\w+)\W+Did you mean \"([\w.]+)\"", message)
            if suggestion:
                message = f"no config key {suggestion[1]!r}; did you mean {suggestion[2]!r}?"
            print(f"error: {message} (--help lists the flags)", file=sys.stderr, flush=True)
            sys.exit(2)
        quiet_libraries(FLAGS.verbose)
        return remaining

    def guarded(argv: list[str]) -> None:
        try:
            main(argv)
        except (app.UsageError, KeyboardInterrupt):
            raise
        except Exception as error:
            fail(error)

    app.run(guarded, flags_parser=parse)
