"""The paper's Figures 2 and 3 from training runs: validation accuracy curves and steps to the baseline's best.

  python scripts/compare_ablations.py RUN_DIR|REPORT_DIR [...] --output=OUT

Reads the TensorBoard events of finished or running runs, and the runs recorded in earlier reports (a folder
this script wrote: its figure3_runs.csv and curves.csv, e.g. a protocol's record committed under docs/), so
runs trained on different machines can be compared without their folders. A run is labelled by the `ablation`
in its `config.json`, or by its folder name when the folder holds only event files; a run given twice (the same
label and seed, say in a report and in its own folder) counts once, as the copy evaluated furthest (on a tie,
the one given last). Runs of the same label (seeds) form one group, and the group labelled `inception` is the
baseline. Figure 3's rule, applied per seed: the
threshold is the Inception baseline's maximum validation top-1 (the mean of its seeds' maxima), and a run's
"steps to the threshold" is the first evaluated step at or above it. Groups report the mean and range over
their seeds (the mean over the seeds that reached the threshold, and how many did); the speed-up is the
baseline's mean steps over the group's. Steps are also given in the paper's unit, steps of 32 examples
(step * global_batch_size / 32; 32 is assumed for runs without a config).

figure3.md's notes also say which source code the runs ran, where they recorded it (`provenance.jsonl`):
runs compared in one figure should have run the same code.

Figure 3 at every accuracy: the same measure at each level from 40% up to the threshold, every 5 points
(`figure3.levels`), per seed, with each group's mean and range and its speed-up over Inception at that level
(Inception's mean steps over the group's; the range from the group's slowest and fastest seed). It shows
whether an ablation's advantage grows or shrinks as the target rises.

Writes OUT/figure2.png (mean curve per group with its min-max band over seeds), OUT/figure3.md and
OUT/figure3.csv (one row per group), OUT/figure3_levels.csv (steps to each level, one row per run and level),
OUT/speedup_by_accuracy.png (speed-up over Inception against the target accuracy), OUT/figure3_runs.csv (one row per run, with what `load_report` needs:
batch, scale, diverged, the provenance lines' source, commit and start step) and OUT/curves.csv (every
evaluation of every run, enough to redraw Figure 2). OUT may be one of the report folders read.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import statistics
import sys
from collections.abc import Iterable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bn_inception import events, figure3, provenance  # noqa: E402

MOVING_AVERAGE_TAG = "eval_moving_average/top1_accuracy"
TOP5_TAG = "eval/top5_accuracy"
# Paper, Figure 3: steps (of 32 examples) to reach Inception's 72.2%, and the best accuracy.
PAPER = {
    "inception": (31.0e6, 0.722),
    "bn_baseline": (13.3e6, 0.727),
    "bn_x5": (2.1e6, 0.730),
    "bn_x30": (2.7e6, 0.748),
    "bn_x5_sigmoid": (None, 0.698),
}


def load_run(run_dir: pathlib.Path) -> dict:
    """{"label", "seed", "dir", "batch", "scale", "diverged", "curve", "curve_moving_average", "curve_top5",
    "provenance" (its `provenance.read` lines)}."""
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    label = config.get("ablation", run_dir.name)
    if "ensemble_member" in config:
        label = f"{label}_{config['ensemble_member']}"
    scalars = events.read_scalars(run_dir)
    scale = None
    if config.get("dataset") and config.get("dataset") != "imagenet2012":
        scale = (f"{config['dataset']}, {config.get('num_classes')} classes, {config.get('image_size')}px, "
                 f"width x{config.get('model.width_multiplier', 1.0):g}")
    diverged = run_dir / figure3.DIVERGED
    return {
        "label": label, "seed": config.get("seed"), "dir": str(run_dir), "batch": config.get("global_batch_size", 32),
        "scale": scale, "diverged": diverged.read_text().strip() if diverged.exists() else None,
        "curve": scalars.get(figure3.TOP1_TAG, []), "curve_moving_average": scalars.get(MOVING_AVERAGE_TAG, []),
        "curve_top5": scalars.get(TOP5_TAG, []), "provenance": provenance.read(run_dir),
        "damaged": events.damaged(run_dir),
    }


# What a report keeps of each provenance line (the rest, e.g. library versions, stays in the run's folder).
PROVENANCE_KEYS = ("start_step", "source", "commit", "modified")
RECORD_COLUMNS = {"run", "seed", "dir", "diverged", "batch", "scale", "provenance"}


def is_report(folder: pathlib.Path) -> bool:
    """Whether `folder` is a report this script wrote (figure3_runs.csv, no event files of its own)."""
    return (folder / "figure3_runs.csv").exists() and not any(folder.glob("events.out.tfevents.*"))


def load_report(folder: pathlib.Path) -> list[dict]:
    """The runs recorded in a report folder (its figure3_runs.csv and curves.csv), as `load_run` returns them
    (their provenance lines cut to `PROVENANCE_KEYS`). ValueError naming the file for a report written before
    figure3_runs.csv had the columns a record needs."""
    with open(folder / "figure3_runs.csv", newline="") as f:
        reader = csv.DictReader(f)
        missing = sorted(RECORD_COLUMNS - set(reader.fieldnames or ()))
        rows = list(reader)
    if missing:
        raise ValueError(f"{folder / 'figure3_runs.csv'}: no columns {', '.join(missing)}; expected a report "
                         "written by this version of compare_ablations.py")
    points: dict[tuple[str, str], list[dict]] = {}
    with open(folder / "curves.csv", newline="") as f:
        for point in csv.DictReader(f):
            points.setdefault((point["run"], point["seed"]), []).append(point)
    runs = []
    for row in rows:
        mine = sorted(points.get((row["run"], row["seed"]), []), key=lambda p: int(p["step"]))
        runs.append({
            "label": row["run"], "seed": int(row["seed"]) if row["seed"] else None, "dir": row["dir"],
            "batch": int(row["batch"]), "scale": row["scale"] or None, "diverged": row["diverged"] or None,
            "curve": _column(mine, "top1"), "curve_moving_average": _column(mine, "top1_moving_average"),
            "curve_top5": _column(mine, "top5"), "provenance": json.loads(row["provenance"] or "[]"),
        })
    return runs


def _column(points: list[dict], column: str) -> list[tuple[int, float]]:
    return [(int(p["step"]), float(p[column])) for p in points if p[column]]


def latest_runs(runs: list[dict]) -> list[dict]:
    """One run per label and seed, the copy evaluated furthest (on a tie, the later in `runs`), in order of
    first appearance; runs without a seed (folders of events only) are all kept."""
    def last_step(run: dict) -> int:
        return run["curve"][-1][0] if run["curve"] else -1

    chosen: dict[tuple, dict] = {}
    for run in runs:
        key = (run["label"], run["seed"]) if run["seed"] is not None else (run["label"], run["dir"])
        if key not in chosen or last_step(run) >= last_step(chosen[key]):
            chosen[key] = run
    return list(chosen.values())


# Groups are listed in the paper's order (Figure 3's table, then the controls), other labels after them.
ORDER = ("inception", "bn_baseline", "bn_x5", "bn_x30", "bn_x5_sigmoid", "inception_sigmoid", "inception_x5",
         "inception_x30")


def group_runs(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs by label: the paper's order first (`ORDER`), then other labels in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for run in sorted(runs, key=lambda r: ORDER.index(r["label"]) if r["label"] in ORDER else len(ORDER)):
        groups.setdefault(run["label"], []).append(run)
    return groups


def group_colours(labels: Iterable[str]) -> dict[str, str]:
    """{label: matplotlib colour}: the n-th group in `group_runs`'s order gets the n-th colour of the cycle in
    every figure, so a run is drawn in one colour in Figure 2 and in the speed-up plot."""
    return {label: f"C{i % 10}" for i, label in enumerate(labels)}


def _stats(values: list[float]) -> tuple[float | None, float | None, float | None]:
    return (statistics.fmean(values), min(values), max(values)) if values else (None, None, None)


def figure3_rows(runs: list[dict]) -> tuple[list[dict], list[dict], list[str]]:
    """(one row per group, one row per run, notes) of Figure 3 under the rule in the module docstring."""
    notes = []
    groups = group_runs(runs)
    baseline = [r for r in groups.get(figure3.BASELINE, []) if r["curve"]]
    threshold = figure3.threshold([r["curve"] for r in baseline]) if baseline else None
    if threshold is None:
        notes.append(f"No run labelled '{figure3.BASELINE}' with {figure3.TOP1_TAG}: steps to the baseline's "
                     "accuracy and speed-ups cannot be computed.")
    else:
        notes.append(f"Threshold: Inception's maximum validation top-1, {100 * threshold:.2f}% ("
                     + (f"mean of {len(baseline)} seeds' maxima)." if len(baseline) > 1 else "one seed)."))
        gains = [figure3.plateau_gain(r["curve"]) for r in baseline]
        notes.append(f"Plateau check (a diagnostic): {figure3.plateau_sentence(gains)}"
                     + ("." if figure3.plateau_met(gains) else ": the threshold is the maximum of this schedule's "
                        "baseline, which was still rising at its end, not of a plateau."))

    run_rows = []
    for run in runs:
        row = {"run": run["label"], "seed": run["seed"], "dir": run["dir"], "diverged": run["diverged"] or "",
               "batch": run["batch"], "scale": run["scale"] or "",
               "provenance": json.dumps([{k: line[k] for k in PROVENANCE_KEYS if k in line} for line in run["provenance"]])}
        for damage in run.get("damaged", []):
            notes.append(f"{run['label']} seed {run['seed']}: event file {damage}; its curve may end early.")
        if not run["curve"]:
            notes.append(f"{run['label']} ({run['dir']}): no {figure3.TOP1_TAG} events yet.")
        else:
            best_step, best = figure3.best(run["curve"])
            row.update(max_accuracy=best, step_of_max=best_step, last_step=run["curve"][-1][0])
            reached = figure3.steps_to(run["curve"], threshold) if threshold is not None else None
            if reached is not None:
                row.update(steps_to_baseline_best=reached, paper_steps_to_baseline_best=reached * run["batch"] / 32)
        run_rows.append(row)

    baseline_steps = _stats([r["paper_steps_to_baseline_best"] for r in run_rows
                             if r["run"] == figure3.BASELINE and "paper_steps_to_baseline_best" in r])[0]
    rows = []
    for label, members in groups.items():
        mine = [r for r in run_rows if r["run"] == label]
        evaluated = [r for r in mine if "max_accuracy" in r]
        reached = [r for r in mine if "steps_to_baseline_best" in r]
        paper_steps, paper_best = PAPER.get(label, (None, None))
        row = {"run": label, "seeds": len(mine), "reached": f"{len(reached)}/{len(mine)}",
               "diverged": f"{sum(bool(r['diverged']) for r in mine)}/{len(mine)}",
               "paper_steps_to_72.2": paper_steps, "paper_max_accuracy": paper_best,
               "scale": next((r["scale"] for r in members if r["scale"]), "ImageNet")}
        for key in ("steps_to_baseline_best", "paper_steps_to_baseline_best", "max_accuracy", "step_of_max"):
            row[key], row[key + "_min"], row[key + "_max"] = _stats([r[key] for r in (reached if "baseline" in key else evaluated)])
        if row["paper_steps_to_baseline_best"] and baseline_steps:
            row["speedup"] = baseline_steps / row["paper_steps_to_baseline_best"]
        if threshold is not None and evaluated and len(reached) < len(mine):
            notes.append(f"{label}: {len(mine) - len(reached)} of {len(mine)} seeds never reached the baseline's "
                         f"best accuracy {threshold:.4f}.")
        for r in mine:
            if r["diverged"]:
                notes.append(f"{label} seed {r['seed']}: diverged ({r['diverged']}).")
        rows.append(row)
    if any(run["provenance"] for run in runs):
        notes.append(provenance.sources_note({f"{run['label']} seed {run['seed']}": run["provenance"] for run in runs}))
    return rows, run_rows, notes


def level_rows(runs: list[dict]) -> tuple[list[float], list[dict], list[dict]]:
    """(the levels, one row per group and level, one row per run and level) of Figure 3 at every accuracy
    (module docstring); no levels without a baseline curve. Steps are the runs' own, as in Figure 3's table;
    speed-ups compare steps of 32 examples, so that runs of different batches compare."""
    baseline = [r["curve"] for r in runs if r["label"] == figure3.BASELINE and r["curve"]]
    if not baseline:
        return [], [], []
    levels = figure3.levels(figure3.threshold(baseline))
    run_rows = []
    for run in runs:
        if not run["curve"]:
            continue
        for level in levels:
            steps = figure3.steps_to(run["curve"], level)
            run_rows.append({"run": run["label"], "seed": run["seed"], "level": level, "steps": steps,
                             "paper_steps": None if steps is None else steps * run["batch"] / 32})
    group_rows = []
    for label, members in group_runs(runs).items():
        seeds = sum(bool(r["curve"]) for r in members)
        for level in levels:
            reached = [r for r in run_rows if r["run"] == label and r["level"] == level and r["steps"] is not None]
            base = [r["paper_steps"] for r in run_rows if r["run"] == figure3.BASELINE and r["level"] == level
                    and r["steps"] is not None]
            row = {"run": label, "level": level, "seeds": seeds, "reached": len(reached)}
            row["steps"], row["steps_min"], row["steps_max"] = _stats([r["steps"] for r in reached])
            if reached and base:
                mean_base, paper = statistics.fmean(base), [r["paper_steps"] for r in reached]
                row.update(speedup=mean_base / statistics.fmean(paper), speedup_min=mean_base / max(paper),
                           speedup_max=mean_base / min(paper))
            group_rows.append(row)
    return levels, group_rows, run_rows


def level_tables(levels: list[float], group_rows: list[dict]) -> str:
    """Markdown: steps to each level, mean (range) and seeds that reached it, then the
    speed-up over Inception at each level, mean (slowest-fastest seed)."""
    header = " | ".join(f"{100 * level:.4g}%" for level in levels)
    steps = ["| run | " + header + " |", "|" + "---|" * (len(levels) + 1)]
    speedups = list(steps)
    for label in dict.fromkeys(r["run"] for r in group_rows):
        mine = [r for r in group_rows if r["run"] == label]
        cells = [(f"{_fmt(r['steps'])}" + (f" ({_fmt(r['steps_min'])}-{_fmt(r['steps_max'])})"
                                            if r["steps_min"] != r["steps_max"] else "")
                  + f" {r['reached']}/{r['seeds']}") if r["reached"] else f"- 0/{r['seeds']}" for r in mine]
        steps.append(f"| {label} | " + " | ".join(cells) + " |")
        cells = [("-" if not r.get("speedup") else f"{r['speedup']:.2f}x" if r["speedup_min"] == r["speedup_max"]
                  else f"{r['speedup']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})") for r in mine]
        speedups.append(f"| {label} | " + " | ".join(cells) + " |")
    return ("Steps to each validation top-1 level (the last is the threshold): mean over the seeds that reached it "
            "(range), seeds that reached it.\n\n" + "\n".join(steps)
            + "\n\nSpeed-up over Inception at each level: Inception's mean steps over the group's, in steps of 32 "
            "examples (slowest-fastest seed).\n\n" + "\n".join(speedups) + "\n")


def plot_speedups(levels: list[float], group_rows: list[dict], colours: dict[str, str], path: pathlib.Path) -> None:
    """Speed-up over Inception against the target accuracy, a line per group with its seeds' range, in the
    group's colour in `colours` (Figure 2's)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(r["run"] for r in group_rows):
        mine = [r for r in group_rows if r["run"] == label and r.get("speedup")]
        if label == figure3.BASELINE or not mine:
            continue
        x = [100 * r["level"] for r in mine]
        y = [r["speedup"] for r in mine]
        errors = [[r["speedup"] - r["speedup_min"] for r in mine], [r["speedup_max"] - r["speedup"] for r in mine]]
        ax.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=label, color=colours[label])
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="Inception (1x)")
    ax.axvline(100 * levels[-1], color="grey", linestyle=":", linewidth=1, label="threshold (Inception's max)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}x"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}x" if y in (2, 3, 5) else ""))
    ax.set(xlabel="target validation top-1 accuracy (%)", ylabel="speed-up over Inception (steps to the target)")
    ax.set_title("Figure 3 at every accuracy: mean over seeds, bars: slowest-fastest seed;\n"
                 "a group's line ends at the last level any of its seeds reached", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: no line hidden
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


GROUP_COLUMNS = ["run", "seeds", "steps_to_baseline_best", "steps_to_baseline_best_min", "steps_to_baseline_best_max",
                 "paper_steps_to_baseline_best", "reached", "speedup", "max_accuracy", "max_accuracy_min",
                 "max_accuracy_max", "step_of_max", "diverged", "paper_steps_to_72.2", "paper_max_accuracy", "scale"]
LEVEL_COLUMNS = ["run", "seed", "level", "steps", "paper_steps"]
RUN_COLUMNS = ["run", "seed", "steps_to_baseline_best", "paper_steps_to_baseline_best", "max_accuracy", "step_of_max",
               "last_step", "diverged", "dir", "batch", "scale", "provenance"]


def _fmt(value, percent: bool = False) -> str:
    if value is None or value == "":
        return "-"
    if percent:
        return f"{100 * value:.1f}%"
    if isinstance(value, float) and value >= 1e5:
        return f"{value:.3g}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 or value.is_integer() else f"{value:.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _range(row: dict, key: str, percent: bool = False) -> str:
    if row.get(key) is None:
        return "-"
    if row["seeds"] == 1 or row[key + "_min"] == row[key + "_max"]:
        return _fmt(row[key], percent)
    return f"{_fmt(row[key], percent)} ({_fmt(row[key + '_min'], percent)}-{_fmt(row[key + '_max'], percent)})"


def markdown_table(rows: list[dict], notes: list[str]) -> str:
    """Figure 3 as a markdown table beside the paper's numbers, then the notes."""
    header = ["run", "seeds", "steps to Inception's max: mean (range)", "seeds that reached it", "speed-up",
              "max accuracy: mean (range)", "at step (mean)", "diverged", "paper: steps to 72.2%", "paper: max accuracy"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["run"], str(row["seeds"]), _range(row, "steps_to_baseline_best"), row["reached"],
                 f"{row['speedup']:.1f}x" if row.get("speedup") else "-", _range(row, "max_accuracy", True),
                 _fmt(row.get("step_of_max")), row["diverged"], _fmt(row["paper_steps_to_72.2"]),
                 _fmt(row["paper_max_accuracy"], True)]
        lines.append("| " + " | ".join(cells) + " |")
    scales = sorted({row["scale"] for row in rows})
    caveat = []
    if scales != ["ImageNet"]:
        caveat = ["", f"Reduced scale ({'; '.join(scales)}): the paper's columns are ImageNet's, for the shape of "
                      "the result, not for its numbers."]
    return "\n".join(lines + caveat + [""] + [f"- {note}" for note in notes]) + "\n"


def equal_steps(runs: list[dict]) -> list[int]:
    """The columns of the equal-steps table: the 2nd, 4th and 6th evaluations (early learning speed), and
    1/4, 1/2 and all of the longest run (the accelerated budget and the baseline's, under the protocol)."""
    curves = [r["curve"] for r in runs if r["curve"]]
    if not curves:
        return []
    first, last = min(c[0][0] for c in curves), max(c[-1][0] for c in curves)
    evaluated = {s for c in curves for s, _ in c}
    return sorted({s for s in (2 * first, 4 * first, 6 * first, last // 4, last // 2, last) if s in evaluated})


def equal_steps_table(runs: list[dict]) -> str:
    """Markdown: validation top-1 (%) of each group at the `equal_steps` columns, mean over the seeds that
    evaluated there (blank where none did), in the runs' own steps."""
    columns = equal_steps(runs)
    lines = ["| run | seeds | " + " | ".join(f"{s:,}" for s in columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for label, members in group_runs(runs).items():
        curves = [dict(r["curve"]) for r in members]
        cells = []
        for step in columns:
            values = [curve[step] for curve in curves if step in curve]
            cells.append(f"{100 * statistics.fmean(values):.1f}" if values else "")
        lines.append(f"| {label} | {len(members)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_curves(runs: list[dict], path: pathlib.Path) -> None:
    """Writes every evaluation of `runs` (as `load_run` returns them) to the CSV `path`, one row each."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "seed", "step", "paper_step", "top1", "top5", "top1_moving_average"])
        for run in runs:
            top5, moving = dict(run["curve_top5"]), dict(run["curve_moving_average"])
            for step, accuracy in run["curve"]:
                writer.writerow([run["label"], run["seed"], step, step * run["batch"] // 32, f"{accuracy:.6f}",
                                 f"{top5[step]:.6f}" if step in top5 else "",
                                 f"{moving[step]:.6f}" if step in moving else ""])


def write_outputs(runs: list[dict], output: pathlib.Path) -> list[dict]:
    """Writes figure2.png, figure3.md/.csv, figure3_runs.csv and curves.csv to `output`; returns the group rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output.mkdir(parents=True, exist_ok=True)
    rows, run_rows, notes = figure3_rows(runs)
    fig, ax = plt.subplots(figsize=(8, 5))
    groups = group_runs(runs)
    colours = group_colours(groups)
    for label, members in groups.items():
        steps, mean, low, high = figure3.mean_band([[(step * run["batch"] / 32, accuracy)
                                                     for step, accuracy in run["curve"]] for run in members])
        if not steps:
            continue
        ax.plot(steps, mean, color=colours[label], label=f"{label} ({len(members)} seed{'s' * (len(members) > 1)})")
        if len(members) > 1:
            ax.fill_between(steps, low, high, color=colours[label], alpha=0.2, linewidth=0)
    threshold_notes = [n for n in notes if n.startswith("Threshold")]
    if threshold_notes:
        threshold = figure3.threshold([r["curve"] for r in runs if r["label"] == figure3.BASELINE and r["curve"]])
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label="Inception's max (threshold)")
    scales = sorted({r["scale"] or "ImageNet" for r in runs})
    ax.set(xlabel="training steps of 32 examples", ylabel="validation top-1 accuracy (single crop)",
           title=f"Figure 2: mean over seeds, band = min-max ({'; '.join(scales)})")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(output / "figure2.png", dpi=110)
    plt.close(fig)

    for name, columns, table in (("figure3.csv", GROUP_COLUMNS, rows), ("figure3_runs.csv", RUN_COLUMNS, run_rows)):
        with open(output / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(table)
    write_curves(runs, output / "curves.csv")
    levels, level_groups, level_runs = level_rows(runs)
    with open(output / "figure3_levels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LEVEL_COLUMNS)
        writer.writeheader()
        writer.writerows(level_runs)
    sweep = ""
    if levels:
        plot_speedups(levels, level_groups, colours, output / "speedup_by_accuracy.png")
        sweep = "\n## Figure 3 at every accuracy\n\n" + level_tables(levels, level_groups)
    (output / "figure3.md").write_text("# Figure 3\n\n" + markdown_table(rows, notes) + sweep
                                       + "\n## Validation top-1 (%) at equal steps, mean over seeds\n\n"
                                       + equal_steps_table(runs))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=pathlib.Path)
    parser.add_argument("--output", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.run_dirs if not d.is_dir()]
    if missing:
        parser.error(f"run directories not found: {', '.join(missing)}")
    unrelated = [str(d) for d in args.run_dirs if not (is_report(d) or (d / "config.json").exists()
                                                       or any(d.glob("events.out.tfevents.*")))]
    if unrelated:
        parser.error(f"{', '.join(unrelated)}: not a run (no config.json, no TensorBoard events) nor a report "
                     "(no figure3_runs.csv)")
    runs = []
    for folder in args.run_dirs:
        try:
            runs += load_report(folder) if is_report(folder) else [load_run(folder)]
        except ValueError as error:
            parser.error(str(error))
    write_outputs(latest_runs(runs), args.output)
    print((args.output / "figure3.md").read_text())
    print(f"Figures and tables written to {args.output}/ (figure2.png, speedup_by_accuracy.png, figure3.md, "
          "figure3.csv, figure3_levels.csv, figure3_runs.csv, curves.csv).")


if __name__ == "__main__":
    main()
