"""The Figure 3 protocol runner: its plan (seeds, order, budgets) and its refusal of bad arguments."""

import csv
import json
import math
import os
import pathlib
import subprocess
import sys

from bn_inception import provenance
from tests.test_compare_ablations import write_run
from tests.test_plateau_trend import known_curve
from tests.test_step_times import write_events
from tests.test_train import REPO

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))

import run_mini_ablation  # noqa: E402


def run(*args):
    return subprocess.run([sys.executable, "scripts/run_mini_ablation.py", *args], cwd=REPO, capture_output=True, text=True)


def test_plan_has_the_protocol_seeds_and_budgets_and_skips_finished_runs(tmp_path):
    (tmp_path / "bn_x5" / "seed0" / "checkpoints" / "12000").mkdir(parents=True)  # a finished run (B / 4)
    (tmp_path / "inception_x30" / "seed0").mkdir(parents=True)
    (tmp_path / "inception_x30" / "seed0" / "diverged.txt").write_text("non-finite loss or gradient at step 7\n")
    result = run(f"--runs={tmp_path}", "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    # Issue 34's order: the baseline's 3 seeds, the 8 core runs, the 4 next runs (one seed of each control).
    assert [line.split(":")[0][8:] for line in lines] == [
        "inception seed 0", "inception seed 1", "inception seed 2",
        "bn_x30 seed 0", "bn_x5 seed 0", "bn_x5_sigmoid seed 0", "bn_baseline seed 0",
        "bn_x30 seed 1", "bn_x30 seed 2", "bn_x5 seed 1", "bn_x5_sigmoid seed 1",
        "bn_baseline seed 1", "inception_sigmoid seed 0", "inception_x30 seed 0", "inception_x5 seed 0"]
    assert lines[0].startswith("[ 1/15] inception seed 0: steps 0 -> 48000")  # B = 48,000, final
    assert lines[3].startswith("[ 4/15] bn_x30 seed 0: steps 0 -> 12000")
    assert lines[4] == "[ 5/15] bn_x5 seed 0: finished earlier, no evaluation yet"
    assert lines[6].startswith("[ 7/15] bn_baseline seed 0: steps 0 -> 48000")
    assert lines[13] == "[14/15] inception_x30 seed 0: diverged earlier (non-finite loss or gradient at step 7)"
    assert not (tmp_path / "report").exists()
    result = run(f"--runs={tmp_path}", "--dry_run", "--budget=6000", "--only=bn_x30", "--max_seeds=1")
    # No process has trained in tmp_path: the ETA is the prior's 1,500 * 0.15 s and says it is assumed.
    assert result.stdout.splitlines() == [
        "[ 1/1] bn_x30 seed 0: steps 0 -> 1500; protocol ETA 3m45s at an assumed 0.15 s a step (none measured here "
        f"yet) (log: {tmp_path / 'bn_x30' / 'seed0' / 'train.log'})"]


def finished_baseline(runs, curve, budget=8):
    for seed in range(3):
        write_run(runs / "inception" / f"seed{seed}", curve, "inception", seed=seed)
        (runs / "inception" / f"seed{seed}" / "checkpoints" / str(budget)).mkdir(parents=True)


def test_the_plateau_rule_is_a_diagnostic_that_gates_nothing(tmp_path):
    # Budget 8: Inception trains 8 steps, the accelerated configs 2. Evaluations at 2, 4, 6, 8: the last 20%
    # of the steps is the evaluation at 8.
    finished_baseline(tmp_path / "rising", [(2, 0.3), (4, 0.4), (6, 0.5), (8, 0.6)])  # +10 points: not plateaued
    result = run(f"--runs={tmp_path / 'rising'}", "--dry_run", "--budget=8")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert all(line.startswith(f"[ {i}/15] inception seed {i - 1}: finished earlier") for i, line in enumerate(lines[:3], 1))
    assert lines[3] == ("Plateau rule (a diagnostic; B is fixed): Inception gained 10.00 points in the last 20% of its "
                        "steps (mean over seeds; per seed 10.00, 10.00, 10.00): the rule (< 0.5) is NOT met at B = 8 "
                        "steps.")
    assert lines[4].startswith("[ 4/15] bn_x30 seed 0: steps 0 -> 2;") and "[15/15] inception_x5 seed 0" in lines[-1]
    assert sum(line.startswith("Plateau rule") for line in lines) == 1
    result = run(f"--runs={tmp_path / 'rising'}", "--dry_run", "--ignore_plateau")  # the gate is gone, and its flag
    assert result.returncode == 2 and "unrecognized arguments: --ignore_plateau" in result.stderr

    finished_baseline(tmp_path / "flat", [(2, 0.3), (4, 0.6), (6, 0.6), (8, 0.604)])  # +0.4 points: plateaued
    lines = run(f"--runs={tmp_path / 'flat'}", "--dry_run", "--budget=8").stdout.splitlines()
    assert lines[3].endswith("per seed 0.40, 0.40, 0.40): the rule (< 0.5) is met at B = 8 steps.")
    # Other seeds (--first_seed=10): the baseline's seeds 10-12 are unfinished, so no plateau line yet.
    result = run(f"--runs={tmp_path / 'rising'}", "--dry_run", "--budget=8", "--first_seed=10")
    lines = [line.split(":")[0][8:] for line in result.stdout.splitlines()]
    assert result.returncode == 0 and lines[:4] == ["inception seed 10", "inception seed 11", "inception seed 12", "bn_x30 seed 10"]
    assert lines[-1] == "inception_x5 seed 10" and len(lines) == 15 and "Plateau rule" not in result.stdout


def test_bad_arguments_are_refused_naming_the_value(tmp_path):
    result = run(f"--runs={tmp_path}", "--only=bn_x31")
    assert result.returncode == 2 and "--only=bn_x31: unknown ablations ['bn_x31']" in result.stderr
    result = run(f"--runs={tmp_path}", f"--data_dir={tmp_path / 'nowhere'}")
    assert result.returncode == 2 and "nowhere: no train/ folder there" in result.stderr
    result = run(f"--runs={tmp_path}", "--first_seed=-1")
    assert result.returncode == 2 and "--first_seed=-1: expected a seed number >= 0" in result.stderr
    result = run(f"--runs={tmp_path}", "--budget=3")
    assert result.returncode == 2 and "--budget=3: expected a whole number of training steps >= 4" in result.stderr


def test_the_eta_leaves_out_the_time_a_run_was_stopped(tmp_path):
    # An earlier process (wall times 0-400, one 320 s gap) and this invocation's (from 1,000): 10 s between
    # logs, one 301 s stop and one 299 s interval (not a stop: events.PAUSE_SECONDS is 300).
    write_events(tmp_path / "events.out.tfevents.1.host.1.v2", [(0, 0.0), (50, 80.0), (100, 400.0)])
    walls = [1000.0, 1010.0, 1311.0, 1321.0, 1620.0, 1630.0]
    write_events(tmp_path / "events.out.tfevents.2.host.2.v2", [(100 + 50 * i, w) for i, w in enumerate(walls)])
    assert run_mini_ablation.paused_seconds(tmp_path, since=1000.0) == 301.0
    assert run_mini_ablation.paused_seconds(tmp_path, since=0.0) == 301.0 + 320.0 + 600.0  # the gap between processes too
    assert run_mini_ablation.paused_seconds(tmp_path / "nothing", since=0.0) == 0.0


def test_a_code_change_since_earlier_runs_is_pointed_out(tmp_path):
    workdir = tmp_path / "inception" / "seed0"
    workdir.mkdir(parents=True)
    (workdir / "provenance.jsonl").write_text(json.dumps({"source": "f" * 64, "start_step": 0}) + "\n")
    result = run(f"--runs={tmp_path}", "--dry_run", "--only=inception", "--max_seeds=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == (
        f"Note: the code here (source {provenance.source_fingerprint()[:12]}) is not what earlier runs in {tmp_path} "
        f"ran (source {'f' * 12}): the runs compared in one figure should run the same code (their provenance.jsonl "
        "lines say what each ran).")
    with open(workdir / "provenance.jsonl", "a") as f:  # a resumption on the current code
        f.write(json.dumps({"source": provenance.source_fingerprint(), "start_step": 150}) + "\n")
    assert not run(f"--runs={tmp_path}", "--dry_run", "--only=inception", "--max_seeds=1").stdout.startswith("Note")


def test_the_plateau_line_comes_with_each_seeds_late_trend(tmp_path):
    # Evaluations every 5 steps to 100: the last 20% holds 85, 90, 95, 100 (top-1 50 + step/10 %, +-0.3
    # around that line: slope exactly 1 point per tenth of the run, tests/test_plateau_trend.py).
    finished_baseline(tmp_path, known_curve(0.3), budget=100)
    result = run(f"--runs={tmp_path}", "--dry_run", "--budget=100")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[3].startswith("Plateau rule (a diagnostic; B is fixed): Inception gained 0.00 points") and lines[3].endswith("is met at B = 100 steps.")
    error = f"{math.sqrt(0.18 / 1.25):.2f}"
    assert lines[4] == ("Late trend per seed (a straight line through its last 20% of evaluations; points per tenth of "
                        f"the run, standard error): +1.00 ({error}), +1.00 ({error}), +1.00 ({error}). A slope several "
                        "standard errors above zero: still rising (scripts/dev/plateau_trend.py).")


def test_a_record_carries_finished_runs_to_a_machine_without_their_workdirs(tmp_path):
    finished_baseline(tmp_path / "machine1", [(2, 0.3), (4, 0.6), (6, 0.6), (8, 0.604)])  # plateaued (0.4 points)
    record = tmp_path / "docs" / "fig3_rX"
    result = run(f"--runs={tmp_path / 'machine1'}", f"--record={record}", "--budget=8", "--only=inception")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == f"Record: {record} now holds 3 finished runs (commit it to keep them)."
    assert [(r["run"], r["seed"], r["last_step"]) for r in csv.DictReader(open(record / "figure3_runs.csv"))] == [
        ("inception", "0", "8"), ("inception", "1", "8"), ("inception", "2", "8")]

    # Another machine: no workdirs, only the record. The baseline is done and its plateau rule is checked.
    result = run(f"--runs={tmp_path / 'machine2'}", f"--record={record}", "--budget=8", "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    # The same summary as a run's own (`events.accuracy_summary`), from the record's curves.
    assert lines[:3] == [f"[ {i}/15] inception seed {i - 1}: recorded in {record}, final eval top-1 60.4% / top-5 "
                         "100.0% (step 8); best top-1 60.4% at step 8, top-5 100.0% at step 2" for i in (1, 2, 3)]
    assert lines[3].startswith("Plateau rule (a diagnostic; B is fixed): Inception gained 0.40 points") and lines[3].endswith("is met at B = 8 steps.")
    # ETA: the other 12 runs' 7 x 2 + 5 x 8 = 54 steps at the prior 0.15 s a step (8 s); the recorded
    # baseline's 24 are not left.
    assert lines[4].startswith("[ 4/15] bn_x30 seed 0: steps 0 -> 2; protocol ETA 8s at an assumed 0.15 s a step ")
    assert not (tmp_path / "machine2").exists()


def test_a_bad_record_folder_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "other"):
        result = run(f"--runs={tmp_path / 'runs'}", f"--record={bad}")
        assert result.returncode == 2 and f"--record={bad}: not a report folder" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_eta_starts_from_the_newest_runs_measured_speed(tmp_path):
    # An older process (0.1 s a step) and the newest: 100 s for each 500 steps, but one 400 s interval (a stop,
    # left out with its steps): 0.2 s a step. The plan's ETA then counts 0.2 s a step, not the prior 0.15.
    (tmp_path / "bn_x5" / "seed0").mkdir(parents=True)
    (tmp_path / "inception" / "seed0").mkdir(parents=True)
    older = tmp_path / "bn_x5" / "seed0" / "events.out.tfevents.1.host.1.v2"
    write_events(older, [(50, 0.0), (150, 10.0)])
    os.utime(older, (0, 0))
    newest = tmp_path / "inception" / "seed0" / "events.out.tfevents.2.host.2.v2"
    write_events(newest, [(50, 1000.0), (550, 1100.0), (1050, 1500.0), (1550, 1600.0)])
    assert run_mini_ablation.measured_seconds_per_step(tmp_path) == 0.2
    result = run(f"--runs={tmp_path}", "--dry_run", "--only=bn_x30", "--max_seeds=1", "--budget=6000")
    assert result.stdout.splitlines()[0].startswith("[ 1/1] bn_x30 seed 0: steps 0 -> 1500; protocol ETA 5m00s (log: ")
    assert run_mini_ablation.measured_seconds_per_step(tmp_path / "bn_x30") is None


def test_a_running_runs_evaluations_are_kept_in_the_record_while_it_trains(tmp_path):
    # A stand-in for the training process (0.5 s) and a run evaluated at steps 2 and 4 of 8: waiting on it
    # snapshots the run's evaluations into the record, with the rows compare_ablations writes for that run.
    workdir = write_run(tmp_path / "runs" / "inception" / "seed0", [(2, 0.3), (4, 0.5)], "inception", moving_average=0.25)
    record = tmp_path / "docs" / "fig3_rX"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    assert run_mini_ablation.wait_snapshotting(child, record, workdir, every_seconds=0.05) == 0
    report = subprocess.run([sys.executable, "scripts/compare_ablations.py", str(workdir), f"--output={tmp_path / 'out'}"],
                            cwd=REPO, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-2000:]
    snapshot = (record / run_mini_ablation.UNFINISHED).read_text()
    assert snapshot == (tmp_path / "out" / "curves.csv").read_text()
    assert [row["step"] for row in csv.DictReader(snapshot.splitlines())] == ["2", "4"]
    assert sorted(p.name for p in record.iterdir()) == [run_mini_ablation.UNFINISHED]  # no temporary file left
    # A record folder holding only that snapshot is still a record: the same command goes on with it.
    result = run(f"--runs={tmp_path / 'runs'}", f"--record={record}", "--budget=8", "--dry_run", "--only=inception")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0].startswith("[ 1/3] inception seed 0: steps 0 -> 8; protocol ETA ")


def test_no_snapshot_before_the_first_evaluation_or_without_a_record(tmp_path):
    workdir = tmp_path / "runs" / "inception" / "seed0"
    workdir.mkdir(parents=True)
    record = tmp_path / "record"
    run_mini_ablation.snapshot_unfinished(record, workdir)
    assert not record.exists()
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert run_mini_ablation.wait_snapshotting(child, None, workdir, every_seconds=0.01) == 3
