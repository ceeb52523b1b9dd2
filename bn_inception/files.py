"""A run's small files (config, classes, checksum records, provenance), written whole or not at all.

A write that fails (a full disk, most often) leaves the file as it was: no empty `.tmp`, no half line, and
an error naming the file and, for a full disk, the space left on its file system.
"""

from __future__ import annotations

import errno
import os
import pathlib
import shutil

_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_atomically(path: pathlib.Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file renamed into place: readers see the old file or the
    new one, never a part. On an error the temporary file is removed and `explained` raised."""
    path = pathlib.Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise explained(error, path) from error


def append(path: pathlib.Path, text: str) -> None:
    """Appends `text` to `path`; on an error the file is cut back to its old length (or removed if it was
    new), so no partial record is left, and `explained` raised."""
    path = pathlib.Path(path)
    size = path.stat().st_size if path.exists() else None
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as error:
        if size is None:
            path.unlink(missing_ok=True)
        else:
            os.truncate(path, size)
        raise explained(error, path) from error


def is_disk_full(error: BaseException) -> bool:
    """True for an error of a full disk or quota: an OSError's errno, or the text of errors that carry it
    only in their message (orbax's and TensorStore's RESOURCE_EXHAUSTED)."""
    return (isinstance(error, OSError) and error.errno in _FULL) or "No space left on device" in str(error)


def explained(error: OSError, path: pathlib.Path) -> OSError:
    """The same error, naming `path` (Python names none for a failed write), and for a full disk the free
    space left where `path` is."""
    if is_disk_full(error):
        return OSError(error.errno, f"no space left on the device of {path} ({free_space(path)} free there)")
    if error.filename:
        return error
    return OSError(error.errno, f"{error.strerror or error}: {path}")


def free_space(path: pathlib.Path) -> str:
    """The space free on `path`'s file system (of its nearest existing folder), e.g. '112 kB' or '3.2 GB'."""
    folder = pathlib.Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if free < 10**6:
        return f"{free / 1e3:.0f} kB"
    if free < 10**9:
        return f"{free / 1e6:.1f} MB"
    return f"{free / 1e9:.1f} GB"
