"""Ctrl-C (issue 36, item 4): the first saves the current step and exits 0 in a line, as SIGTERM does; a
second stops at once."""

import json
import signal
import subprocess
import sys
import time

from tests.test_train import REPO, _checkpoint_steps, _env, _main_command, _start_and_signal


def test_ctrl_c_saves_the_step_and_exits_0_in_one_line(image_folder, tmp_path):
    command = _main_command(tmp_path, image_folder, "--config.num_train_steps=100000", "--config.checkpoint_every_steps=5")
    process = _start_and_signal(command, tmp_path, 0, signal.SIGINT)
    assert process.returncode == 0, process.stderr_text[-3000:]
    assert "Traceback" not in process.stderr_text and "KeyboardInterrupt" not in process.stderr_text
    assert "Ctrl-C received: the run saves what it has and stops" in process.stderr_text
    saved = _checkpoint_steps(tmp_path)[-1]
    assert saved > 5 and f"Preempted at step {saved}: checkpoint saved" in process.stdout_text
    # The same command resumes from there.
    resumed = subprocess.run(command[:-2] + ["--config.num_train_steps=100000", "--config.checkpoint_every_steps=5",
                                             f"--config.num_train_steps={saved + 2}", "--config.allow_config_change=True"],
                             cwd=REPO, env=_env(8), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0 and f"resuming at step {saved}" in resumed.stdout, resumed.stderr[-3000:]


def test_a_second_ctrl_c_stops_at_once():
    # The handlers of a training process (bn_inception.main installs them first thing): the first Ctrl-C only
    # asks for a stop; the second ends the process there, without waiting for a save.
    code = ("import os, signal, sys, time; sys.path.insert(0, '.'); from bn_inception import preemption; "
            "preemption.install(); os.kill(os.getpid(), signal.SIGINT); time.sleep(0.2); "
            "print('asked', preemption.requested(), flush=True); os.kill(os.getpid(), signal.SIGINT); time.sleep(5); "
            "print('still running')")
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 130 and result.stdout == "asked True\n", result.stderr
    assert result.stderr.splitlines() == [
        "Ctrl-C received: the run saves what it has and stops (Ctrl-C again stops at once, without saving).",
        "Ctrl-C again: stopped at once, without saving."]
    assert time.monotonic() - began < 5


def test_ctrl_c_after_sigterm_is_not_a_second_ctrl_c():
    # A terminal's Ctrl-C reaches a protocol run twice: as SIGINT from the terminal and as the runner's
    # forwarded SIGTERM. That must still save.
    code = ("import os, signal, sys, time; sys.path.insert(0, '.'); from bn_inception import preemption; "
            "preemption.install(); os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.2); "
            "os.kill(os.getpid(), signal.SIGINT); time.sleep(0.2); print('saving', preemption.requested())")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "saving True\n", result.stderr


def test_sigterm_is_acted_on_within_seconds_in_every_phase(image_folder, tmp_path):
    # Issue 36, item 3: scripts/dev/stop_latency.py, as a developer runs it, sends SIGTERM in each phase of a
    # run. Start-up (imports): exit 0 before training. Compilation (the first batch and the training step's,
    # watched on a helper thread): no step trained, nothing written, the workdir gone. Training: the step
    # saved. The first evaluation (its compilation included): abandoned, the step saved, no step after it.
    # How fast is measured by the script (docs/reliability.md), never asserted here.
    report = tmp_path / "latency.json"
    command = [sys.executable, "scripts/dev/stop_latency.py", "--config=configs/bn_x30.py:tiny",
               f"--data_dir={image_folder}", f"--json={report}", f"--keep={tmp_path}", "--",
               "--config.num_classes=4", "--config.num_train_steps=1000"]
    result = subprocess.run(command, cwd=REPO, env=_env(1), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {run["phase"]: run for run in json.loads(report.read_text())}
    for phase, run in runs.items():
        assert run["returncode"] == 0 and "SIGTERM received" in run["stderr"], (phase, run["stderr"][-3000:])
        assert "Traceback" not in run["stderr"], (phase, run["stderr"][-3000:])
    assert runs["startup"]["last_line"] == "Stopped (SIGTERM or Ctrl-C) before training started: nothing new to save."
    assert runs["compile"]["last_line"] == "Stopped (SIGTERM or Ctrl-C) while compiling, before the first step: nothing written."
    assert "step 1" not in runs["compile"]["stdout"] and not (tmp_path / "compile").exists()
    assert runs["train"]["last_line"].startswith("Preempted at step ")
    evaluation = runs["evaluation"]["stdout"]
    assert "step 20: evaluation abandoned for the stop; the resumed run does it first." in evaluation
    assert runs["evaluation"]["last_line"].startswith("Preempted at step 20: checkpoint saved")
    assert _checkpoint_steps(tmp_path / "evaluation") == [20]
