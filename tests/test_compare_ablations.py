"""compare_ablations on event files with known curves gives the known Figure 3 entries and a Figure 2."""

import csv
import json
import subprocess
import sys

import pytest
from clu import metric_writers

from tests.test_train import REPO

sys.path.insert(0, str(REPO / "scripts"))
import compare_ablations  # noqa: E402


def write_run(folder, curve, ablation=None, batch=32):
    folder.mkdir(parents=True)
    if ablation:
        (folder / "config.json").write_text(json.dumps({"ablation": ablation, "global_batch_size": batch}))
    writer = metric_writers.create_default_writer(str(folder), asynchronous=False)
    for step, accuracy in curve:
        writer.write_scalars(step, {"eval/top1_accuracy": accuracy, "train/loss": 1.0})
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
    assert "sigmoid_only_events never reached the baseline's best accuracy 0.6000" in table
    assert (tmp_path / "out" / "figure2.png").stat().st_size > 5_000


def test_without_a_baseline_it_says_what_it_cannot_compute(tmp_path):
    run = write_run(tmp_path / "x5", [(10, 0.2), (20, 0.4)], "bn_x5")
    rows = compare_ablations.write_outputs([compare_ablations.load_run(run)], tmp_path / "out")
    assert rows[0]["max_accuracy"] == pytest.approx(0.4) and "speedup" not in rows[0]
    assert "No run labelled 'inception'" in (tmp_path / "out" / "figure3.md").read_text()
