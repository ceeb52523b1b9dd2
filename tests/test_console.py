"""What a user reads: the training command's console contract, --help, one-line errors, finished runs."""

import re
import subprocess
import sys
import types

import pytest

from tests.test_train import REPO, _env, _main_command

# A library's log line, in absl's format ("I1128 09:53:07.621822 1396 file.py:178]") or in the one TensorFlow's C++
# writes before absl's logging is set up ("I0000 00:00:1795863057.054830 5355 cpu_feature_guard.cc:227]").
LOG_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]")


def test_log_line_matches_both_formats_and_not_our_lines():
    assert LOG_LINE.match("W1128 09:53:07.621822 139682999032704 imagenet2012_dataset_builder.py:178] ImageNet")
    assert LOG_LINE.match("I0000 00:00:1795863057.054830    5355 cpu_feature_guard.cc:227] This TensorFlow binary")
    assert not LOG_LINE.match("step 10: eval top-1 86.1%, top-5 100.0%, loss 0.391 (36 images, 3.0 s)")


def run(*args):
    return subprocess.run([sys.executable, "-m", "bn_inception.main", *args], cwd=REPO, env=_env(8),
                          capture_output=True, text=True)


def test_a_run_prints_progress_evaluations_checkpoints_and_a_summary_and_no_library_logs(image_folder, tmp_path):
    command = _main_command(tmp_path, image_folder, "--config.num_train_steps=10", "--config.eval_every_steps=10",
                            "--config.eval_recalibrate_batches=1")
    result = subprocess.run(command, cwd=REPO, env=_env(8), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bn_x30: starting, 10 steps of 32")
    assert [line.split(":")[0] for line in lines if line.startswith("step ") and "/10 (" in line] == ["step 5/10 (50%)", "step 10/10 (100%)"]
    assert any(line.startswith("step 10: eval top-1 ") and "BN statistics by Algorithm 2" in line for line in lines)
    assert f"step 10: checkpoint saved to {tmp_path / 'checkpoints' / '10'}" in lines
    assert lines[-2].startswith("Finished bn_x30 at step 10 in ") and "final eval top-1" in lines[-2]
    assert lines[-1] == f"Events: {tmp_path} (tensorboard --logdir {tmp_path}); checkpoints: {tmp_path / 'checkpoints'}."
    # No orbax / TensorFlow / clu INFO lines anywhere, no absl- or glog-style log line of any level (such as
    # orbax's warning when the checkpoint code overrides its array handler), and only our lines on stdout.
    everything = result.stdout + result.stderr
    for noise in ("orbax", "oneDNN", "I0000", "logging_writer", "Setting work unit notes"):
        assert noise not in everything, noise
    assert not [line for line in everything.splitlines() if LOG_LINE.match(line)]

    events_before = sorted(tmp_path.glob("events.out.tfevents.*"))
    again = subprocess.run(command, cwd=REPO, env=_env(8), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith(f"{tmp_path}: already finished at step 10, final eval top-1 ")
    assert sorted(tmp_path.glob("events.out.tfevents.*")) == events_before  # nothing written


def test_help_exits_0_and_lists_configs_arguments_and_flags():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for text in ("bn_x30 ", "inception_x30 ", "mnist ", "`imagenette`", "member=N", "--print_config",
                 "--coordinator_address", "--[no]verbose", "--workdir"):
        assert text in result.stdout, text


@pytest.mark.parametrize("args, message", [
    (["--config=configs/bn_x31.py:tiny"], "error: --config=configs/bn_x31.py: no such file (configs/ has "),
    (["--config=configs/bn_x30.py:tiny", "--config.sede=1"], "error: no config key 'sede'; did you mean 'seed'?"),
    (["--config=configs/bn_x30.py:tiny,imagenet"], "Unknown config arguments ['imagenet']"),
])
def test_a_misspelled_config_file_or_key_is_one_line(tmp_path, args, message):
    result = run(*args, f"--workdir={tmp_path / 'w'}")
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "w").exists()


def test_print_config_prints_the_resolved_config_and_exits():
    result = run("--config=configs/bn_x30.py:imagenette,budget=6000", "--print_config")
    assert result.returncode == 0, result.stderr
    assert '"base_learning_rate": 0.045' in result.stdout and '"num_train_steps": 1500' in result.stdout


def test_the_progress_rate_forgets_a_pause_after_ten_log_intervals(monkeypatch):
    from bn_inception import train

    # Start at 0 s; steps 50-150 every 10 s (50 steps of 64 in 10 s: 320 images/s); a 1,000 s pause before
    # step 200; then steps 200-750 every 10 s again.
    clock = iter([0.0, 10.0, 20.0, 30.0] + [1_040.0 + 10.0 * k for k in range(12)])
    monkeypatch.setattr(train, "time", types.SimpleNamespace(time=lambda: next(clock)))  # train's clock only
    progress = train._Progress(start_step=0, num_steps=1_000, global_batch=64)
    lines = [progress.line(step, {}) for step in range(50, 751, 50)]
    assert lines[0] == "step 50/1000 (5%): first interval, compilation included"
    assert lines[2] == f"step 150/1000 (15%): 320 images/s, ETA {train.console.duration(850 * 0.2)}"
    # Just after the pause, the window holds it: steps 50-200 in 1,030 s.
    assert lines[3] == f"step 200/1000 (20%): {150 * 64 / 1_030:,.0f} images/s, ETA {train.console.duration(800 * 1_030 / 150)}"
    # Ten intervals later the pause has left the window: the speed again, and the ETA of 250 steps at 0.2 s.
    assert lines[-1] == f"step 750/1000 (75%): 320 images/s, ETA {train.console.duration(250 * 0.2)}"
