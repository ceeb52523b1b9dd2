"""The reduced-scale Figure 3 protocol's measurements on a validation curve (rules: configs/default.py).

A curve is a list of (step, top-1 accuracy) in step order, as `events.read_scalars` returns it.
"""

from __future__ import annotations

import math
import statistics

BASELINE = "inception"  # the ablation whose maximum is the threshold
TOP1_TAG = "eval/top1_accuracy"  # the curve: validation top-1 as the trainer logs it
DIVERGED = "diverged.txt"  # written in a run's workdir by scripts/run_mini_ablation.py for a non-finite loss
PLATEAU_FRACTION = 0.2  # the plateau rule: the baseline's last 20% of steps...
PLATEAU_POINTS = 0.5  # ...gains under 0.5 points of top-1, mean over its seeds.
# Figure 3 at every accuracy (issue 34): steps to each level from 40% up, every 5 points, and the threshold.
FIRST_LEVEL = 0.40
LEVEL_SPACING = 0.05


def best(curve: list[tuple[int, float]]) -> tuple[int, float]:
    """(step, accuracy) of the maximum, the earliest step on ties."""
    return max(curve, key=lambda point: (point[1], -point[0]))


def threshold(baseline_curves: list[list[tuple[int, float]]]) -> float:
    """Figure 3's threshold: the mean over the baseline's seeds of their maximum accuracy."""
    return statistics.fmean(best(curve)[1] for curve in baseline_curves)


def steps_to(curve: list[tuple[int, float]], threshold: float) -> int | None:
    """The first evaluated step whose accuracy is at or above `threshold` (None if never)."""
    return next((s for s, a in curve if a >= threshold), None)


def levels(threshold: float) -> list[float]:
    """The accuracy levels of Figure 3 at every accuracy: `FIRST_LEVEL`, then every `LEVEL_SPACING` below
    `threshold`, then `threshold` itself (the paper's single level)."""
    count = max(0, math.ceil(round((threshold - FIRST_LEVEL) / LEVEL_SPACING, 9)))
    return [round(FIRST_LEVEL + i * LEVEL_SPACING, 9) for i in range(count)] + [threshold]


def mean_band(curves: list[list[tuple[float, float]]]) -> tuple[list[float], list[float], list[float], list[float]]:
    """Figure 2's curve of a group of seeds: the steps at which any of `curves` was evaluated, in order, and at
    each the mean, minimum and maximum over the curves evaluated there."""
    by_step: dict[float, list[float]] = {}
    for curve in curves:
        for step, accuracy in curve:
            by_step.setdefault(step, []).append(accuracy)
    steps = sorted(by_step)
    return (steps, [statistics.fmean(by_step[s]) for s in steps], [min(by_step[s]) for s in steps],
            [max(by_step[s]) for s in steps])


def plateau_gain(curve: list[tuple[int, float]]) -> float:
    """Points of top-1 (x100) the run gained in its last 20% of steps: its maximum minus its maximum up to
    80% of its last evaluated step (NaN without an evaluation in the first 80%)."""
    last = curve[-1][0]
    early = [a for s, a in curve if s <= (1 - PLATEAU_FRACTION) * last]
    return 100 * (best(curve)[1] - max(early)) if early else float("nan")


def late_trend(curve: list[tuple[int, float]]) -> tuple[float, float, float]:
    """The straight line through the evaluations of the last 20% of steps (those `plateau_gain` looks at):
    (slope, its standard error, scatter of the evaluations around the line), in points of top-1 per tenth
    of the run and points. A run still learning at its end has a slope well above its standard error; the
    standard error treats evaluations as independent, which neighbouring ones are not, so it is a lower
    bound. NaNs with fewer than 3 late evaluations."""
    last = curve[-1][0]
    late = [(10 * s / last, 100 * a) for s, a in curve if s > (1 - PLATEAU_FRACTION) * last]
    if len(late) < 3:
        return math.nan, math.nan, math.nan
    x, y = zip(*late)
    line = statistics.linear_regression(x, y)
    scatter = math.sqrt(sum((b - line.slope * a - line.intercept) ** 2 for a, b in late) / (len(late) - 2))
    spread = math.sqrt(sum((a - statistics.fmean(x)) ** 2 for a in x))
    return line.slope, scatter / spread, scatter


def plateau_met(gains: list[float]) -> bool:
    """The plateau rule on the baseline's seeds: the mean of their gains (those that could be computed) is
    under PLATEAU_POINTS."""
    known = [g for g in gains if not math.isnan(g)]
    return bool(known) and statistics.fmean(known) < PLATEAU_POINTS


def display_name(label: str) -> str:
    """How sentences and figure titles name the runs labelled `label`: 'Inception' for the baseline."""
    return "Inception" if label == BASELINE else label


def plateau_sentence(gains: list[float], label: str = BASELINE) -> str:
    """One line: the mean and per-seed gains of the runs labelled `label`, and whether the rule is met. A seed
    with no evaluation before its last 20% of steps (NaN gain) is 'n/a' and left out of the mean."""
    known = [g for g in gains if not math.isnan(g)]
    if not known:
        return (f"{display_name(label)}'s gain in the last {PLATEAU_FRACTION:.0%} of its steps cannot be computed: no "
                f"seed was evaluated before them ({len(gains)} seed{'s' * (len(gains) > 1)})")
    per_seed = ", ".join("n/a" if math.isnan(g) else f"{g:.2f}" for g in gains)
    return (f"{display_name(label)} gained {statistics.fmean(known):.2f} points in the last {PLATEAU_FRACTION:.0%} of its steps "
            f"(mean over seeds; per seed {per_seed}): the rule (< {PLATEAU_POINTS}) is "
            f"{'met' if plateau_met(gains) else 'NOT met'}")
