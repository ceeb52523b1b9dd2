"""Never lose a run: exact resume, corrupt checkpoints, non-finite steps, and bad input refused up front."""

import json
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bn_inception import checkpointing, events, parallel, preemption, train
from tests.fixtures import write_image_folder
from tests.test_train import REPO, _env, tiny_config


# One xdist worker runs the module (--dist loadgroup): its trained run (a module fixture) is built once.
pytestmark = pytest.mark.xdist_group("robustness")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), {"train": 32, "val": 3})


def robust_config(image_folder, **overrides):
    defaults = dict(num_train_steps=6, checkpoint_every_steps=2, eval_every_steps=6, log_every_steps=2)
    overrides = defaults | overrides
    return tiny_config(overrides.pop("data_dir", image_folder), **overrides)


@pytest.fixture(scope="module")
def finished_run(image_folder, tmp_path_factory):
    """A 6-step run, uninterrupted, with checkpoints at steps 2, 4 and 6."""
    workdir = tmp_path_factory.mktemp("finished")
    train.train_and_evaluate(robust_config(image_folder), str(workdir))
    return workdir


def saved_state(workdir, step):
    with checkpointing.create_manager(pathlib.Path(workdir, "checkpoints"), keep=3) as manager:
        return manager.restore(step)


def snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in pathlib.Path(folder).rglob("*")}


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(image_folder, finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    for step in ("4", "6"):  # as if the run had been killed just after its step-2 checkpoint
        shutil.rmtree(tmp_path / "checkpoints" / step)
    train.train_and_evaluate(robust_config(image_folder), str(tmp_path))
    resumed, uninterrupted = saved_state(tmp_path, 6), saved_state(finished_run, 6)
    assert jax.tree.structure(resumed) == jax.tree.structure(uninterrupted)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(uninterrupted)):
        np.testing.assert_array_equal(a, b)


def _abstract_state(config):
    runner = parallel.Runner.create(config)
    return train.setup(config, 128, runner.axis_name).abstract_state(), runner


