"""One process (one pod job, one protocol runner) per folder: a lock file naming its holder.

A run, or `scripts/run_mini_ablation.py`, takes `FOLDER/lock` before it writes anything there and removes
it when it ends. A second one started on the same folder refuses at once, naming the holder (pid, host,
start time, command). A lock left by a process that died is not in the way: on the same host the pid is
checked (with its start time, so a reused pid does not count as alive); from another host, where that
cannot be checked, the holder rewrites the lock every `HEARTBEAT_SECONDS`, and a lock older than
`STALE_SECONDS` is taken over. On a pod only process 0 takes the lock; the trainer stops every process when
it is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import sys
import threading
import time

LOCK = "lock"
HEARTBEAT_SECONDS = 60.0
STALE_SECONDS = 600.0


class Busy(RuntimeError):
    """Another live process holds the folder."""


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` on this host (field 22 of /proc/PID/stat), None if it is not running."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""
        return ""  # alive, start time unknown (no /proc)
    return stat.rsplit(")", 1)[1].split()[19]


def _describe(holder: dict) -> str:
    began = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return (f"process {holder.get('pid')} on {holder.get('host')} (started {began}: "
            f"{' '.join(holder.get('command', []))[:200]})")


def holder_alive(holder: dict, now: float | None = None) -> bool:
    """Whether the process a lock names still runs: by its pid on this host, by the lock's age elsewhere."""
    if holder.get("host") == socket.gethostname():
        start = _process_start(int(holder.get("pid", -1)))
        return start is not None and (not start or not holder.get("pid_start") or start == holder["pid_start"])
    age = (now or time.time()) - float(holder.get("heartbeat", 0))
    return age < STALE_SECONDS


class FolderLock:
    """The lock of one folder, held from `acquire` to `release` (a context manager too)."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = pathlib.Path(folder)
        self.path = self.folder / LOCK
        self.note: str | None = None  # a line to print: a dead holder's lock taken over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._created_folder = False

    def _record(self) -> dict:
        return {"pid": os.getpid(), "pid_start": _process_start(os.getpid()), "host": socket.gethostname(),
                "started": time.time(), "heartbeat": time.time(), "command": sys.argv}

    def acquire(self) -> FolderLock:
        """Takes the lock, or raises `Busy` naming the live holder. Creates the folder if needed."""
        self._created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is not None and holder_alive(holder):
                    self._undo_folder()
                    raise Busy(f"{self.folder} is in use by {_describe(holder)}; wait for it to end, stop it, or "
                               f"use another folder. (A lock of a process that died is taken over: {self.path}.)")
                self.note = (f"{self.path}: taken over from " + (_describe(holder) if holder else "an unreadable lock")
                             + ", which is no longer running.")
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self._record(), f)
            self._thread = threading.Thread(target=self._beat, daemon=True, name="folder-lock-heartbeat")
            self._thread.start()
            return self
        raise Busy(f"{self.path}: could not take the lock (another process keeps taking it).")

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            record = self._read()
            if record is None or record.get("pid") != os.getpid():
                return  # taken over (this process was thought dead) or removed: not ours any more
            record["heartbeat"] = time.time()
            temporary = self.path.with_name(LOCK + f".{os.getpid()}.tmp")
            with contextlib.suppress(OSError):
                temporary.write_text(json.dumps(record))
                temporary.replace(self.path)

    def _undo_folder(self) -> None:
        if self._created_folder:
            with contextlib.suppress(OSError):
                self.folder.rmdir()

    def release(self, remove_empty_folder: bool = False) -> None:
        """Removes the lock if this process holds it (and, with `remove_empty_folder`, a folder that
        `acquire` created and nothing else was written to)."""
        self._stop.set()
        record = self._read()
        if record is not None and record.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if remove_empty_folder:
            self._undo_folder()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
