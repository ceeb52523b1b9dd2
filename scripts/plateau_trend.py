"""Whether the Inception baseline was still learning at the end of its run, revision by revision.

  python scripts/plateau_trend.py docs/fig3_r2_inception_curves.csv docs/fig3_r3_inception_curves.csv \
      docs/fig3_r4/curves.csv [--label=inception]

Reads curves CSVs as `compare_ablations.py` writes them (OUT/curves.csv, committed as docs/fig3_r*_curves.csv and
docs/fig3_rN/curves.csv) and prints, for every seed of the label (the baseline by default), its steps, its maximum,
the plateau rule's late gain (`figure3.plateau_gain`: best top-1 in the last 20% of steps minus the best before)
and the straight line through the evaluations of that last 20% (`figure3.late_trend`: slope in points per tenth of
the run, its standard error, the scatter around the line); then, per file, the means and the rule's verdict.

The gain is a difference of two maxima of noisy evaluations; the slope uses every late evaluation, so it
tells a run that still rises at its end (slope several standard errors above zero) from one whose late
gain is evaluation noise (slope near zero).
"""

from __future__ import annotations

import argparse
import csv
import math
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bn_inception import figure3  # noqa: E402

COLUMNS = ("run", "seed", "step", "top1")


def read_curves(path: pathlib.Path, label: str) -> dict[int, list[tuple[int, float]]]:
    """{seed: [(step, top-1), ...] in step order} of the rows labelled `label` in a curves CSV."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a CSV file ({error})") from None
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (expected a curves.csv of compare_ablations.py)")
    curves: dict[int, list[tuple[int, float]]] = {}
    for line, row in enumerate(rows, start=2):
        if row["run"] == label:
            try:
                point = int(row["step"]), float(row["top1"])
                curves.setdefault(int(row["seed"]), []).append(point)
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: seed, step and top1 must be numbers, got "
                                 f"{row['seed']!r}, {row['step']!r}, {row['top1']!r}") from None
    if not curves:
        labels = sorted({row["run"] for row in rows})
        raise ValueError(f"{path}: no run labelled {label!r} (labels in it: {', '.join(labels) or 'none'})")
    return {seed: sorted(curve) for seed, curve in sorted(curves.items())}


def report(paths: list[pathlib.Path], label: str) -> str:
    """The table of every seed in every file, then one summary line per file."""
    lines = ["| curves | seed | steps | max top-1 (step) | late gain | late slope (s.e.) | scatter |",
             "|---|---|---|---|---|---|---|"]
    summaries = []
    for path in paths:
        name = f"{path.parent.name}/{path.name}" if path.name == "curves.csv" else path.name  # a report's: docs/fig3_r4/
        gains, slopes = [], []
        for seed, curve in read_curves(path, label).items():
            step, accuracy = figure3.best(curve)
            gain = figure3.plateau_gain(curve)
            slope, error, scatter = figure3.late_trend(curve)
            gains.append(gain)
            slopes.append(slope)
            trend = "n/a | n/a" if math.isnan(slope) else f"{slope:+.2f} ({error:.2f}) | {scatter:.2f}"
            lines.append(f"| {name} | {seed} | {curve[-1][0]} | {100 * accuracy:.1f}% ({step}) | {gain:.2f} | "
                         f"{trend} |")
        mean_slope = statistics.fmean(slopes)
        summaries.append(f"{name}: {len(gains)} seed{'s' * (len(gains) > 1)}, mean late slope "
                         + ("n/a (fewer than 3 late evaluations)" if math.isnan(mean_slope)
                            else f"{mean_slope:+.2f} points per tenth of the run") + "; "
                         f"{figure3.plateau_sentence(gains, label)}")
    return "\n".join(lines + [""] + summaries)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves", nargs="+", type=pathlib.Path, help="curves CSVs (compare_ablations.py's curves.csv)")
    parser.add_argument("--label", default=figure3.BASELINE, help="the runs to read (default: %(default)s)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.curves if not p.is_file()]
    if missing:
        parser.error(f"curves files not found: {', '.join(missing)}")
    try:
        print(report(args.curves, args.label))
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