def test_truncated_latest_checkpoint_falls_back_to_the_one_before(image_folder, finished_run, tmp_path, capsys):
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    data_files = [p for p in (tmp_path / "checkpoints" / "6").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert data_files
    for path in data_files:  # as a disk that filled up mid-write would leave them
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    abstract, runner = _abstract_state(robust_config(image_folder))
    manager = checkpointing.create_manager(tmp_path / "checkpoints", 3)
    state, step = checkpointing.restore_or_none(manager, abstract, runner)
    assert step == 4 and int(state.step) == 4
    assert (tmp_path / "corrupt_checkpoints" / "6").is_dir()  # set aside, not deleted
    manager.close()
    # Said in one line of the console's own, not as a library log line.
    said = [line for line in capsys.readouterr().out.splitlines() if "unreadable" in line]
    assert len(said) == 1 and said[0].startswith(f"warning: checkpoint {tmp_path / 'checkpoints' / '6'} is unreadable (")
    assert said[0].endswith(f"moving it to {tmp_path / 'corrupt_checkpoints' / '6'} and trying the one before.")


def test_checkpoint_of_another_model_is_refused_by_name(image_folder, finished_run):
    config = robust_config(image_folder)
    config.model.width_multiplier = 0.25
    abstract, runner = _abstract_state(config)
    manager = checkpointing.create_manager(finished_run / "checkpoints", 3)
    with pytest.raises(ValueError, match=r"does not match the model config: \S+ is \(8,\) there and \(16,\) in the model"):
        checkpointing.restore_or_none(manager, abstract, runner)
    manager.close()


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(image_folder, tmp_path):
    config = robust_config(image_folder, base_learning_rate=1e30, checkpoint_every_steps=1, log_every_steps=1)
    with pytest.raises(FloatingPointError, match=r"Non-finite loss or gradient at step 2; .*the last checkpoint \(step 1\) is intact"):
        train.train_and_evaluate(config, str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]
    assert int(saved_state(tmp_path, 1)["step"]) == 1
    # Before any checkpoint, the message does not claim one (issue 36, item 12).
    config = robust_config(image_folder, base_learning_rate=1e30, checkpoint_every_steps=100, log_every_steps=2)
    with pytest.raises(FloatingPointError, match="at step 2; training stopped before saving it, no checkpoint had been saved yet"):
        train.train_and_evaluate(config, str(tmp_path / "fresh"))


def test_a_non_finite_step_never_names_a_checkpoint_whose_save_then_failed(image_folder, tmp_path, monkeypatch, capsys):
    # Step 1's save is still in flight when step 2's non-finite loss is found, and it then fails (a full disk,
    # found when waited on, after orbax has counted it). The error must not call step 1 intact: it is gone.
    import orbax.checkpoint as ocp

    real_wait = ocp.CheckpointManager.wait_until_finished
    failing = [True]

    def wait(self):
        real_wait(self)
        if failing and (pathlib.Path(self.directory) / "1").exists():
            failing.pop()
            shutil.rmtree(pathlib.Path(self.directory) / "1")
            raise ValueError("RESOURCE_EXHAUSTED: No space left on device [os_error_code='28']")

    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", wait)
    monkeypatch.setattr(ocp.CheckpointManager, "is_saving_in_progress", lambda self: bool(failing))
    config = robust_config(image_folder, base_learning_rate=1e30, checkpoint_every_steps=1, log_every_steps=1)
    with pytest.raises(FloatingPointError, match="at step 2; training stopped before saving it, no checkpoint had been saved yet"):
        train.train_and_evaluate(config, str(tmp_path))
    out = capsys.readouterr().out
    assert "step 1: the checkpoint could not be saved" in out and "step 1: checkpoint saved" not in out
    assert not list((tmp_path / "checkpoints").iterdir())


def test_non_finite_steps_can_be_skipped_and_counted(image_folder, tmp_path):
    config = robust_config(image_folder, base_learning_rate=1e30, skip_nonfinite_steps=True, log_every_steps=6)
    train.train_and_evaluate(config, str(tmp_path))
    skipped = events.read_scalars(tmp_path)["train/skipped_nonfinite_steps"]
    assert skipped == [(6, 5.0)]  # step 1 is finite; its huge update makes every later step non-finite
    state = saved_state(tmp_path, 6)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state["params"]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"base_learning_rate": -0.1}, "base_learning_rate=-0.1 must be > 0"),
        ({"num_train_steps": 0, "num_epochs": 0.0}, "num_train_steps=0, num_epochs=0.0"),
        ({"image_size": 16, "eval_resize": 18}, "image_size=16 is too small for bn_inception: it needs >= 32"),
        ({"global_batch_size": 20}, "global_batch_size=20 must be a positive multiple of the 8 devices"),
        ({"bn_group_size": 3}, "bn_group_size=3 must divide each device's share of the batch, 4"),
        ({"global_batch_size": 8, "bn_group_size": 4}, "bn_group_size=4 must divide each device's share of the batch, 1"),
        ({"data_dir": "/nonexistent/images", "allow_config_change": True}, "data_dir '/nonexistent/images' does not exist"),
        ({"num_classes": 10, "allow_config_change": True}, "num_classes=10 but the training data has 4 classes"),
        ({"ablation": "bn_x5"}, "holds a run with a different config .*ablation: saved 'bn_x30', now 'bn_x5'.*allow_config_change"),
        ({"seed": -1}, r"seed=-1 must be >= 0"),
        ({"base_learning_rate": float("inf")}, r"base_learning_rate=inf must be a finite number"),
        ({"model": {**tiny_config("x").model, "bn_momentum": float("nan")}}, r"model.bn_momentum=nan must be a finite number"),
        ({"model": {**tiny_config("x").model, "precision": "tf32"}}, r"model.precision='tf32'; expected one of \('default', 'high', 'highest'\)"),
    ],
)
def test_bad_input_fails_before_work_and_touches_nothing(image_folder, finished_run, tmp_path, overrides, message):
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    before = snapshot(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train.train_and_evaluate(robust_config(image_folder, **overrides), str(tmp_path))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "flag, message",
    [("--config.learning_rate=0.1", "learning_rate"), ("--config.num_train_steps=ten", "num_train_steps")],
)
def test_unknown_key_or_wrong_type_on_the_command_line_is_refused(image_folder, tmp_path, flag, message):
    command = [sys.executable, "-m", "bn_inception.main", "--config=configs/bn_x30.py:tiny",
               f"--workdir={tmp_path / 'run'}", f"--config.data_dir={image_folder}", flag]
    result = subprocess.run(command, cwd=REPO, env=_env(8), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_workdir_with_a_config_but_no_checkpoint_accepts_a_new_config(image_folder, tmp_path):
    # A first attempt that failed before its first checkpoint must not lock the workdir to its config.
    checkpointing.save_workdir_config(tmp_path, robust_config(image_folder, base_learning_rate=0.5))
    checkpointing.check_workdir_config(tmp_path, robust_config(image_folder))
    (tmp_path / "checkpoints" / "2").mkdir(parents=True)  # once something is trained, it is locked
    with pytest.raises(ValueError, match="base_learning_rate: saved 0.5, now 0.045"):
        checkpointing.check_workdir_config(tmp_path, robust_config(image_folder))


def _corrupt(checkpoint):
    for path in checkpoint.rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_second_unreadable_checkpoint_of_the_same_step_is_set_aside_too(image_folder, finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    abstract, runner = _abstract_state(robust_config(image_folder))
    for attempt in range(2):  # the same step damaged twice (e.g. re-copied from a bad disk)
        if attempt:
            shutil.copytree(finished_run / "checkpoints" / "6", tmp_path / "checkpoints" / "6")
        _corrupt(tmp_path / "checkpoints" / "6")
        with checkpointing.create_manager(tmp_path / "checkpoints", 3) as manager:
            _, step = checkpointing.restore_or_none(manager, abstract, runner)
        assert step == 4
    assert sorted(p.name for p in (tmp_path / "corrupt_checkpoints").iterdir()) == ["6", "6.1"]


def test_a_run_whose_checkpoints_were_all_set_aside_does_not_restart_silently(image_folder, finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    (tmp_path / "corrupt_checkpoints").mkdir()
    for checkpoint in (tmp_path / "checkpoints").iterdir():
        checkpoint.rename(tmp_path / "corrupt_checkpoints" / checkpoint.name)
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError, match=r"holds 2, 4, 6: every checkpoint of this run was set aside.*allow_restart_from_scratch=True"):
        train.train_and_evaluate(robust_config(image_folder), str(tmp_path))
    assert snapshot(tmp_path) == before
    train.train_and_evaluate(robust_config(image_folder, allow_restart_from_scratch=True), str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "4", "6"]


@pytest.fixture
def clean_preemption():
    preemption.reset()
    yield
    preemption.reset()


def test_preemption_saves_the_step_without_starting_an_evaluation(image_folder, tmp_path, monkeypatch, clean_preemption):
    # SIGTERM arriving once training is under way (during the first step), with an evaluation due at that very
    # step: the checkpoint is written at once (a grace period may not cover a 50,000-image evaluation) and no
    # evaluation starts.
    step_functions = train.step_functions

    def sigterm_in_the_first_step(*args, **kwargs):
        p_train, p_eval = step_functions(*args, **kwargs)

        def step_then_sigterm(state, batch):
            assert signal.getsignal(signal.SIGTERM) is preemption._handle  # SIGTERM is a flag while training
            preemption.request()
            return p_train(state, batch)

        step_then_sigterm.lower = p_train.lower
        return step_then_sigterm, p_eval

    caller_handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(train, "step_functions", sigterm_in_the_first_step)
    train.train_and_evaluate(robust_config(image_folder, eval_every_steps=1, checkpoint_every_steps=100), str(tmp_path))
    assert signal.getsignal(signal.SIGTERM) is caller_handler  # and the caller's handler is back afterwards
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]
    scalars = events.read_scalars(tmp_path)
    assert "eval/top1_accuracy" not in scalars
    assert [s for s, _ in scalars["train/loss"]] == [1]  # the preempted step's metrics are written (log every 2)


def test_sigterm_before_training_starts_writes_nothing(image_folder, tmp_path, clean_preemption):
    preemption.request()
    assert train.train_and_evaluate(robust_config(image_folder), str(tmp_path / "run")) == {}
    assert not (tmp_path / "run").exists()


def test_a_run_saved_before_a_config_key_existed_resumes_with_the_key_named(image_folder, tmp_path, capsys):
    config = robust_config(image_folder)
    checkpointing.save_workdir_config(tmp_path, config)
    (tmp_path / "checkpoints" / "2").mkdir(parents=True)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["allow_missing_eval_classes"]  # as written by the code before that key was added
    (tmp_path / "config.json").write_text(json.dumps(saved))
    checkpointing.check_workdir_config(tmp_path, config)
    assert "config keys new since this run was saved, at their current values: allow_missing_eval_classes=False" in capsys.readouterr().out


def test_a_silently_corrupt_checkpoint_is_caught_by_its_checksums_and_set_aside(image_folder, finished_run, tmp_path):
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    recorded = json.loads((tmp_path / "checkpoint_checksums" / "6.json").read_text())
    state = saved_state(tmp_path, 6)
    assert recorded == checkpointing.checksums(state) and len(recorded) == len(jax.tree.leaves(state))
    # Silent corruption: step 6 still reads, but one optimiser array holds other values than were saved
    # (as flipped bits in an uncompressed stretch of a file would leave it).
    momentum_path, momentum = next((path, leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(state["opt_state"]))
    damaged = jax.tree_util.tree_map_with_path(lambda p, x: x + 1e-3 if p == momentum_path else x, state["opt_state"])
    shutil.rmtree(tmp_path / "checkpoints" / "6")
    with checkpointing.create_manager(tmp_path / "checkpoints", 3) as manager:  # orbax alone: no new checksums
        manager.save(6, args=checkpointing.ocp.args.StandardSave(state | {"opt_state": damaged}), force=True)
        manager.wait_until_finished()
    abstract, runner = _abstract_state(robust_config(image_folder))
    with checkpointing.create_manager(tmp_path / "checkpoints", 3) as manager:
        _, step = checkpointing.restore_or_none(manager, abstract, runner)
    assert step == 4 and (tmp_path / "corrupt_checkpoints" / "6").is_dir()


def test_a_resumed_run_reads_as_one_run_without_orphaned_points(tmp_path):
    # The killed process logged steps 1-10 with a checkpoint at 4; the resumed one logs 5-8 again. As in
    # TensorBoard 2.21 (checked through its scalars data API), steps 9 and 10 are dropped, 5-8 are the new ones.
    from clu import metric_writers

    for steps, value in ((range(1, 11), None), (range(5, 9), 100.0)):
        writer = metric_writers.create_default_writer(str(tmp_path), asynchronous=False)
        for step in steps:
            writer.write_scalars(step, {"x": value if value is not None else float(step)})
        writer.close()
        time.sleep(1.1)  # event files are named by the second they were opened
    assert events.read_scalars(tmp_path)["x"] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)] + [(s, 100.0) for s in range(5, 9)]


