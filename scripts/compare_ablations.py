"""The paper's Figures 2 and 3 from training runs: validation accuracy curves and steps to the baseline's best.

  python scripts/compare_ablations.py RUN_DIR [RUN_DIR ...] --output=OUT

Reads the TensorBoard events of finished or running runs. A run is labelled by the `ablation` in its
`config.json`, or by its folder name when the folder holds only event files; the run labelled
`inception` is the baseline. Steps are also given in the paper's unit, steps of 32 examples
(step * global_batch_size / 32; 32 is assumed for runs without a config).
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bn_inception import events  # noqa: E402

TAG = "eval/top1_accuracy"
BASELINE = "inception"
# Paper, Figure 3: steps (of 32 examples) to reach Inception's 72.2%, and the best accuracy.
PAPER = {
    "inception": (31.0e6, 0.722),
    "bn_baseline": (13.3e6, 0.727),
    "bn_x5": (2.1e6, 0.730),
    "bn_x30": (2.7e6, 0.748),
    "bn_x5_sigmoid": (None, 0.698),
}


def load_run(run_dir: pathlib.Path) -> dict:
    """{"label", "batch", "curve": [(step, accuracy)]} for one run directory."""
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    label = config.get("ablation", run_dir.name)
    if "ensemble_member" in config:
        label = f"{label}_{config['ensemble_member']}"
    curve = events.read_scalars(run_dir).get(TAG, [])
    return {"label": label, "dir": str(run_dir), "batch": config.get("global_batch_size", 32), "curve": curve}


def figure3_rows(runs: list[dict]) -> tuple[list[dict], list[str]]:
    """One row per run with steps to the baseline's best accuracy, best accuracy and speed-up; plus notes."""
    notes = []
    baseline = next((r for r in runs if r["label"] == BASELINE and r["curve"]), None)
    threshold = max(a for _, a in baseline["curve"]) if baseline else None
    if baseline is None:
        notes.append(f"No run labelled '{BASELINE}' with {TAG}: steps to the baseline's accuracy and speed-ups "
                     "cannot be computed.")

    def steps_to(run):
        return next((s for s, a in run["curve"] if a >= threshold), None) if threshold is not None else None

    baseline_steps = steps_to(baseline) * baseline["batch"] / 32 if baseline else None
    rows = []
    for run in runs:
        row = {"run": run["label"], "dir": run["dir"]}
        paper_steps, paper_best = PAPER.get(run["label"], (None, None))
        row["paper_steps_to_72.2"] = paper_steps
        row["paper_max_accuracy"] = paper_best
        if not run["curve"]:
            notes.append(f"{run['label']} ({run['dir']}): no {TAG} events yet.")
            rows.append(row)
            continue
        best_step, best = max(run["curve"], key=lambda point: (point[1], -point[0]))
        row.update(max_accuracy=best, step_of_max=best_step, paper_steps_of_max=best_step * run["batch"] / 32)
        reached = steps_to(run)
        if threshold is not None and reached is None:
            notes.append(f"{run['label']} never reached the baseline's best accuracy {threshold:.4f}.")
        if reached is not None:
            paper_reached = reached * run["batch"] / 32
            row.update({"steps_to_baseline_best": reached, "paper_steps_to_baseline_best": paper_reached,
                        "speedup": baseline_steps / paper_reached})
        rows.append(row)
    return rows, notes


COLUMNS = ["run", "steps_to_baseline_best", "paper_steps_to_baseline_best", "speedup", "max_accuracy", "step_of_max",
           "paper_steps_to_72.2", "paper_max_accuracy", "dir"]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value < 1:
        return f"{100 * value:.2f}%"
    if isinstance(value, float) and value >= 1e5:
        return f"{value:.3g}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def write_outputs(runs: list[dict], output: pathlib.Path) -> list[dict]:
    """Writes figure2.png, figure3.md and figure3.csv to `output`; returns the rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output.mkdir(parents=True, exist_ok=True)
    rows, notes = figure3_rows(runs)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        if run["curve"]:
            steps, accuracy = zip(*run["curve"])
            ax.plot([s * run["batch"] / 32 for s in steps], accuracy, label=run["label"])
    ax.set(xlabel="training steps of 32 examples", ylabel="validation top-1 accuracy", title="Figure 2")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output / "figure2.png", dpi=110)
    plt.close(fig)

    with open(output / "figure3.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    header = ["run", "steps to baseline's best", "(paper units)", "speed-up", "max accuracy", "at step",
              "paper: steps to 72.2%", "paper: max accuracy"]
    lines = ["# Figure 3", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in COLUMNS[:-1]) + " |")
    lines += [""] + [f"- {note}" for note in notes]
    (output / "figure3.md").write_text("\n".join(lines) + "\n")
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
    write_outputs([load_run(d) for d in args.run_dirs], args.output)
    print((args.output / "figure3.md").read_text())


if __name__ == "__main__":
    main()
