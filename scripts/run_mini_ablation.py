"""The reduced-scale Figure 3 protocol on Imagenette: every ablation and seed, one after another, then the report.

  python scripts/run_mini_ablation.py [--runs=runs/mini_ablation] [--data_dir=../shared/data/imagenette]
      [--record=docs/fig3_rN] [--only=inception,bn_x30] [--max_seeds=N] [--first_seed=K]
      [--budget=B] [--dry_run]

Trains `configs/<ablation>.py:imagenette` with `--config.seed=S` into RUNS/<ablation>/seed<S> (budgets, schedule
and evaluation: the protocol rules in configs/default.py; --budget=B gives the config argument budget=B).
Seeds are 0, 1, 2 for `inception` and `bn_x30`, 0 and 1 for the other BN networks and BN-Baseline, and 0 for
the learning-rate and sigmoid controls (or K, K+1, ... with --first_seed=K to repeat the protocol with other
seeds). Running order (`ORDER`, issue 34): the Inception baseline's seeds (the mean of their maxima is the
threshold), then the core runs (BN-x30, BN-x5, BN-x5-Sigmoid and BN-Baseline seed 0; BN-x30 seeds 1 and 2, BN-x5
and BN-x5-Sigmoid seed 1), then the next runs (BN-Baseline seed 1, Inception-Sigmoid, Inception-x30 and
Inception-x5 seed 0). B is fixed (configs/default.py): the plateau rule is printed as a diagnostic when the
baseline's seeds have finished, and gates nothing.
Each run's own output goes to its `train.log`; the console gets a line when a run starts and ends, with the
ETA of the whole protocol. Re-running the same command continues: finished runs are skipped, an interrupted
one resumes from its last checkpoint; a line says so when the code differs from what earlier runs there
recorded in their provenance.jsonl. A run stopped by a non-finite loss is recorded as diverged
(`diverged.txt` in its workdir) and not retried. At the end (or with what exists so far)
`scripts/compare_ablations.py` writes Figures 2 and 3 to RUNS/report.

--record=DIR keeps the protocol beyond one machine: DIR is a report folder (compare_ablations' figure3_runs.csv,
curves.csv, figures; small enough to commit) rewritten with every finished or diverged run each time one ends.
A run recorded there as finished counts as done even where its workdir is gone, for the plan, the plateau
rule and the report, so the same command on a new machine with the committed record continues with the
runs that are not in it (an unfinished run's checkpoints are not in the record: it starts again). While a
run trains, DIR/unfinished_curves.csv holds its evaluations so far (rewritten every 10 minutes and when it
stops; removed once the run is in the record), so a machine lost mid-run loses the run's training time but
not what it had shown.
"""

from __future__ import annotations

import argparse
import importlib
import math
import pathlib
import re
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bn_inception import console, events, figure3, provenance, workdir_lock  # noqa: E402

import compare_ablations  # noqa: E402  (scripts/, this script's folder)

ABLATIONS = ("inception", "bn_x30", "bn_x5", "bn_baseline", "inception_x30", "inception_x5", "bn_x5_sigmoid",
             "inception_sigmoid")
# (ablation, seed) in running order (issue 34, the owner's): the baseline's seeds, the core runs, the next runs.
# Three seeds of the baseline and of the paper's best network, two of the other BN networks, one of each control.
ORDER = (("inception", 0), ("inception", 1), ("inception", 2),
         ("bn_x30", 0), ("bn_x5", 0), ("bn_x5_sigmoid", 0), ("bn_baseline", 0),
         ("bn_x30", 1), ("bn_x30", 2), ("bn_x5", 1), ("bn_x5_sigmoid", 1),
         ("bn_baseline", 1), ("inception_sigmoid", 0), ("inception_x30", 0), ("inception_x5", 0))
NONFINITE = re.compile(r"Non-finite loss or gradient at step (\d+)")
# 2-core CPU, 2026-11-26 (machines differ by 3x); used, and said to be assumed, until a measurement exists
# (`measured_seconds_per_step`, then this invocation's).
PRIOR_SECONDS_PER_STEP = 0.15
# The --record folder's copy of the running run's evaluations, and how often it is rewritten.
UNFINISHED = "unfinished_curves.csv"
SNAPSHOT_SECONDS = 600


