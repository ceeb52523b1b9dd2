"""Section 3.3's stage scalars of whole training runs, side by side: the mechanism over a run, not 100 steps.

  python scripts/dev/stage_scalars.py RUN_DIR [RUN_DIR ...] [--at=1500,3000,6000,12000] [--window=50] \
      [--plot=stage_scalars.png]

Training logs, per stage (stem, 3x, 4x, 5x, classifier), each stage's kernels taken as one vector,
`train/angular_update/STAGE` (||W_t+1 - W_t|| / ||W_t|| per step) and `train/weight_norm/STAGE`, as means
over the steps since the last log. For each run and each step S of --at, this prints their mean over the
logged points in (S - window, S], and the stem's angular update over the 5x stage's: how much faster, relative
to their size, the input end's kernels move. --plot draws, against the step, the stem's and the 5x stage's
angular updates, their ratio and the two stages' norms relative to their first logged value (rolling means
over --smooth logged points). Runs logged before the scalars existed, or not yet at S, show "-".
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bn_inception import events, gradient_stats  # noqa: E402

ANGULAR, NORM = "train/angular_update/", "train/weight_norm/"


def label(run_dir: pathlib.Path) -> str:
    """"ablation seed N" from the run's config.json, else the folder's name."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
        return f"{config['ablation']} seed {config['seed']}"
    except (OSError, ValueError, KeyError):
        return run_dir.name


def mean_at(points: list[tuple[int, float]], step: int, window: int) -> float | None:
    """The mean of the points logged in (step - window, step], or None when there are none."""
    values = [v for s, v in points if step - window < s <= step]
    return float(np.mean(values)) if values else None


def rows(scalars: dict[str, list[tuple[int, float]]], at: list[int], window: int
         ) -> list[tuple[int, dict[str, float | None], dict[str, float | None]]]:
    """(step, {stage: angular update}, {stage: weight norm}) at each step of `at`."""
    return [(step, {s: mean_at(scalars.get(ANGULAR + s, []), step, window) for s in gradient_stats.STAGES},
             {s: mean_at(scalars.get(NORM + s, []), step, window) for s in gradient_stats.STAGES}) for step in at]


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(runs: dict[str, dict[str, list[tuple[int, float]]]], at: list[int], window: int) -> str:
    """The angular update and norm of every stage, and the stem / 5x ratio of angular updates, per run and step."""
    stages = gradient_stats.STAGES
    lines = [f"{'run':<22} {'step':>7}  " + " ".join(f"{'angular ' + s:>18}" for s in stages)
             + f" {'stem / 5x':>10}  " + " ".join(f"{'norm ' + s:>16}" for s in stages)]
    for name, scalars in runs.items():
        for step, angular, norm in rows(scalars, at, window):
            ratio = (angular["stem"] / angular["5x"] if angular["stem"] is not None and angular["5x"] else None)
            lines.append(f"{name:<22} {step:>7}  " + " ".join(f"{_cell(angular[s], '.2e'):>18}" for s in stages)
                         + f" {_cell(ratio, '.1f'):>10}  " + " ".join(f"{_cell(norm[s], '.2f'):>16}" for s in stages))
    return "\n".join(lines)


def _rolling(points: list[tuple[int, float]], n: int) -> tuple[np.ndarray, np.ndarray]:
    steps, values = np.array([s for s, _ in points]), np.array([v for _, v in points])
    if n <= 1 or len(values) < n:
        return steps, values
    return steps[n - 1:], np.convolve(values, np.ones(n) / n, mode="valid")


def plot(runs: dict[str, dict[str, list[tuple[int, float]]]], path: pathlib.Path, smooth: int) -> None:
    """Angular updates of the stem and the 5x stage, their ratio, and both stages' relative norms, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_update, ax_ratio, ax_norm) = plt.subplots(1, 3, figsize=(16, 4.6))
    for i, (name, scalars) in enumerate(runs.items()):
        color = f"C{i}"
        stem, top = scalars.get(ANGULAR + "stem", []), scalars.get(ANGULAR + "5x", [])
        if not (stem and top):
            continue
        for points, style, stage in ((stem, "-", "stem"), (top, "--", "5x")):
            ax_update.plot(*_rolling(points, smooth), style, color=color, label=f"{name}: {stage}")
        stem_at, top_at = dict(stem), dict(top)
        ratio = [(s, stem_at[s] / top_at[s]) for s in sorted(stem_at.keys() & top_at.keys()) if top_at[s] > 0]
        ax_ratio.plot(*_rolling(ratio, smooth), color=color, label=name)
        for stage, style in (("stem", "-"), ("5x", "--")):
            norms = scalars.get(NORM + stage, [])
            if norms:
                ax_norm.plot([s for s, _ in norms], [v / norms[0][1] for _, v in norms], style, color=color,
                             label=f"{name}: {stage}")
    ax_update.set(yscale="log", xlabel="training step", ylabel="angular update per step  ||ΔW|| / ||W||",
                  title="Angular update (solid: stem, dashed: 5x)")
    ax_ratio.set(xlabel="training step", ylabel="stem / 5x angular update", title="Inequality with depth")
    ax_norm.set(xlabel="training step", ylabel="||W|| / its first logged value",
                title="Kernel norm (solid: stem, dashed: 5x)")
    for ax in (ax_update, ax_ratio, ax_norm):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=pathlib.Path, help="training run folders (their event files)")
    parser.add_argument("--at", default="1500,3000,6000,12000", help="comma-separated steps of the table")
    parser.add_argument("--window", type=int, default=50, help="steps averaged before each step of --at")
    parser.add_argument("--smooth", type=int, default=5, help="logged points in each rolling mean of the plot")
    parser.add_argument("--plot", type=pathlib.Path, default=None, help="a PNG of the figures against the step")
    args = parser.parse_args(argv)
    try:
        at = [int(s) for s in args.at.split(",")]
    except ValueError:
        parser.error(f"--at={args.at}: expected comma-separated whole steps, like 1500,3000")
    if args.window < 1 or args.smooth < 1:
        parser.error(f"--window={args.window}, --smooth={args.smooth}: expected 1 or more")
    missing = [str(r) for r in args.runs if not list(r.glob("events.out.tfevents.*"))]
    if missing:
        parser.error(f"no event files in {', '.join(missing)} (expected training run folders)")
    runs: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run_dir in args.runs:
        name = label(run_dir)
        runs[str(run_dir) if name in runs else name] = events.read_scalars(run_dir)
    without = [name for name, scalars in runs.items() if ANGULAR + "stem" not in scalars]
    if len(without) == len(runs):
        parser.error(f"no stage scalars ({ANGULAR}*) in {', '.join(without)}: runs of a commit before they existed")
    print(table(runs, at, args.window))
    if without:
        print(f"No stage scalars in {', '.join(without)} (logged before they existed).")
    if args.plot:
        plot(runs, args.plot, args.smooth)
        print(f"Plot: {args.plot}")


if __name__ == "__main__":
    main()