def test_saving_a_replicated_state_compiles_no_program(tmp_path):
    # orbax's default writes each replicated array whose first dimension splits among the replicas in slices,
    # one per replica, with a compiled program per (shape, device): most of the programs a short run on 8 CPU
    # devices compiled (80 for this state). Shapes no other test uses, so that no in-memory cache hides a
    # compilation (a persistent-cache hit is still counted).
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    replicated = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec())
    state = {f"w{i}": jax.device_put(np.full((16, 1009 + i), float(i), np.float32), replicated) for i in range(10)}
    compiled = []

    def count(name, *args, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            compiled.append(name)

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        with checkpointing.create_manager(tmp_path / "checkpoints", keep=1) as manager:
            checkpointing.save(manager, 1, state, None)
            manager.wait_until_finished()
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert jax.device_count() == 8 and compiled == []
    restored = saved_state(tmp_path, 1)
    assert all(np.array_equal(restored[k], state[k]) for k in state)


def test_a_damaged_checksum_record_leaves_its_checkpoint_in_use_unverified(image_folder, finished_run, tmp_path, capsys):
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    (tmp_path / "checkpoint_checksums" / "6.json").write_text("garbage\n")
    abstract, runner = _abstract_state(robust_config(image_folder))
    with checkpointing.create_manager(tmp_path / "checkpoints", 3) as manager:
        _, step = checkpointing.restore_or_none(manager, abstract, runner)
    assert step == 6 and not (tmp_path / "corrupt_checkpoints").exists()
    lines = [line for line in capsys.readouterr().out.splitlines() if "checksum record" in line]
    assert lines == [f"warning: the checksum record {tmp_path / 'checkpoint_checksums' / '6.json'} is unreadable "
                     "(Expecting value: line 1 column 1 (char 0)); checkpoint 6 is used unverified."]


def test_checksum_records_go_with_their_checkpoints(image_folder, tmp_path):
    # 12 steps, a save every 2, one checkpoint kept (and the best, by evaluation, at step 12): the records of
    # the checkpoints the keep policy deleted are deleted too, at the next save.
    train.train_and_evaluate(robust_config(image_folder, num_train_steps=12, keep_checkpoints=1, eval_every_steps=12),
                             str(tmp_path))
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    records = sorted(p.stem for p in (tmp_path / "checkpoint_checksums").glob("*.json"))
    assert checkpoints == ["12"] and set(records) <= {"10", "12"}, (checkpoints, records)


def test_the_moving_average_evaluation_runs_at_every_nth_evaluation_and_the_last(image_folder, tmp_path):
    # Issue 34: eval/* (Algorithm 2's statistics, Figure 3's curve) at every evaluation; the moving-average pass,
    # which feeds no measure, at every 2nd here (the :imagenette configs: every 4th) and at the last step.
    config = robust_config(image_folder, num_train_steps=5, eval_every_steps=1, eval_recalibrate_batches=1,
                           eval_moving_average_every=2)
    train.train_and_evaluate(config, str(tmp_path))
    scalars = events.read_scalars(tmp_path)
    assert [s for s, _ in scalars["eval/top1_accuracy"]] == [1, 2, 3, 4, 5]
    assert [s for s, _ in scalars["eval_moving_average/top1_accuracy"]] == [2, 4, 5]


def test_compare_checkpoints_tells_the_same_computation_from_another(finished_run, tmp_path):
    # scripts/dev/compare_checkpoints.py: how a protocol pinned to a new commit is shown to train as the old one.
    copy = shutil.copytree(finished_run, tmp_path / "copy")
    command = [sys.executable, "scripts/dev/compare_checkpoints.py", str(finished_run), str(copy), "--step=6"]
    same = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert same.returncode == 0 and same.stdout.splitlines()[-1] == "Bitwise the same.", same.stderr[-2000:]
    arrays = len(jax.tree.leaves(saved_state(finished_run, 6)))
    assert same.stdout.splitlines()[0] == f"checkpoint 6: {arrays} of {arrays} arrays bitwise equal"
    shutil.rmtree(copy / "checkpoints" / "6")
    shutil.copytree(copy / "checkpoints" / "4", copy / "checkpoints" / "6")  # another state under step 6's name
    other = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert other.returncode == 1 and "  differs: " in other.stdout and other.stdout.endswith("Not the same.\n")


def test_a_stop_during_an_evaluation_abandons_it_saves_at_once_and_the_resume_does_it_first(
        image_folder, tmp_path, monkeypatch, clean_preemption, capsys):
    # Issue 36, item 3: SIGTERM arriving in the middle of the evaluation at step 2 (here: requested inside its
    # first pass). The evaluation is abandoned between two batches, step 2 is saved, no step 3 is trained.
    config = robust_config(image_folder, eval_every_steps=2, checkpoint_every_steps=100, eval_recalibrate_batches=1)
    real = train.evaluate

    def sigterm_then_evaluate(*args, **kwargs):
        preemption.request()
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", sigterm_then_evaluate)
    train.train_and_evaluate(config, str(tmp_path))
    out = capsys.readouterr().out
    assert "step 2: evaluation abandoned for the stop; the resumed run does it first." in out
    assert "Preempted at step 2: checkpoint saved" in out
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]
    assert "eval/top1_accuracy" not in events.read_scalars(tmp_path)

    # A stop during that redone evaluation, at the resume, abandons it again (was: an error), nothing trained.
    preemption.reset()
    assert train.train_and_evaluate(config, str(tmp_path)) == {}
    assert "step 2: evaluation abandoned for the stop" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]

    monkeypatch.setattr(train, "evaluate", real)
    preemption.reset()
    train.train_and_evaluate(config, str(tmp_path))
    assert [s for s, _ in events.read_scalars(tmp_path)["eval/top1_accuracy"]] == [2, 4, 6]
    out = capsys.readouterr().out
    assert out.index("step 2: eval top-1") < out.index("step 4/6")  # the redone evaluation comes first