def plan(only: list[str], max_seeds: int, first_seed: int = 0) -> list[tuple[str, int]]:
    """(ablation, seed) in `ORDER`, for the ablations in `only` (all when empty) and their first `max_seeds`
    seeds (all when 0); seeds count from `first_seed`."""
    return [(a, first_seed + s) for a, s in ORDER if (not only or a in only) and (max_seeds <= 0 or s < max_seeds)]


def config_argument(budget_steps: int) -> str:
    """The config argument string of the protocol's runs (`imagenette`, with `budget=B` when one is given)."""
    return "imagenette" + (f",budget={budget_steps}" if budget_steps else "")


def budget(ablation: str, budget_steps: int) -> int:
    """The run's training steps under the protocol (its `:imagenette` config)."""
    return importlib.import_module(f"configs.{ablation}").get_config(config_argument(budget_steps)).num_train_steps


def baseline_curves(runs: pathlib.Path, budget_steps: int, seeds: list[int],
                    recorded: dict[tuple[str, int], dict]) -> list[list[tuple[int, float]]] | None:
    """Each baseline seed's validation curve (from its workdir, else from the record), or None while one of
    them is unfinished or has no evaluations."""
    steps = budget(figure3.BASELINE, budget_steps)
    curves = []
    for seed in seeds:
        workdir, record = runs / figure3.BASELINE / f"seed{seed}", recorded.get((figure3.BASELINE, seed))
        if saved_step(workdir) >= steps:
            curves.append(events.read_scalars(workdir).get(figure3.TOP1_TAG, []))
        elif record_finished(record, steps):
            curves.append(record["curve"])
        else:
            return None
    return curves if all(curves) else None


def record_finished(record: dict | None, steps: int) -> bool:
    """Whether a run recorded by `compare_ablations.load_report` diverged or was evaluated at `steps`."""
    return bool(record) and bool(record["diverged"] or (record["curve"] and record["curve"][-1][0] >= steps))


def record_summary(record: dict) -> str:
    """'diverged (...)' or `events.curves_summary` of a recorded run's curves."""
    if record["diverged"]:
        return f"diverged ({record['diverged']})"
    return events.curves_summary(record["curve"], record["curve_top5"])


def load_record(record: pathlib.Path | None) -> dict[tuple[str, int], dict]:
    """The runs of the --record folder by (ablation, seed); empty without one."""
    if record is None or not (record / "figure3_runs.csv").exists():
        return {}
    return _by_run(compare_ablations.load_report(record))


def write_record(record: pathlib.Path, recorded: dict[tuple[str, int], dict],
                 runs: list[tuple[str, int, pathlib.Path, int]]) -> dict[tuple[str, int], dict]:
    """Rewrites the --record folder with the recorded runs and every run of `runs` done in its workdir, says
    so on the console, and returns the new record."""
    done = [compare_ablations.load_run(w) for _, _, w, n in runs if done_in_workdir(w, n)]
    kept = compare_ablations.latest_runs(list(recorded.values()) + done)
    compare_ablations.write_outputs(kept, record)
    print(f"Record: {record} now holds {len(kept)} finished runs (commit it to keep them).", flush=True)
    return _by_run(kept)


def snapshot_unfinished(record: pathlib.Path, workdir: pathlib.Path) -> None:
    """Writes the evaluations so far of the run in `workdir` to RECORD/unfinished_curves.csv (curves.csv's
    columns; replaced whole, never left half-written); nothing before its first evaluation."""
    run = compare_ablations.load_run(workdir)
    if not run["curve"]:
        return
    record.mkdir(parents=True, exist_ok=True)
    partial = record / (UNFINISHED + ".tmp")
    compare_ablations.write_curves([run], partial)
    partial.replace(record / UNFINISHED)


