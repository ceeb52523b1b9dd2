"""Evaluation: the 144-crop geometry, every image counted once, ensembles, recalibration, checkpoint checks."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from bn_inception import batch_norm, checkpointing, evaluation, photometric, preprocessing, train
from tests.fixtures import write_image_folder
from tests.test_benchmark import WITHOUT_TENSORFLOW
from tests.test_console import LOG_LINE
from tests.test_train import REPO, _env, tiny_config


# One xdist worker runs the module (--dist loadgroup): its trained run (a module fixture) is built once.
pytestmark = pytest.mark.xdist_group("evaluation")


def expected_crops(image, size):
    """The GoogLeNet scheme written out in numpy for an image whose shorter side is already scale 0."""
    h, w = image.shape[:2]
    s = min(h, w)
    squares = [image[:, o : o + s] for o in (0, (w - s) // 2, w - s)] if w >= h else \
              [image[o : o + s] for o in (0, (h - s) // 2, h - s)]
    e = s - size
    crops = []
    for square in squares:
        crops += [square[y : y + size, x : x + size] for y, x in ((0, 0), (0, e), (e, 0), (e, e), (e // 2, e // 2))]
        crops.append(None)  # the whole square resized: checked separately
    return crops


@pytest.mark.parametrize("shape", [(256, 300), (330, 256)], ids=["landscape", "portrait"])
def test_144_crop_geometry(shape):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=shape + (3,)).astype(np.float32)
    crops = preprocessing.multi_crop(tf.constant(image), 224).numpy()
    assert crops.shape == (144, 224, 224, 3)
    assert preprocessing.multi_crop_scales(224) == (256, 288, 320, 352)
    for k, expected in enumerate(expected_crops(image, 224)):  # the first scale is the image itself
        if expected is not None:
            np.testing.assert_array_equal(crops[k], expected)
    # The first square (top-left in both orientations) resized whole to 224.
    whole = tf.image.resize(tf.constant(image[:256, :256]), (224, 224)).numpy()
    np.testing.assert_allclose(crops[5], whole, atol=1e-3)
    np.testing.assert_array_equal(crops[72:], crops[:72, :, ::-1])  # mirrors


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    data = write_image_folder(tmp_path_factory.mktemp("images"), {"train": 16, "val": 9})
    workdir = tmp_path_factory.mktemp("run")
    # eval_cache: the trainer's moving-average pass fills the cache, its recalibrated pass reads it; the
    # tests below compare both with evaluation.py's own uncached pass.
    config = tiny_config(data, num_train_steps=4, eval_every_steps=4, checkpoint_every_steps=4, log_every_steps=4,
                         eval_recalibrate_batches=2, eval_cache=True)
    final = train.train_and_evaluate(config, str(workdir))
    return workdir, final


def test_single_network_matches_training_eval_and_counts_each_image_once(trained_run):
    workdir, final = trained_run
    member = evaluation.load_member(str(workdir))
    results = evaluation.evaluate_ensemble([member], crops=1, batch_size=16)  # 16 does not divide 36
    assert results["num_examples"] == 36
    assert results["top1_error"] == pytest.approx(1 - final["eval_moving_average/top1_accuracy"], abs=1e-6)
    assert results["checkpoints"] == [{"workdir": str(workdir), "step": 4}]


def test_recalibrated_training_eval_equals_an_explicit_algorithm_2_call(trained_run):
    # eval/* of a run with eval_recalibrate_batches=2 is the network with Algorithm 2's statistics from the two
    # training batches after the evaluated step, computed here on one device with the whole-batch statistics
    # of the tiny config, outside the trainer.
    workdir, final = trained_run
    member = evaluation.load_member(str(workdir))
    batches = train.config_train_batches(member.config, start_step=4)
    moments = jax.jit(lambda v, b: member.model.apply(
        v, photometric.model_inputs(b), train=False, use_batch_stats=True, mutable=[batch_norm.MOMENTS])[1])
    member.variables["batch_stats"] = batch_norm.population_statistics(
        moments, member.variables, [next(batches) for _ in range(2)])
    results = evaluation.evaluate_ensemble([member], crops=1, batch_size=16)
    assert results["top1_error"] == pytest.approx(1 - final["eval/top1_accuracy"], abs=1e-6)
    assert results["top5_error"] == pytest.approx(1 - final["eval/top5_accuracy"], abs=1e-6)
    # and the moving averages (momentum 0.9 after 4 steps) are far from the population statistics
    assert abs(final["eval/loss"] - final["eval_moving_average/loss"]) > 0.01


def test_ensemble_of_two_copies_equals_the_network(trained_run):
    workdir, _ = trained_run
    one = evaluation.evaluate_ensemble([evaluation.load_member(str(workdir))], crops=144, batch_size=8)
    two = evaluation.evaluate_ensemble([evaluation.load_member(str(workdir))] * 2, crops=144, batch_size=8)
    assert one["num_examples"] == two["num_examples"] == 36
    assert (one["top1_error"], one["top5_error"]) == (two["top1_error"], two["top5_error"])


def test_recalibration_replaces_moving_averages_with_population_statistics(trained_run):
    workdir, _ = trained_run
    member = evaluation.load_member(str(workdir))
    before = member.variables["batch_stats"]["stem_1x1"]["BatchNorm_0"]["var"]
    evaluation.recalibrate(member, num_batches=2)
    after = member.variables["batch_stats"]["stem_1x1"]["BatchNorm_0"]["var"]
    assert after.shape == before.shape and not np.allclose(after, before)


def test_evaluate_command_writes_json_and_refuses_mismatched_checkpoints(trained_run, tmp_path):
    workdir, _ = trained_run
    command = [sys.executable, "scripts/evaluate.py", f"--workdir={workdir}", "--crops=1", "--batch_size=16",
               f"--output={tmp_path / 'results.json'}"]
    result = subprocess.run(command, cwd=REPO, env=_env(8), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    # the run stored its training class list; evaluation labels by it
    assert json.loads((workdir / "classes.json").read_text()) == [f"class_{k}" for k in range(4)]
    assert evaluation.load_member(str(workdir)).class_names == [f"class_{k}" for k in range(4)]
    assert set(results) >= {"top1_error", "top5_error", "num_examples", "crops", "checkpoints", "num_classes"}
    # A folder of 4 generated classes is not ImageNet: no paper row, and the reason instead.
    assert "36 images of folder" in result.stdout and "(4 classes, 32px)" in result.stdout
    assert "paper:" not in result.stdout and "No paper row" in result.stdout
    accuracy = float(next(line for line in result.stdout.splitlines() if line.startswith("this evaluation")).split()[2][:-1])
    assert accuracy == pytest.approx(100 * (1 - results["top1_error"]), abs=0.01)

    config = json.loads((workdir / "config.json").read_text())
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "checkpoints" / "4").symlink_to(workdir / "checkpoints" / "4")
    (broken / "config.json").write_text(json.dumps(config | {"model.width_multiplier": 0.25}))
    with pytest.raises(ValueError, match="does not match the model config"):
        evaluation.load_member(str(broken))


def test_two_processes_of_four_devices_evaluate_like_one_of_eight(trained_run, tmp_path):
    workdir, _ = trained_run
    command = [sys.executable, "scripts/evaluate.py", f"--workdir={workdir}", "--crops=1", "--batch_size=16",
               "--recalibrate_batches=2"]
    single = subprocess.run(command + [f"--output={tmp_path / 'one.json'}"], cwd=REPO, env=_env(8),
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    env = _env(4) | {"JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"}
    port = 20000 + (os.getpid() + 13) % 20000
    processes = [
        subprocess.Popen(command + [f"--output={tmp_path / 'two.json'}", f"--coordinator_address=127.0.0.1:{port}",
                                    "--num_processes=2", f"--process_id={i}"],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (_, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-3000:]
    assert "this evaluation" in outputs[0][0] and "this evaluation" not in outputs[1][0]  # process 0 reports
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert one["num_examples"] == two["num_examples"] == 36
    assert (one["top1_error"], one["top5_error"]) == pytest.approx((two["top1_error"], two["top5_error"]), abs=1e-9)


def test_evaluate_command_refuses_a_bad_batch_size_before_loading(trained_run, tmp_path):
    # Before TensorFlow too (its import takes 10 s): the command is run with TensorFlow unimportable.
    workdir, _ = trained_run
    result = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, "scripts/evaluate.py", f"--workdir={workdir}",
                             "--batch_size=12", f"--output={tmp_path / 'r.json'}"],
                            cwd=REPO, env=_env(8), capture_output=True, text=True)
    assert result.returncode != 0 and "batch_size=12 must be a positive multiple of the 8 devices" in result.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("crops", ["1", "144"])
def test_the_command_with_crops_members_and_recalibration_exits_0(trained_run, crops):
    # As a user runs it, with the default --output: named after crops, steps, recalibration and members,
    # so that no evaluation overwrites another.
    # With 144 crops, each value of members and of recalibration once (the slowest command of the suite;
    # test_ensemble_of_two_copies_equals_the_network checks a 144-crop ensemble's numbers in-process).
    workdir, _ = trained_run
    combinations = [(1, 0), (1, 2), (2, 0), (2, 2)] if crops == "1" else [(1, 0), (2, 2)]
    written = []
    for members, recalibrate in combinations:
        command = [sys.executable, "scripts/evaluate.py", *[f"--workdir={workdir}"] * members, f"--crops={crops}",
                   "--batch_size=16", f"--recalibrate_batches={recalibrate}"]
        result = subprocess.run(command, cwd=REPO, env=_env(8), capture_output=True, text=True)
        assert result.returncode == 0, (members, recalibrate, result.stderr[-3000:])
        name = f"crops{crops}_step{'-'.join(['4'] * members)}"
        name += f"_recal{recalibrate}" * bool(recalibrate) + f"_ensemble{members}" * (members > 1)
        output = workdir / "evaluations" / f"{name}.json"
        assert f"Results written to {output}" in result.stdout
        assert not [line for line in (result.stdout + result.stderr).splitlines() if LOG_LINE.match(line)]
        written.append(json.loads(output.read_text()))
        assert written[-1]["num_examples"] == 36 and written[-1]["recalibrate_batches"] == recalibrate
    assert len({json.dumps(w["checkpoints"]) + str(w["recalibrate_batches"]) for w in written}) == len(combinations)


def test_a_workdir_that_cannot_be_written_loses_no_evaluation(trained_run, tmp_path):
    # A workdir where evaluations/ cannot be created (here: a file of that name; as for a read-only mount):
    # the result is printed first, then written to ./evaluations/ instead, and the command says so.
    workdir, _ = trained_run
    blocked = tmp_path / "blocked"
    shutil.copytree(workdir, blocked)
    shutil.rmtree(blocked / "evaluations", ignore_errors=True)  # what the tests before this one evaluated
    (blocked / "evaluations").write_text("not a folder")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), f"--workdir={blocked}", "--crops=1",
                             "--batch_size=16"], cwd=tmp_path, env=_env(8), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("Evaluated: one network"))
    assert lines[table + 2].startswith("this evaluation")  # the result, before any attempt to write it
    assert f"Could not write {blocked / 'evaluations' / 'crops1_step4.json'} (" in result.stdout
    assert lines[-1] == "Results written to evaluations/crops1_step4.json"
    assert json.loads((tmp_path / "evaluations" / "crops1_step4.json").read_text())["num_examples"] == 36
    # An --output that cannot be written: the result is still printed, and the command fails naming the file.
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), f"--workdir={blocked}", "--crops=1",
                             "--batch_size=16", f"--output={blocked / 'evaluations' / 'x.json'}"], cwd=tmp_path,
                            env=_env(8), capture_output=True, text=True)
    assert result.returncode == 1 and "this evaluation" in result.stdout
    assert "the results (printed above) could not be written to" in result.stderr


def test_a_checkpoint_deleted_while_read_gives_way_to_the_newest(trained_run, tmp_path, monkeypatch, capsys):
    # Issue 36, item 11: a run training in the workdir deletes the checkpoint evaluate.py is reading (its keep
    # policy). The first restore below finds its checkpoint deleted under it, as TensorStore would.
    workdir, _ = trained_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    shutil.copytree(copy / "checkpoints" / "4", copy / "checkpoints" / "2")  # an older checkpoint to fall back on
    real = checkpointing.ocp.CheckpointManager.restore
    deleted = []

    def restore_while_training(self, step, *args, **kwargs):
        if not deleted:
            deleted.append(step)
            shutil.rmtree(copy / "checkpoints" / str(step))
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpointing.ocp.CheckpointManager, "restore", restore_while_training)
    member = evaluation.load_member(str(copy))
    assert deleted == [4] and member.step == 2
    assert f"{copy}/checkpoints/4 was deleted while it was read (the run is training there)" in capsys.readouterr().out
    # A step asked for by --step is not replaced: the error says what happened.
    deleted.clear()
    shutil.copytree(copy / "checkpoints" / "2", copy / "checkpoints" / "6")
    with pytest.raises(FileNotFoundError, match="checkpoints/6 was deleted while it was read .* it now has \\[2\\]"):
        evaluation.load_member(str(copy), step=6)