def test_a_save_that_fails_is_never_said_saved_leaves_nothing_and_the_run_resumes(
        image_folder, finished_run, tmp_path, monkeypatch, capsys):
    # Issue 36, item 5: the disk fills during the asynchronous save of step 4. Orbax reports it when waited on,
    # as TensorStore's RESOURCE_EXHAUSTED (its text below, as a 1.5 MB tmpfs gave it), after leaving its
    # temporary folder. Step 4 is never said saved, nothing of it is left, the error says what to do in one
    # line, and the same command resumes from step 2 to the uninterrupted run's weights.
    import orbax.checkpoint as ocp

    real_save, real_wait = ocp.CheckpointManager.save, ocp.CheckpointManager.wait_until_finished
    failures = []

    def save(self, step, *args, **kwargs):
        if step != 4:
            return real_save(self, step, *args, **kwargs)
        real_wait(self)
        (pathlib.Path(self.directory) / "4.orbax-checkpoint-tmp" / "default.orbax-checkpoint-tmp").mkdir(parents=True)
        failures.append(ValueError(
            'RESOURCE_EXHAUSTED: Error writing "params.stem.kernel/0" in OCDBT database at local file '
            f'"{self.directory}/4.orbax-checkpoint-tmp/default.orbax-checkpoint-tmp/ocdbt.process_0/": Failed to '
            "write 24027 bytes to file 17: No space left on device [os_error_code='28']"))
        return True

    def wait(self):
        real_wait(self)
        if failures:
            raise failures.pop()

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", wait)
    with pytest.raises(checkpointing.SaveFailed) as error:
        train.train_and_evaluate(robust_config(image_folder), str(tmp_path))
    assert str(error.value).startswith(f"step 4: the checkpoint could not be saved in {tmp_path / 'checkpoints'}: "
                                       "no space left on the device, ")
    assert str(error.value).endswith(" free there. Nothing of it is left; the last complete checkpoint is step 2. "
                                     "Make room and run the same command to continue.")
    out = capsys.readouterr().out
    assert f"step 2: checkpoint saved to {tmp_path / 'checkpoints' / '2'}" in out and "step 4: checkpoint saved" not in out
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2"]
    assert sorted(p.name for p in (tmp_path / "checkpoint_checksums").iterdir()) == ["2.json"]

    monkeypatch.undo()
    train.train_and_evaluate(robust_config(image_folder), str(tmp_path))
    for a, b in zip(jax.tree.leaves(saved_state(tmp_path, 6)), jax.tree.leaves(saved_state(finished_run, 6)), strict=True):
        np.testing.assert_array_equal(a, b)


