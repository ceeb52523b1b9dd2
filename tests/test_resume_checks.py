"""What a resumed run checks about its data and devices (issue 36, items 2 and 9): a renamed class folder
is refused naming the difference (classes.json never rewritten), a training set of another size is refused
unless asked (its steps per epoch, and so its schedule, would change), and a resume on another device count
is said and recorded, and computes the same up to float summation order."""

import shutil
import subprocess

import jax
import numpy as np
import orbax.checkpoint as ocp

from bn_inception import provenance
from tests.test_train import REPO, _env, _main_command


def _run(workdir, data, *flags, devices=8):
    return subprocess.run(_main_command(workdir, data, *flags), cwd=REPO, env=_env(devices), capture_output=True,
                          text=True, timeout=600)


def test_a_renamed_class_folder_or_a_resized_training_set_is_refused_on_resume(image_folder, tmp_path):
    data = shutil.copytree(image_folder, tmp_path / "data")
    workdir = tmp_path / "run"
    first = _run(workdir, data, "--config.num_train_steps=4", "--config.eval_every_steps=4")
    assert first.returncode == 0, first.stderr[-3000:]
    classes = (workdir / "classes.json").read_text()

    (data / "train" / "class_0").rename(data / "train" / "zz_class_0")
    result = _run(workdir, data, "--config.num_train_steps=8", "--config.allow_config_change=True")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-3000:]
    assert ("the data's differ (missing from the data: ['class_0']; new in the data: ['zz_class_0']): its labels "
            "would be permuted") in result.stderr
    assert (workdir / "classes.json").read_text() == classes
    (data / "train" / "zz_class_0").rename(data / "train" / "class_0")

    # 32 more training images: 256 -> 288, 8 -> 9 steps of 32 per epoch.
    for i in range(32):
        shutil.copy(data / "train" / "class_1" / f"{i:04d}.JPEG", data / "train" / "class_1" / f"extra{i}.JPEG")
    result = _run(workdir, data, "--config.num_train_steps=4", "--config.eval_every_steps=4")  # the same command
    assert result.returncode == 1, result.stderr[-3000:]
    assert "the training data has 288 examples, the run's last start had 256: 8 -> 9 steps per epoch" in result.stderr
    result = _run(workdir, data, "--config.num_train_steps=8", "--config.allow_config_change=True")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "8 -> 9 steps per epoch, which changes the learning-rate schedule (allow_config_change)." in result.stdout
    assert [line["train_examples"] for line in provenance.read(workdir)] == [256, 288]


def _params(workdir, step):
    state = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "default")
    return [np.asarray(x) for x in jax.tree.leaves(state["params"])]


def test_a_resume_on_another_device_count_is_said_recorded_and_close(image_folder, tmp_path):
    flags = ["--config.eval_every_steps=100", "--config.checkpoint_every_steps=4", "--config.log_every_steps=4"]
    straight = _run(tmp_path / "straight", image_folder, "--config.num_train_steps=12", *flags)
    assert straight.returncode == 0, straight.stderr[-3000:]
    moved = tmp_path / "moved"
    for steps, devices in ((4, 8), (8, 4), (12, 8)):
        result = _run(moved, image_folder, f"--config.num_train_steps={steps}", "--config.allow_config_change=True",
                      *flags, devices=devices)
        assert result.returncode == 0, result.stderr[-3000:]
        if steps > 4:
            before = 8 if devices == 4 else 4
            assert (f"on {devices} CPU devices; workdir {moved} (its last start ran on {before} devices: the same "
                    "computation up to float summation order)") in result.stdout
    assert [line["device_count"] for line in provenance.read(moved)] == [8, 4, 8]
    # Tolerance: the whole parameter vector after 12 steps of BN-x30 (30x learning rate) within 1e-3 relative
    # of the run that never moved; the summation order moves it by rounding only.
    a, b = np.concatenate([p.ravel() for p in _params(moved, 12)]), np.concatenate(
        [p.ravel() for p in _params(tmp_path / "straight", 12)])
    relative = np.linalg.norm(a - b) / np.linalg.norm(b)
    assert 0 <= relative < 1e-3, relative
