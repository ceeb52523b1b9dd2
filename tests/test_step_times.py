"""scripts/dev/step_times.py on event files with known wall times."""

import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf

from bn_inception import events

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts" / "dev"))

import step_times  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def write_events(path: pathlib.Path, points: list[tuple[int, float]]) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for step, wall in points:
            event = tf.compat.v1.Event(step=step, wall_time=wall)
            event.summary.value.add(tag="train/loss", simple_value=1.0)
            event.summary.value.add(tag="eval/top1_accuracy", simple_value=0.5)  # other tags are ignored
            writer.write(event.SerializeToString())


@pytest.fixture
def run_dir(tmp_path):
    # Steps every 50, 120 steps per epoch: the intervals 100-150, 200-250, 350-400 and 450-500 cross a
    # boundary (at 120, 240, 360, 480). Interval seconds: 5 everywhere but 200-250 (25 s, at a boundary),
    # 250-300 (12 s, not at one) and 400-450 (1,000 s: a pause).
    seconds = {250: 25.0, 300: 12.0, 450: 1000.0}
    wall, points = 100.0, [(0, 100.0)]
    for step in range(50, 550, 50):
        wall += seconds.get(step, 5.0)
        points.append((step, wall))
    write_events(tmp_path / "events.out.tfevents.1.host.1.v2", points)
    write_events(tmp_path / "events.out.tfevents.2.host.2.v2", [(500, 5000.0)])  # one point: no interval
    return tmp_path


def test_interval_report_counts_known_intervals(run_dir):
    points = events.wall_times(run_dir / "events.out.tfevents.1.host.1.v2", "train/loss")
    r = step_times.interval_report(points, 120, slow_s=4.0, pause_s=300.0)
    assert (r["first_step"], r["last_step"], r["intervals"], r["pauses"]) == (0, 500, 9, 1)
    assert r["median_s"] == 5.0 and r["total_s"] == 7 * 5.0 + 25.0 + 12.0
    assert (r["boundaries"], r["slow_at_boundaries"], r["slow_elsewhere"]) == (4, 1, 1)
    assert (r["extra_at_boundaries_s"], r["extra_elsewhere_s"]) == (20.0, 7.0)


def test_the_command_prints_one_line_per_process_and_refuses_bad_input(run_dir):
    command = [sys.executable, "scripts/dev/step_times.py", str(run_dir)]
    out = subprocess.run(command + ["--steps_per_epoch=120"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        f"{run_dir}, one line per process (event file):",
        "  steps 0-500: 9 intervals (median 5.0 s, 72 s in all, 1 pauses left out); slow at epoch boundaries 1 of 4 "
        "(+20 s, 27.8% of the time), slow elsewhere 1 (+7 s)",
    ]
    bad = subprocess.run(command + ["--steps_per_epoch=0"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "--steps_per_epoch=0: expected a whole number >= 1." in bad.stderr


def test_a_process_of_pauses_only_gets_a_line(tmp_path):
    write_events(tmp_path / "events.out.tfevents.1.host.1.v2", [(0, 0.0), (50, 1000.0)])
    out = subprocess.run([sys.executable, "scripts/dev/step_times.py", str(tmp_path), "--steps_per_epoch=120"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] == "  steps 0-50: every interval is a pause (over 300 s)."
