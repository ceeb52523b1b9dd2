"""Reading back the TensorBoard scalars a run wrote (tests, comparisons of ablations)."""

from __future__ import annotations

import pathlib

import tensorflow as tf


def read_scalars(run_dir: str | pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} over every event file directly in `run_dir`, sorted by step.

    A step written twice (a resumed run repeating its last logged steps) keeps its latest value.
    """
    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(pathlib.Path(run_dir).glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
                    scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
                elif value.HasField("simple_value"):
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return {tag: sorted(points.items()) for tag, points in scalars.items()}


def accuracy_summary(run_dir: str | pathlib.Path, tag: str = "eval/top1_accuracy") -> str:
    """'final eval top-1 55.6% (best 56.0% at step 1350)' from a run's events, or 'no evaluation yet'."""
    curve = read_scalars(run_dir).get(tag, [])
    if not curve:
        return "no evaluation yet"
    best_step, best = max(curve, key=lambda point: (point[1], -point[0]))
    return f"final eval top-1 {100 * curve[-1][1]:.1f}% (best {100 * best:.1f}% at step {best_step})"
