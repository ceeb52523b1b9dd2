"""The Figure 3 protocol runner: its plan (seeds, order, budgets) and its refusal of bad arguments."""

import subprocess
import sys

from tests.test_train import REPO


def run(*args):
    return subprocess.run([sys.executable, "scripts/run_mini_ablation.py", *args], cwd=REPO, capture_output=True, text=True)


def test_plan_has_the_protocol_seeds_and_budgets_and_skips_finished_runs(tmp_path):
    (tmp_path / "bn_x5" / "seed0" / "checkpoints" / "1500").mkdir(parents=True)  # a finished run
    (tmp_path / "inception_x30" / "seed1").mkdir(parents=True)
    (tmp_path / "inception_x30" / "seed1" / "diverged.txt").write_text("non-finite loss or gradient at step 7\n")
    result = run(f"--runs={tmp_path}", "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 18  # 2 seeds of 8 ablations, a third of inception and bn_x30
    assert lines[0].startswith("[ 1/18] inception seed 0: steps 0 -> 6000")
    assert lines[1].startswith("[ 2/18] bn_x30 seed 0: steps 0 -> 1500")
    assert lines[2] == "[ 3/18] bn_x5 seed 0: finished earlier, no evaluation yet"
    assert lines[12] == "[13/18] inception_x30 seed 1: diverged earlier (non-finite loss or gradient at step 7)"
    assert [line.split(":")[0][8:] for line in lines[16:]] == ["inception seed 2", "bn_x30 seed 2"]
    assert not (tmp_path / "report").exists()


def test_bad_arguments_are_refused_naming_the_value(tmp_path):
    result = run(f"--runs={tmp_path}", "--only=bn_x31")
    assert result.returncode == 2 and "--only=bn_x31: unknown ablations ['bn_x31']" in result.stderr
    result = run(f"--runs={tmp_path}", f"--data_dir={tmp_path / 'nowhere'}")
    assert result.returncode == 2 and "nowhere: no train/ folder there" in result.stderr
