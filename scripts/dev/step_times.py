"""Where a run's wall time went: the time between its logged steps, and which intervals ran slow.

  python scripts/dev/step_times.py RUN_DIR [RUN_DIR ...] --steps_per_epoch=147 [--slow_s=4] [--pause_s=300]

Reads the wall times of `train/loss` (written every `log_every_steps`) and reports each process's event
file on its own line (a resumed run has one per process; the time between processes is not counted). An
interval is slow when it took more than `slow_s` seconds beyond that process's median interval, and a
pause (a stopped process) when it took more than `pause_s` seconds; pauses are left out. Intervals that
cross an epoch boundary (where training starts a new input pipeline) are counted apart from the others,
with the seconds their slow ones took beyond the median.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bn_inception import events  # noqa: E402


def interval_report(
    points: list[tuple[int, float]], steps_per_epoch: int, slow_s: float, pause_s: float
) -> dict[str, float]:
    """Counts and seconds of one process's logging intervals, from its (step, wall time) points (at least
    two): all, slow, at epoch boundaries, pauses left out. ValueError when every interval is a pause."""
    intervals = [(t1 - t0, s0 // steps_per_epoch != s1 // steps_per_epoch) for (s0, t0), (s1, t1) in zip(points, points[1:])]
    kept = [(seconds, boundary) for seconds, boundary in intervals if seconds <= pause_s]
    if not kept:
        raise ValueError(f"steps {points[0][0]}-{points[-1][0]}: every interval is a pause (over {pause_s:g} s).")
    median = statistics.median(seconds for seconds, _ in kept)
    slow = [(seconds, boundary) for seconds, boundary in kept if seconds > median + slow_s]
    return {
        "first_step": points[0][0], "last_step": points[-1][0],
        "intervals": len(kept), "pauses": len(intervals) - len(kept), "median_s": median,
        "total_s": sum(seconds for seconds, _ in kept),
        "boundaries": sum(boundary for _, boundary in kept),
        "slow_at_boundaries": sum(boundary for _, boundary in slow),
        "slow_elsewhere": sum(not boundary for _, boundary in slow),
        "extra_at_boundaries_s": sum(seconds - median for seconds, boundary in slow if boundary),
        "extra_elsewhere_s": sum(seconds - median for seconds, boundary in slow if not boundary),
    }


def report_line(r: dict[str, float]) -> str:
    """One line a person reads for `interval_report`'s result."""
    share = 100 * r["extra_at_boundaries_s"] / r["total_s"]
    return (f"  steps {r['first_step']}-{r['last_step']}: {r['intervals']} intervals (median {r['median_s']:.1f} s, "
            f"{r['total_s']:.0f} s in all, {r['pauses']} pauses left out); slow at epoch boundaries "
            f"{r['slow_at_boundaries']} of {r['boundaries']} (+{r['extra_at_boundaries_s']:.0f} s, {share:.1f}% of the "
            f"time), slow elsewhere {r['slow_elsewhere']} (+{r['extra_elsewhere_s']:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=pathlib.Path)
    parser.add_argument("--steps_per_epoch", type=int, required=True, help="training steps per epoch (train.log's first line)")
    parser.add_argument("--slow_s", type=float, default=4.0, help="seconds beyond the median that make an interval slow")
    parser.add_argument("--pause_s", type=float, default=events.PAUSE_SECONDS, help="intervals longer than this are pauses, left out")
    args = parser.parse_args(argv)
    if args.steps_per_epoch < 1:
        parser.error(f"--steps_per_epoch={args.steps_per_epoch}: expected a whole number >= 1.")
    missing = [str(d) for d in args.run_dirs if not d.is_dir()]
    if missing:
        parser.error(f"run directories not found: {', '.join(missing)}")
    for run_dir in args.run_dirs:
        print(f"{run_dir}, one line per process (event file):")
        for path in sorted(run_dir.glob("events.out.tfevents.*")):
            points = events.wall_times(path, events.TIMING_TAG)
            if len(points) < 2:
                continue
            try:
                print(report_line(interval_report(points, args.steps_per_epoch, args.slow_s, args.pause_s)))
            except ValueError as error:
                print(f"  {error}")


if __name__ == "__main__":
    main()
