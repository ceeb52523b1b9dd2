"""compare_ablations on event files with known curves gives the known Figure 3 entries and a Figure 2."""

import csv
import json
import subprocess
import sys

import pytest
from clu import metric_writers

from bn_inception import events

from tests.test_train import REPO

sys.path.insert(0, str(REPO / "scripts"))
import compare_ablations  # noqa: E402


def write_run(folder, curve, ablation=None, batch=32, seed=0, moving_average=None):
    folder.mkdir(parents=True)
    if ablation:
        config = {"ablation": ablation, "global_batch_size": batch, "seed": seed, "dataset": "imagenette",
                  "num_classes": 10, "image_size": 64, "model.width_multiplier": 0.25}  # flat, as runs save it
        (folder / "config.json").write_text(json.dumps(config))
    writer = metric_writers.create_default_writer(str(folder), asynchronous=False)
    for step, accuracy in curve:
        scalars = {"eval/top1_accuracy": accuracy, "eval/top5_accuracy": 1.0, "train/loss": 1.0}
        if moving_average is not None:
            scalars["eval_moving_average/top1_accuracy"] = moving_average
        writer.write_scalars(step, scalars)
    writer.close()
    return folder


def test_known_curves_give_known_table(tmp_path):
    runs = [
        write_run(tmp_path / "a", [(100, 0.3), (200, 0.5), (300, 0.6), (400, 0.55)], "inception"),
        # batch 64: each step is 2 paper steps; reaches 0.6 at step 100 = 200 paper steps -> 300/200 = 1.5x
        write_run(tmp_path / "b", [(50, 0.4), (100, 0.65), (150, 0.7)], "bn_x30", batch=64),
        write_run(tmp_path / "sigmoid_only_events", [(100, 0.1), (200, 0.2)]),
    ]
    result = subprocess.run(
        [sys.executable, "scripts/compare_ablations.py", *map(str, runs), f"--output={tmp_path / 'out'}"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "out" / "figure3.csv"))}
    assert set(rows) == {"inception", "bn_x30", "sigmoid_only_events"}
    assert float(rows["inception"]["steps_to_baseline_best"]) == 300
    assert float(rows["inception"]["speedup"]) == 1.0
    assert float(rows["bn_x30"]["steps_to_baseline_best"]) == 100
    assert float(rows["bn_x30"]["paper_steps_to_baseline_best"]) == 200
    assert float(rows["bn_x30"]["speedup"]) == 1.5
    assert float(rows["bn_x30"]["max_accuracy"]) == pytest.approx(0.7)
    assert float(rows["bn_x30"]["step_of_max"]) == 150
    assert float(rows["bn_x30"]["paper_steps_to_72.2"]) == 2.7e6
    assert rows["sigmoid_only_events"]["speedup"] == ""
    table = (tmp_path / "out" / "figure3.md").read_text()
    assert "sigmoid_only_events: 1 of 1 seeds never reached the baseline's best accuracy 0.6000" in table
    assert "Reduced scale (ImageNet; imagenette, 10 classes, 64px, width x0.25)" in table
    assert (tmp_path / "out" / "figure2.png").stat().st_size > 5_000