def wait_snapshotting(process: subprocess.Popen, record: pathlib.Path | None, workdir: pathlib.Path,
                      every_seconds: float = SNAPSHOT_SECONDS) -> int:
    """Waits for `process` (training into `workdir`), snapshotting its evaluations into `record` (when given)
    every `every_seconds`; returns its exit status."""
    while True:
        try:
            return process.wait(timeout=every_seconds if record is not None else None)
        except subprocess.TimeoutExpired:
            snapshot_unfinished(record, workdir)


def _by_run(runs: list[dict]) -> dict[tuple[str, int], dict]:
    return {(run["label"], run["seed"]): run for run in runs}


def trend_line(curves: list[list[tuple[int, float]]]) -> str | None:
    """The line printed under the plateau rule's: each seed's `figure3.late_trend` slope (None when no seed
    has the 3 late evaluations a line needs)."""
    trends = [figure3.late_trend(c) for c in curves]
    if all(math.isnan(slope) for slope, _, _ in trends):
        return None
    return ("Late trend per seed (a straight line through its last 20% of evaluations; points per tenth of the run, "
            "standard error): " + ", ".join("n/a" if math.isnan(slope) else f"{slope:+.2f} ({error:.2f})"
                                            for slope, error, _ in trends)
            + ". A slope several standard errors above zero: still rising (scripts/dev/plateau_trend.py).")


def done_in_workdir(workdir: pathlib.Path, steps: int) -> bool:
    """Whether the run in `workdir` diverged or saved its checkpoint at `steps`."""
    return (workdir / figure3.DIVERGED).exists() or saved_step(workdir) >= steps


