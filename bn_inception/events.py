"""Reading back the TensorBoard scalars a run wrote (tests, comparisons of ablations).

Without TensorFlow: the event files are read as TFRecords here (each record's length and data checked
against their CRC-32C, as TensorFlow's reader does) and parsed with TensorBoard's protocol buffers, so the
commands that only read runs (the comparison, the protocol runner) start in a second, not after the 10 s
of importing TensorFlow.
"""

from __future__ import annotations

import pathlib
import struct
import sys
from collections.abc import Iterator

from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util

from bn_inception import figure3

# Timing a run from its event files: the wall times of the tag written every `log_every_steps`, and the
# interval between two of them beyond which the process was stopped (SIGSTOP, a suspended machine), not slow.
TIMING_TAG = "train/loss"
PAUSE_SECONDS = 300.0


def read_scalars(run_dir: str | pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} over every event file directly in `run_dir` (in the order written), by step.

    As TensorBoard does: when a tag's step goes back (a resumed run re-logging the steps after its checkpoint),
    the points of that tag from that step on are dropped and the new ones kept, so a run that was killed and
    resumed reads as one run, without the orphaned points the killed process logged past its checkpoint.
    """
    scalars: dict[str, dict[int, float]] = {}

    def add(tag: str, step: int, value: float) -> None:
        points = scalars.setdefault(tag, {})
        if points and step <= max(points):
            for orphan in [s for s in points if s >= step]:
                del points[orphan]
        points[step] = value

    for path in sorted(pathlib.Path(run_dir).glob("events.out.tfevents.*")):
        for event in _events(path):
            for value in event.summary.value:
                if value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
                    add(value.tag, event.step, float(tensor_util.make_ndarray(value.tensor)))
                elif value.HasField("simple_value"):
                    add(value.tag, event.step, value.simple_value)
    return {tag: sorted(points.items()) for tag, points in scalars.items()}


def accuracy_summary(run_dir: str | pathlib.Path) -> str:
    """`curves_summary` of a run's validation curves, read from its events."""
    scalars = read_scalars(run_dir)
    return curves_summary(scalars.get(figure3.TOP1_TAG, []), scalars.get("eval/top5_accuracy", []))


def curves_summary(top1: list[tuple[int, float]], top5: list[tuple[int, float]]) -> str:
    """'final eval top-1 55.6% / top-5 91.0% (step 1500); best top-1 56.0% at step 1350, top-5 91.2% at step
    1200' from validation curves [(step, accuracy), ...] (top-5 may be empty), or 'no evaluation yet'."""
    if not top1:
        return "no evaluation yet"
    last_step, last = top1[-1]
    best_step, best = figure3.best(top1)
    summary = f"final eval top-1 {100 * last:.1f}%"
    if top5:
        summary += f" / top-5 {100 * dict(top5).get(last_step, float('nan')):.1f}%"
    summary += f" (step {last_step}); best top-1 {100 * best:.1f}% at step {best_step}"
    if top5:
        best5_step, best5 = figure3.best(top5)
        summary += f", top-5 {100 * best5:.1f}% at step {best5_step}"
    return summary


def wall_times(event_file: str | pathlib.Path, tag: str) -> list[tuple[int, float]]:
    """[(step, wall time in seconds), ...] of `tag` in one event file (one process of a run), as written."""
    return [(event.step, event.wall_time) for event in _events(event_file) for value in event.summary.value
            if value.tag == tag]


def _events(event_file: str | pathlib.Path) -> Iterator[event_pb2.Event]:
    for record in _records(event_file):
        yield event_pb2.Event.FromString(record)


_damaged: dict[str, str] = {}  # event files found damaged in this process: path -> where


def damaged(run_dir: str | pathlib.Path) -> list[str]:
    """'FILE: damaged at byte N' for each event file of `run_dir` read so far that is damaged; what was
    before the damage was read, nothing after it."""
    folder = pathlib.Path(run_dir).resolve()
    return [f"{path}: {where}" for path, where in sorted(_damaged.items()) if pathlib.Path(path).parent == folder]


def _records(path: str | pathlib.Path) -> Iterator[bytes]:
    """The records of a TFRecord file: [length: uint64][masked CRC of length: uint32][data][masked CRC of data].
    A record cut short at the end (a run still writing it) ends the file. A CRC mismatch (a damaged file)
    ends it too, with one line on stderr naming the file the first time, and `damaged` lists it."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
            if _masked_crc32c(header[:8]) != length_crc:
                return _damage(path, f"bad record length at byte {f.tell() - 12}")
            data, footer = f.read(length), f.read(4)
            if len(data) < length or len(footer) < 4:
                return
            if _masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                return _damage(path, f"bad record at byte {f.tell() - length - 16}")
            yield data


def _damage(path: str | pathlib.Path, where: str) -> None:
    key = str(pathlib.Path(path).resolve())
    if key not in _damaged:
        _damaged[key] = f"damaged ({where}): its records from there on are not read"
        print(f"warning: event file {path} is damaged ({where}); reading the records before it.", file=sys.stderr,
              flush=True)


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, masked as TFRecords store it."""
    crc, table = 0xFFFFFFFF, _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