def _can_mount_a_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount_a_tmpfs(), reason="needs `unshare -rm` (user and mount namespaces) for a small tmpfs")
def test_a_full_disk_as_a_user_meets_it(image_folder, tmp_path):
    # Issue 36, item 5, for real: a 1.4 MB tmpfs holds one checkpoint of the tiny network (about 0.9 MB), not
    # two. The run stops at the second save with one line; the folder holds only complete files; with room
    # made (the tmpfs grown), the same command finishes the run.
    mount = tmp_path / "disk"
    mount.mkdir()
    command = (f"{sys.executable} -m bn_inception.main --config=configs/bn_x30.py:tiny --workdir={mount / 'run'} "
               f"--config.data_dir={image_folder} --config.num_classes=4 --config.num_train_steps=6 "
               "--config.checkpoint_every_steps=2 --config.eval_every_steps=6 --config.log_every_steps=2")
    script = f"""
        mount -t tmpfs -o size=1400k tmpfs {mount}
        {command} > {tmp_path / 'out1'} 2> {tmp_path / 'err1'}; echo $? > {tmp_path / 'rc1'}
        (cd {mount / 'run'} && find . | sort) > {tmp_path / 'files'}
        mount -o remount,size=20m {mount}
        {command} > {tmp_path / 'out2'} 2> {tmp_path / 'err2'}; echo $? > {tmp_path / 'rc2'}
    """
    subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=_env(1), check=True, timeout=600)
    read = lambda name: (tmp_path / name).read_text()  # noqa: E731
    assert read("rc1").strip() == "1", read("err1")[-3000:]
    errors = [line for line in read("err1").splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in read("err1") and "Event loop is closed" not in read("err1")
    assert errors[0].startswith(f"error: SaveFailed: step 4: the checkpoint could not be saved in {mount / 'run' / 'checkpoints'}: "
                                "no space left on the device, ")
    assert "step 2: checkpoint saved" in read("out1") and "step 4: checkpoint saved" not in read("out1")
    listing = read("files").split()
    assert "./checkpoints/2" in listing and "./checkpoint_checksums/2.json" in listing
    assert not [name for name in listing if "tmp" in name or name.startswith(("./checkpoints/4", "./checkpoint_checksums/4"))]
    assert read("rc2").strip() == "0", read("err2")[-3000:]
    assert "resuming at step 2" in read("out2") and "Finished bn_x30 at step 6" in read("out2")