def saved_step(workdir: pathlib.Path) -> int:
    """The newest checkpoint's step (0 without one)."""
    steps = [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
    return max(steps, default=0)


def paused_seconds(workdir: pathlib.Path, since: float) -> float:
    """Seconds the run was stopped (SIGSTOP, a suspended machine) after the wall time `since`: its intervals
    between logged `events.TIMING_TAG` points longer than `events.PAUSE_SECONDS`. The protocol's ETA leaves
    them out."""
    points = sorted(t for path in workdir.glob("events.out.tfevents.*")
                    for _, t in events.wall_times(path, events.TIMING_TAG) if t >= since)
    return sum(t1 - t0 for t0, t1 in zip(points, points[1:]) if t1 - t0 > events.PAUSE_SECONDS)


def measured_seconds_per_step(runs: pathlib.Path) -> float | None:
    """Seconds a step took, evaluations included, in the newest event file under `runs`: the last process
    that trained there, most likely on this machine; intervals between its `events.TIMING_TAG` points longer
    than `events.PAUSE_SECONDS` (a stop) are left out with their steps. None without such an interval."""
    files = sorted(runs.glob("*/seed*/events.out.tfevents.*"), key=lambda path: path.stat().st_mtime)
    points = events.wall_times(files[-1], events.TIMING_TAG) if files else []
    intervals = [(s1 - s0, t1 - t0) for (s0, t0), (s1, t1) in zip(points, points[1:]) if t1 - t0 <= events.PAUSE_SECONDS]
    steps = sum(n for n, _ in intervals)
    return sum(t for _, t in intervals) / steps if steps > 0 else None


def code_change(runs: pathlib.Path, recorded: dict[tuple[str, int], dict]) -> str | None:
    """A warning when the code here differs from every source the protocol's earlier runs in `runs` (their
    provenance.jsonl) and in the record recorded, since the runs compared in one figure should run the same
    code; else None."""
    earlier = {line.get("source") for workdir in runs.glob("*/seed*") for line in provenance.read(workdir)}
    earlier |= {line.get("source") for run in recorded.values() for line in run["provenance"]}
    current = provenance.source_fingerprint()
    if not earlier or current in earlier:
        return None
    return (f"Note: the code here (source {current[:12]}) is not what earlier runs in {runs} ran (source "
            f"{', '.join(sorted(s[:12] for s in earlier if s))}): the runs compared in one figure should run the "
            "same code (their provenance.jsonl lines say what each ran).")


class _Child:
    """The running training process; SIGTERM or Ctrl-C to this script is passed on as SIGTERM (the run saves
    and exits 0)."""

    process: subprocess.Popen | None = None
    stop = False

    @classmethod
    def forward(cls, signum, frame) -> None:
        cls.stop = True
        if cls.process is not None:
            cls.process.send_signal(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if a run failed other than by diverging)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=pathlib.Path, default=pathlib.Path("runs/mini_ablation"))
    parser.add_argument("--data_dir", type=pathlib.Path, default=ROOT.parent / "shared" / "data" / "imagenette")
    parser.add_argument("--record", type=pathlib.Path, default=None,
                        help="a report folder kept with every finished run (e.g. docs/fig3_r4; see above)")
    parser.add_argument("--only", default="", help="comma-separated ablations (default: all of them)")
    parser.add_argument("--max_seeds", type=int, default=0, help="run N seeds at most (default: the protocol's)")
    parser.add_argument("--first_seed", type=int, default=0, help="the first seed number (default 0)")
    parser.add_argument("--budget", type=int, default=0,
                        help="B, the baseline schedule's steps (config argument budget=B; default: configs/default.py's)")
    parser.add_argument("--dry_run", action="store_true", help="print the plan and what is done, run nothing")
    args = parser.parse_args(argv)
    only = [a for a in args.only.split(",") if a]
    unknown = sorted(set(only) - set(ABLATIONS))
    if unknown:
        parser.error(f"--only={args.only}: unknown ablations {unknown}; expected some of {', '.join(ABLATIONS)}")
    if not (args.data_dir / "train").is_dir():
        parser.error(f"--data_dir={args.data_dir}: no train/ folder there (expected Imagenette as ImageFolder)")
    if args.budget < 0 or 0 < args.budget < 4:
        parser.error(f"--budget={args.budget}: expected a whole number of training steps >= 4 (0: the config's)")
    if args.first_seed < 0:
        parser.error(f"--first_seed={args.first_seed}: expected a seed number >= 0")
    if args.record is not None and args.record.exists() and not (
            args.record.is_dir() and (compare_ablations.is_report(args.record)
                                      or not any(p.name != UNFINISHED for p in args.record.iterdir()))):
        parser.error(f"--record={args.record}: not a report folder (expected compare_ablations' figure3_runs.csv "
                     "and curves.csv there, or a new or empty folder)")
    try:
        recorded = load_record(args.record)
    except ValueError as error:
        parser.error(f"--record={args.record}: {error}")
    runs = [(a, s, args.runs / a / f"seed{s}", budget(a, args.budget))
            for a, s in plan(only, args.max_seeds, args.first_seed)]
    lock = workdir_lock.FolderLock(args.runs)
    if not args.dry_run:  # one runner per runs folder (each run also locks its own workdir)
        try:
            lock.acquire()
        except workdir_lock.Busy as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        if lock.note:
            print(lock.note, flush=True)
    try:
        return _run_protocol(args, runs, recorded)
    finally:
        lock.release()


