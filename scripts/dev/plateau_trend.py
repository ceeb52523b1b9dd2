"""Whether the Inception baseline was still learning at the end of its run, revision by revision.

  python scripts/dev/plateau_trend.py docs/fig3_r2_inception_curves.csv docs/fig3_r3_inception_curves.csv \
      docs/fig3_r4/curves.csv [--label=inception] [--plot=docs/plateau_trend.png]

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

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

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


def report(files: dict[pathlib.Path, dict[int, list[tuple[int, float]]]], label: str) -> str:
    """The table of every seed in every file ({path: `read_curves`}), then one summary line per file."""
    lines = ["| curves | seed | steps | max top-1 (step) | late gain | late slope (s.e.) | scatter |",
             "|---|---|---|---|---|---|---|"]
    summaries = []
    for path, curves in files.items():
        name = f"{path.parent.name}/{path.name}" if path.name == "curves.csv" else path.name  # a report's: docs/fig3_r4/
        gains, slopes = [], []
        for seed, curve in curves.items():
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


def plot(files: dict[pathlib.Path, dict[int, list[tuple[int, float]]]], label: str, output: pathlib.Path) -> None:
    """Writes a PNG of three panels, one colour per curves file ({path: `read_curves`}; its budget B: the last
    step evaluated): the mean curve over the seeds with its min-max band and a dotted line at 80% of B, the
    plateau rule's late gain of each seed against B with the rule's limit, and each seed's late slope (with
    its standard error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves_ax, gain_ax, slope_ax) = plt.subplots(1, 3, figsize=(15, 4.5))
    budgets, mean_gains, mean_slopes = [], [], []
    for by_seed in files.values():
        curves = list(by_seed.values())
        b = max(curve[-1][0] for curve in curves)
        steps, mean, low, high = figure3.mean_band(curves)
        line, = curves_ax.plot(steps, [100 * a for a in mean],
                               label=f"B = {b:,} ({len(curves)} seed{'s' * (len(curves) > 1)})")
        colour = line.get_color()
        curves_ax.fill_between(steps, [100 * a for a in low], [100 * a for a in high], color=colour, alpha=0.2,
                               linewidth=0)
        curves_ax.axvline((1 - figure3.PLATEAU_FRACTION) * b, color=colour, linestyle=":", linewidth=1)
        gains = [figure3.plateau_gain(curve) for curve in curves]
        trends = [figure3.late_trend(curve) for curve in curves]
        gain_ax.plot([b] * len(gains), gains, "o", color=colour, alpha=0.6)
        slope_ax.errorbar([b] * len(trends), [t[0] for t in trends], yerr=[t[1] for t in trends], fmt="o",
                          color=colour, alpha=0.6, capsize=3)
        budgets.append(b)
        mean_gains.append(statistics.fmean(gains))
        mean_slopes.append(statistics.fmean(t[0] for t in trends))
    gain_ax.plot(budgets, mean_gains, color="black", linewidth=1, label="mean over seeds")
    gain_ax.axhline(figure3.PLATEAU_POINTS, color="grey", linestyle="--", linewidth=1,
                    label=f"the rule: mean under {figure3.PLATEAU_POINTS}")
    slope_ax.plot(budgets, mean_slopes, color="black", linewidth=1, label="mean over seeds")
    slope_ax.axhline(0, color="grey", linestyle="--", linewidth=1, label="flat")
    curves_ax.set(xscale="log", xlabel="training step (log scale)", ylabel="validation top-1 (%)",
                  title=f"{figure3.display_name(label)}: mean over seeds, band = min-max;\ndotted: 80% of the run")
    gain_ax.set(xscale="log", xlabel="budget B (steps, log scale)", ylabel="late gain (points of top-1)",
                title="Best in the last 20% minus best before")
    slope_ax.set(xscale="log", xlabel="budget B (steps, log scale)", ylabel="points of top-1 per tenth of the run",
                 title="Slope of a line through the last 20%\n(bars: one standard error)")
    for ax in (gain_ax, slope_ax):
        ax.set_xticks(budgets, [f"{b:,}" for b in budgets], minor=False)
        ax.minorticks_off()
    for ax in (curves_ax, gain_ax, slope_ax):
        ax.legend(fontsize=8, loc="lower right" if ax is curves_ax else "best")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("curves", nargs="+", type=pathlib.Path, help="curves CSVs (compare_ablations.py's curves.csv)")
    parser.add_argument("--label", default=figure3.BASELINE, help="the runs to read (default: %(default)s)")
    parser.add_argument("--plot", type=pathlib.Path, default=None,
                        help="also draw the curves, late gains and late slopes per file into this PNG")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.curves if not p.is_file()]
    if missing:
        parser.error(f"curves files not found: {', '.join(missing)}")
    if args.plot is not None and (args.plot.suffix != ".png" or not args.plot.parent.is_dir()):
        parser.error(f"--plot={args.plot}: expected a .png file in an existing folder")
    try:
        files = {path: read_curves(path, args.label) for path in args.curves}
    except ValueError as error:
        parser.error(str(error))
    print(report(files, args.label))
    if args.plot is not None:
        plot(files, args.label, args.plot)
        print(f"Figure: {args.plot}")


if __name__ == "__main__":
    main()