def test_seeds_are_grouped_into_means_ranges_and_per_seed_steps(tmp_path):
    runs = [
        # Inception's maxima 0.6 and 0.8: the threshold is their mean, 0.7; seed 0 never reaches it.
        write_run(tmp_path / "i0", [(100, 0.3), (200, 0.6)], "inception", seed=0),
        write_run(tmp_path / "i1", [(100, 0.5), (200, 0.72), (300, 0.8)], "inception", seed=1, moving_average=0.25),
        # batch 64 (2 paper steps a step): reach 0.7 at steps 50 and 100 -> 100 and 200 paper steps.
        write_run(tmp_path / "x0", [(50, 0.72), (100, 0.71)], "bn_x30", batch=64, seed=0),
        write_run(tmp_path / "x1", [(50, 0.5), (100, 0.75)], "bn_x30", batch=64, seed=1),
        write_run(tmp_path / "c0", [(100, 0.1)], "inception_x30", seed=0),
    ]
    (tmp_path / "c0" / "diverged.txt").write_text("non-finite loss or gradient at step 120\n")
    for run, source in (("i0", "a"), ("i1", "a"), ("x0", "b")):  # c0 and x1 started before provenance lines
        (tmp_path / run / "provenance.jsonl").write_text(json.dumps({"source": source * 64, "start_step": 0}) + "\n")
    loaded = [compare_ablations.load_run(r) for r in runs]
    rows = {r["run"]: r for r in compare_ablations.write_outputs(loaded, tmp_path / "out")}
    assert list(rows) == ["inception", "bn_x30", "inception_x30"]  # the paper's order
    assert rows["inception"]["reached"] == "1/2" and rows["inception"]["paper_steps_to_baseline_best"] == 200
    x30 = rows["bn_x30"]
    assert (x30["steps_to_baseline_best"], x30["steps_to_baseline_best_min"], x30["steps_to_baseline_best_max"]) == (75, 50, 100)
    assert x30["paper_steps_to_baseline_best"] == 150 and x30["speedup"] == pytest.approx(200 / 150)
    assert x30["max_accuracy"] == pytest.approx(0.735) and x30["max_accuracy_min"] == pytest.approx(0.72)
    assert x30["max_accuracy_max"] == pytest.approx(0.75) and x30["reached"] == "2/2" and x30["seeds"] == 2
    assert rows["inception_x30"]["diverged"] == "1/1" and rows["inception_x30"]["reached"] == "0/1"
    per_run = {(r["run"], r["seed"]): r for r in csv.DictReader(open(tmp_path / "out" / "figure3_runs.csv"))}
    assert per_run[("bn_x30", "1")]["steps_to_baseline_best"] == "100"
    assert per_run[("inception", "0")]["steps_to_baseline_best"] == ""
    table = (tmp_path / "out" / "figure3.md").read_text()
    assert "| bn_x30 | 2 | 75 (50-100) | 2/2 | 1.3x | 73.5% (72.0%-75.0%) |" in table
    assert "Threshold: Inception's maximum validation top-1, 70.00% (mean of 2 seeds' maxima)" in table
    # Plateau rule: gains in the last 20% of steps are 30 (0.6 - 0.3) and 8 (0.8 - 0.72) points.
    assert "gained 19.00 points" in table and "per seed 30.00, 8.00" in table and "NOT met" in table
    assert "inception_x30 seed 0: diverged (non-finite loss or gradient at step 120)" in table
    assert (f"Code: the runs ran 2 different sources: source {'a' * 12} (commit unknown) in inception seed 0 from step 0, "
            f"inception seed 1 from step 0; source {'b' * 12} (commit unknown) in bn_x30 seed 0 from step 0; 2 of 5 "
            "runs have no provenance.jsonl") in table
    # Equal steps: first evaluation 50, longest run 300 -> 100, 200, 300 (and 75, 150, 300 are not all
    # evaluated): inception at 100 is the mean of 0.3 and 0.5, bn_x30 at 100 of 0.71 and 0.75.
    assert compare_ablations.equal_steps(loaded) == [100, 200, 300]
    assert table.endswith("| run | seeds | 100 | 200 | 300 |\n|---|---|---|---|---|\n| inception | 2 | 40.0 | 66.0 | 80.0 |\n"
                          "| bn_x30 | 2 | 73.0 |  |  |\n| inception_x30 | 1 | 10.0 |  |  |\n")
    curves = list(csv.DictReader(open(tmp_path / "out" / "curves.csv")))
    assert len(curves) == 2 + 3 + 2 + 2 + 1
    assert curves[2] == {"run": "inception", "seed": "1", "step": "100", "paper_step": "100", "top1": "0.500000",
                         "top5": "1.000000", "top1_moving_average": "0.250000"}
    assert (tmp_path / "out" / "figure2.png").stat().st_size > 5_000


def test_without_a_baseline_it_says_what_it_cannot_compute(tmp_path):
    run = write_run(tmp_path / "x5", [(10, 0.2), (20, 0.4)], "bn_x5")
    rows = compare_ablations.write_outputs([compare_ablations.load_run(run)], tmp_path / "out")
    assert rows[0]["max_accuracy"] == pytest.approx(0.4) and "speedup" not in rows[0]
    assert "No run labelled 'inception'" in (tmp_path / "out" / "figure3.md").read_text()