def _run_protocol(args: argparse.Namespace, runs: list[tuple[str, int, pathlib.Path, int]],
                  recorded: dict[tuple[str, int], dict]) -> int:
    """`main` after its checks, holding the runs folder's lock (unless --dry_run)."""
    baseline_seeds = [s for _, s in plan([figure3.BASELINE], args.max_seeds, args.first_seed)]
    signal.signal(signal.SIGTERM, _Child.forward)
    signal.signal(signal.SIGINT, _Child.forward)  # Ctrl-C: the running run saves and the runner stops, in a line
    changed = code_change(args.runs, recorded)
    unrecorded = [(a, s) for a, s, w, n in runs if done_in_workdir(w, n) and not record_finished(recorded.get((a, s)), n)]
    if args.record is not None and unrecorded and not args.dry_run:
        recorded = write_record(args.record, recorded, runs)
    if changed:
        print(changed, flush=True)

    measured = measured_seconds_per_step(args.runs)
    seconds_per_step = PRIOR_SECONDS_PER_STEP if measured is None else measured
    trained_steps, trained_seconds, failed = 0, 0.0, []
    plateau_checked = False
    for i, (ablation, seed, workdir, steps) in enumerate(runs, 1):
        name = f"[{i:2d}/{len(runs)}] {ablation} seed {seed}"
        if (workdir / figure3.DIVERGED).exists():
            print(f"{name}: diverged earlier ({(workdir / figure3.DIVERGED).read_text().strip()})", flush=True)
            continue
        start = saved_step(workdir)
        if start >= steps:
            print(f"{name}: finished earlier, {events.accuracy_summary(workdir)}", flush=True)
            continue
        record = recorded.get((ablation, seed))
        if record_finished(record, steps):
            print(f"{name}: recorded in {args.record}, {record_summary(record)}", flush=True)
            continue
        checking = ablation != figure3.BASELINE and not plateau_checked
        curves = baseline_curves(args.runs, args.budget, baseline_seeds, recorded) if checking else None
        if curves is not None:
            plateau_checked, b = True, budget(figure3.BASELINE, args.budget)
            gains, trend = [figure3.plateau_gain(c) for c in curves], trend_line(curves)
            print(f"Plateau rule (a diagnostic; B is fixed): {figure3.plateau_sentence(gains)} at B = {b} steps.",
                  flush=True)
            if trend:
                print(trend, flush=True)
        left = sum(n - saved_step(w) for a, s, w, n in runs[i - 1:]
                   if not (done_in_workdir(w, n) or record_finished(recorded.get((a, s)), n)))
        eta = console.duration(left * seconds_per_step)
        if measured is None and trained_steps == 0:
            eta += f" at an assumed {PRIOR_SECONDS_PER_STEP} s a step (none measured here yet)"
        print(f"{name}: steps {start} -> {steps}; protocol ETA {eta} (log: {workdir / 'train.log'})", flush=True)
        if args.dry_run:
            continue
        workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "bn_inception.main",
                   f"--config=configs/{ablation}.py:{config_argument(args.budget)}",
                   f"--workdir={workdir.resolve()}", f"--config.data_dir={args.data_dir.resolve()}",
                   f"--config.seed={seed}"]
        began = time.time()
        with open(workdir / "train.log", "a") as log:
            log.write(f"\n$ {' '.join(command)}\n")
            log.flush()
            _Child.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            returncode = wait_snapshotting(_Child.process, args.record, workdir)
            _Child.process = None
        wall = time.time() - began
        done = saved_step(workdir)
        if done > start:
            trained_steps = trained_steps + done - start
            trained_seconds += wall - paused_seconds(workdir, began)
            seconds_per_step = trained_seconds / trained_steps
        diverged = NONFINITE.findall((workdir / "train.log").read_text()[-20_000:]) if returncode else []
        if diverged:
            (workdir / figure3.DIVERGED).write_text(f"non-finite loss or gradient at step {diverged[-1]}\n")
            print(f"{name}: diverged at step {diverged[-1]} after {console.duration(wall)}; {events.accuracy_summary(workdir)}", flush=True)
        elif returncode or (done < steps and not _Child.stop):
            failed.append(f"{ablation} seed {seed} (exit status {returncode}, see {workdir / 'train.log'})")
            print(f"{name}: FAILED with exit status {returncode}; see {workdir / 'train.log'}", flush=True)
        else:
            print(f"{name}: {'stopped' if _Child.stop else 'done'} at step {done} in {console.duration(wall)}, "
                  f"{events.accuracy_summary(workdir)}", flush=True)
        if args.record is not None and (diverged or done >= steps):
            recorded = write_record(args.record, recorded, runs)
            (args.record / UNFINISHED).unlink(missing_ok=True)
        elif args.record is not None:
            snapshot_unfinished(args.record, workdir)
        if _Child.stop:
            print("Stopped (SIGTERM or Ctrl-C); run the same command to continue.", flush=True)
            return 0

    present = [str(w) for _, _, w, _ in runs if (w / "config.json").exists()]
    present += [str(args.record)] if recorded else []
    if present and not args.dry_run:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_ablations.py"), *present,
                        f"--output={args.runs / 'report'}"], check=False)
    if failed:
        print("Failed runs: " + "; ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
