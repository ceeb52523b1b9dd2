"""What a run ran: one JSON line appended to WORKDIR/provenance.jsonl at every start and resumption.

A run resumed across sessions or machines can run different code in its parts, and the runs of an
experiment (a protocol revision, an ensemble) are comparable only when they ran the same code. Each line
records the step the process started from, the time, the command, the host and devices, the versions of the
libraries that compute, the git commit of this checkout with its modified tracked files, and `source`: a
SHA-256 over the contents of the package and config files, equal for two processes exactly when they ran
the same Python source, whatever the commit or the state of the working tree.
`scripts/compare_ablations.py` reads these lines and says which runs ran which source.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import pathlib
import platform
import socket
import subprocess
import sys
from typing import Any

from bn_inception import files

FILE = "provenance.jsonl"
ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ("bn_inception", "configs")  # what a training process computes with
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorflow", "tensorflow-cpu", "tensorflow-datasets",
            "numpy")  # TensorFlow: installed as tensorflow-cpu here (requirements.txt), tensorflow elsewhere


def source_fingerprint(root: pathlib.Path = ROOT) -> str:
    """SHA-256 (hex) over the relative paths and contents of the .py files in `SOURCE_FOLDERS` under `root`."""
    digest = hashlib.sha256()
    for path in sorted(p for folder in SOURCE_FOLDERS for p in (root / folder).rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def git_state(root: pathlib.Path = ROOT) -> dict[str, Any]:
    """{"commit": HEAD's hash, "modified": tracked files that differ from it}; None values outside a git
    checkout or without git."""
    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    modified = sorted(line[3:] for line in status.splitlines()) if status is not None else None
    return {"commit": commit.strip() if commit else None, "modified": modified}


def versions() -> dict[str, str]:
    """Python's version and those of the `PACKAGES` that are installed."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def record(workdir: str | pathlib.Path, start_step: int, **facts: Any) -> dict[str, Any]:
    """Appends this process's line to `workdir`/provenance.jsonl (process 0 only) and returns it; `facts`
    (e.g. the number of training examples) are added to it."""
    import jax

    devices = jax.devices()
    line = {
        "start_step": start_step,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "host": socket.gethostname(),
        "devices": f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform}), "
                   f"{jax.process_count()} process{'es' * (jax.process_count() > 1)}",
        "device_count": len(devices),
        "source": source_fingerprint(),
        **git_state(),
        "versions": versions(),
        **facts,
    }
    if jax.process_index() == 0:
        path = pathlib.Path(workdir) / FILE
        cut = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
        files.append(path, ("\n" if cut else "") + json.dumps(line) + "\n")  # after a cut line, on a line of its own
    return line


def read(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    """The run's lines, oldest first ([] for a run started before they were recorded). A line cut short
    (a process killed while appending it) is skipped; so is a damaged one (bytes that are not UTF-8), with
    one line on stderr naming the file."""
    path = pathlib.Path(workdir) / FILE
    lines, damaged = [], 0
    for data in path.read_bytes().splitlines() if path.exists() else []:
        try:
            lines.append(json.loads(data.decode("utf-8")))
        except UnicodeDecodeError:
            damaged += 1
        except json.JSONDecodeError:
            continue
    if damaged:
        print(f"warning: {path}: {damaged} damaged line{'s' * (damaged > 1)} (not UTF-8) skipped.", file=sys.stderr,
              flush=True)
    return lines


def device_count(line: dict[str, Any]) -> int | None:
    """The number of devices a provenance line's process trained on (also from lines written before
    `device_count` was recorded, by their `devices` description)."""
    if "device_count" in line:
        return int(line["device_count"])
    head = str(line.get("devices", "")).split(" x ", 1)[0]
    return int(head) if head.isdigit() else None


def sources_note(records: dict[str, list[dict[str, Any]]]) -> str:
    """One sentence on which source code the runs ran: `records` maps a run's name to its `read` lines."""
    by_source: dict[str, list[str]] = {}
    described: dict[str, str] = {}
    for name, lines in records.items():
        for line in lines:
            source = line.get("source", "unknown")
            by_source.setdefault(source, []).append(f"{name} from step {line.get('start_step')}")
            modified = f", modified {', '.join(line['modified'])}" if line.get("modified") else ""
            described.setdefault(source, f"source {source[:12]} (commit {(line.get('commit') or 'unknown')[:10]}{modified})")
    unrecorded = [name for name, lines in records.items() if not lines]
    parts = []
    if len(by_source) == 1:
        (source,) = by_source
        parts.append(f"every recorded start ran the same code, {described[source]}")
    elif by_source:
        parts.append(f"the runs ran {len(by_source)} different sources: " + "; ".join(
            f"{described[s]} in {', '.join(starts)}" for s, starts in by_source.items()))
    if unrecorded:
        parts.append(f"{len(unrecorded)} of {len(records)} runs have no {FILE} (started before it was recorded)")
    return "Code: " + "; ".join(parts) + "."