def test_a_report_keeps_its_runs_for_a_later_comparison(tmp_path):
    # A protocol's record: runs written to a report, their folders gone, compared again with a new run.
    runs = [write_run(tmp_path / "i0", [(100, 0.3), (200, 0.6)], "inception", seed=0, moving_average=0.25),
            write_run(tmp_path / "x0", [(50, 0.72)], "bn_x30", batch=64, seed=0)]
    (tmp_path / "x0" / "diverged.txt").write_text("non-finite loss or gradient at step 60\n")
    (tmp_path / "i0" / "provenance.jsonl").write_text(
        json.dumps({"source": "a" * 64, "start_step": 0, "commit": "c" * 40, "host": "vm", "versions": {}}) + "\n")
    loaded = [compare_ablations.load_run(r) for r in runs]
    compare_ablations.write_outputs(loaded, tmp_path / "record")
    assert compare_ablations.is_report(tmp_path / "record") and not compare_ablations.is_report(tmp_path / "i0")
    recorded = compare_ablations.load_report(tmp_path / "record")
    for key in ("label", "seed", "dir", "batch", "scale", "diverged"):
        assert recorded[0][key] == loaded[0][key], key
    for key in ("curve", "curve_moving_average", "curve_top5"):  # kept to 6 decimals, as curves.csv writes them
        assert [s for s, _ in recorded[0][key]] == [s for s, _ in loaded[0][key]] != []
        assert [a for _, a in recorded[0][key]] == pytest.approx([a for _, a in loaded[0][key]], abs=5e-7)
    assert recorded[0]["provenance"] == [{"start_step": 0, "source": "a" * 64, "commit": "c" * 40}]
    assert recorded[1]["diverged"] == "non-finite loss or gradient at step 60" and recorded[1]["batch"] == 64

    # The same inception seed 0 run further on (its folder on another machine): it replaces the record's copy.
    further = write_run(tmp_path / "i0_more", [(100, 0.3), (200, 0.6), (300, 0.7)], "inception", seed=0)
    result = subprocess.run([sys.executable, "scripts/compare_ablations.py", str(tmp_path / "record"), str(further),
                             f"--output={tmp_path / 'record'}"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    per_run = list(csv.DictReader(open(tmp_path / "record" / "figure3_runs.csv")))
    assert [(r["run"], r["seed"], r["last_step"], r["dir"]) for r in per_run] == [
        ("inception", "0", "300", str(further)), ("bn_x30", "0", "50", str(tmp_path / "x0"))]
    assert "bn_x30 seed 0: diverged (non-finite loss or gradient at step 60)" in result.stdout


def test_a_report_without_the_record_columns_is_refused_by_name(tmp_path):
    report = tmp_path / "old_report"
    report.mkdir()
    (report / "figure3_runs.csv").write_text("run,seed,max_accuracy,dir\ninception,0,0.5,/x\n")
    (report / "curves.csv").write_text("run,seed,step,paper_step,top1,top5,top1_moving_average\n")
    result = subprocess.run([sys.executable, "scripts/compare_ablations.py", str(report), f"--output={tmp_path / 'o'}"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and not (tmp_path / "o").exists()
    assert (f"{report / 'figure3_runs.csv'}: no columns batch, diverged, provenance, scale; expected a report written "
            "by this version of compare_ablations.py") in result.stderr


def test_curves_summary_names_final_and_best_with_the_earliest_step_on_ties():
    top1 = [(100, 0.30), (200, 0.561), (300, 0.561), (400, 0.5)]
    top5 = [(100, 0.8), (200, 0.9), (300, 0.95)]  # none at step 400
    assert events.curves_summary(top1, top5) == ("final eval top-1 50.0% / top-5 nan% (step 400); best top-1 56.1% at "
                                                 "step 200, top-5 95.0% at step 300")
    assert events.curves_summary(top1, []) == "final eval top-1 50.0% (step 400); best top-1 56.1% at step 200"
    assert events.curves_summary([], top5) == "no evaluation yet"


def test_figure3_at_every_accuracy_gives_the_known_crossings(tmp_path):
    # Inception seeds cross 40% at steps 100 and 300, and reach their maxima 0.62 and 0.58: threshold 0.60,
    # levels 40%, 45%, 50%, 55%, 60%. bn_x30 (batch 64: each step is 2 steps of 32) seed 1 never reaches 55%.
    # (No accuracy equals a level: event files hold float32, in which 0.45 is just below 0.45.)
    runs = [
        write_run(tmp_path / "i0", [(100, 0.41), (200, 0.46), (300, 0.52), (400, 0.62)], "inception", seed=0),
        write_run(tmp_path / "i1", [(100, 0.30), (200, 0.39), (300, 0.451), (400, 0.58)], "inception", seed=1),
        write_run(tmp_path / "x0", [(50, 0.401), (100, 0.56), (150, 0.61)], "bn_x30", batch=64, seed=0),
        write_run(tmp_path / "x1", [(50, 0.35), (100, 0.501), (150, 0.53)], "bn_x30", batch=64, seed=1),
    ]
    result = subprocess.run(
        [sys.executable, "scripts/compare_ablations.py", *map(str, runs), f"--output={tmp_path / 'out'}"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    steps = {(r["run"], r["seed"], round(float(r["level"]), 4)): r["steps"]
             for r in csv.DictReader(open(tmp_path / "out" / "figure3_levels.csv"))}
    expected = {  # level: (inception 0, inception 1, bn_x30 0, bn_x30 1), "" for never
        0.40: ("100", "300", "50", "100"), 0.45: ("200", "300", "100", "100"), 0.50: ("300", "400", "100", "100"),
        0.55: ("400", "400", "100", ""), 0.60: ("400", "", "150", "")}
    assert len(steps) == 4 * len(expected)
    for level, per_run in expected.items():
        assert tuple(steps[key, str(seed), level] for key, seed in (("inception", 0), ("inception", 1), ("bn_x30", 0),
                                                                     ("bn_x30", 1))) == per_run
    groups, runs_by_level = compare_ablations.level_rows(
        [compare_ablations.load_run(r) for r in runs])[1:]
    by = {(r["run"], round(r["level"], 4)): r for r in groups}
    # 40%: Inception 200 steps of 32 on average; bn_x30 (100 + 200) / 2 = 150 -> 1.33x (2.0x fastest, 1.0x slowest).
    assert by["bn_x30", 0.40]["speedup"] == pytest.approx(200 / 150)
    assert (by["bn_x30", 0.40]["speedup_min"], by["bn_x30", 0.40]["speedup_max"]) == pytest.approx((1.0, 2.0))
    # 55%: one bn_x30 seed reached it (step 100 = 200 of 32) against Inception's 400 (batch 32): 2x, 1 of 2 seeds.
    assert by["bn_x30", 0.55]["speedup"] == pytest.approx(2.0) and by["bn_x30", 0.55]["reached"] == 1
    # 60% (the threshold): one Inception seed reached it (400), one bn_x30 seed (step 150 = 300 of 32).
    assert by["inception", 0.60]["reached"] == 1 and by["bn_x30", 0.60]["speedup"] == pytest.approx(400 / 300)
    table = (tmp_path / "out" / "figure3.md").read_text()
    assert "| run | 40% | 45% | 50% | 55% | 60% |" in table
    assert "| bn_x30 | 75 (50-100) 2/2 | 100 2/2 | 100 2/2 | 100 1/2 | 150 1/2 |" in table
    assert "| bn_x30 | 1.33x (1.00-2.00) |" in table
    assert (tmp_path / "out" / "speedup_by_accuracy.png").stat().st_size > 10_000


def test_an_empty_or_unrelated_folder_is_refused_not_counted_as_a_run(tmp_path):
    run = write_run(tmp_path / "i0", [(100, 0.3)], "inception")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    result = subprocess.run([sys.executable, "scripts/compare_ablations.py", str(run), str(tmp_path / "empty"),
                             str(tmp_path / "notes"), f"--output={tmp_path / 'out'}"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert (f"{tmp_path / 'empty'}, {tmp_path / 'notes'}: not a run (no config.json, no TensorBoard events) nor a "
            "report") in result.stderr


def test_each_run_has_one_colour_in_figure2_and_the_speedup_plot(tmp_path, monkeypatch):
    """A reader matches the two figures by colour: bn_x30 must not be red in one and green in the other."""
    import matplotlib.colors
    import matplotlib.figure

    legends = []

    def record_legend(figure, *args, **kwargs):
        legend = figure.axes[0].get_legend()
        legends.append({text.get_text().split(" (")[0]: matplotlib.colors.to_hex(handle.get_color())
                        for text, handle in zip(legend.get_texts(), legend.legend_handles)
                        if not text.get_text().startswith(("Inception", "threshold"))})

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record_legend)
    runs = [write_run(tmp_path / "i", [(100, 0.3), (200, 0.5), (300, 0.6)], "inception"),
            write_run(tmp_path / "b", [(100, 0.2), (200, 0.4), (300, 0.5)], "bn_baseline"),
            write_run(tmp_path / "x", [(50, 0.4), (100, 0.65)], "bn_x30")]
    compare_ablations.write_outputs([compare_ablations.load_run(r) for r in runs], tmp_path / "out")
    figure2, speedups = legends
    assert set(speedups) == {"bn_baseline", "bn_x30"}
    assert {label: figure2[label] for label in speedups} == speedups
