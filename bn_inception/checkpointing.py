"""Checkpoints (orbax) and the run's saved config: what lets a run resume where it stopped."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import zlib
from typing import Any

import flax
import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from bn_inception import console, files, parallel

BEST_METRIC = "eval/top1_accuracy"
CONFIG_FILE = "config.json"
CLASSES_FILE = "classes.json"  # the training split's class names: label k of the run is entry k
CHECKSUMS = "checkpoint_checksums"  # beside checkpoints/: <step>.json, the crc32 of every array saved
SET_ASIDE = "corrupt_checkpoints"  # beside checkpoints/: unreadable checkpoints, moved there, never deleted


def create_manager(directory: pathlib.Path, keep: int) -> ocp.CheckpointManager:
    """Keeps the last `keep` checkpoints and the best one by validation top-1.

    Every replicated array is written from one copy (orbax's `use_replica_parallel=False`, set for the whole
    process): orbax's default splits it among its replicas, which costs a compiled slice program per array
    and device at the first save (8 s against 1 s for 280 small arrays on 8 CPU devices), and the whole
    training state is small (BN-Inception: 11M parameters). Orbax logs a warning for every such override;
    this one is deliberate, so it is kept off the console."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        ocp.type_handlers.register_type_handler(
            jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True
        )
    finally:
        logging.set_verbosity(verbosity)
    policy = checkpoint_managers.AnyPreservationPolicy(
        [
            checkpoint_managers.LatestN(keep),
            checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[BEST_METRIC], n=1, keep_checkpoints_without_metrics=False
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(preservation_policy=policy)
    return ocp.CheckpointManager(directory.absolute(), options=options, item_handlers=ocp.StandardCheckpointHandler())


def save(manager: ocp.CheckpointManager, step: int, state: Any, metrics: dict[str, float] | None) -> None:
    """Saves asynchronously; orbax writes to a temporary folder and renames it, so a crash keeps the last one.
    The checksum of every array is recorded first (`checksums`), to be verified when it is restored."""
    if jax.process_index() == 0:
        path = _checksum_path(manager, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomically(path, json.dumps(checksums(state), indent=0, sort_keys=True))
        _prune_checksums(manager, keep={step})
    manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)


class SaveFailed(OSError):
    """A checkpoint could not be written (a full disk, most often); what it had written is removed."""


class Saves:
    """The run's asynchronous checkpoint saves, each said "saved" only once it is complete on disk.

    `save` starts one (after the previous one is complete); `poll`, at the training loop's sync points, says
    a save that has completed since, without waiting; `finish` waits for the one in flight. A save that fails
    is cleaned up (its temporary folder and checksum record: the last complete checkpoint stays the newest)
    and raised as one `SaveFailed` line naming the folder, and for a full disk, the space left there."""

    def __init__(self, manager: ocp.CheckpointManager):
        self.manager = manager
        self.in_flight: int | None = None

    def save(self, step: int, state: Any, metrics: dict[str, float] | None) -> None:
        """Starts saving `state` as checkpoint `step`, with `metrics` for the keep-the-best policy."""
        self.finish()
        self.in_flight = step
        try:
            save(self.manager, step, state, metrics)
        except Exception as error:  # orbax and TensorStore raise many types
            self._failed(error)

    def poll(self) -> None:
        """Says the save in flight if it has completed (raises `SaveFailed` if it failed); never waits."""
        if self.in_flight is not None and not self.manager.is_saving_in_progress():
            self.finish()

    def finish(self) -> None:
        """Waits for the save in flight, then says it (or raises `SaveFailed`)."""
        if self.in_flight is None:
            return
        try:
            self.manager.wait_until_finished()
        except Exception as error:  # orbax and TensorStore raise many types
            self._failed(error)
        console.say(f"step {self.in_flight}: checkpoint saved to {pathlib.Path(self.manager.directory) / str(self.in_flight)}")
        self.in_flight = None

    def last_complete(self) -> int | None:
        """The newest checkpoint complete on disk, after waiting for the save in flight; one that fails is said
        in one line (its `SaveFailed` text) and not counted, so that the caller's own error stays the one raised."""
        try:
            self.finish()
        except SaveFailed as error:
            console.say(f"error: {error}")
        return self.manager.latest_step()

    def _failed(self, error: Exception) -> None:
        step, self.in_flight = self.in_flight, None
        folder = pathlib.Path(self.manager.directory)
        if jax.process_index() == 0:
            for partial in folder.glob(f"{step}.orbax-checkpoint-tmp*"):
                shutil.rmtree(partial, ignore_errors=True)
            _checksum_path(self.manager, step).unlink(missing_ok=True)
        self.manager.reload()
        complete = [s for s in self.manager.all_steps() if s != step]
        reason = (f"no space left on the device, {files.free_space(folder)} free there" if files.is_disk_full(error)
                  else f"{type(error).__name__}: {' '.join(str(error).split())[:300]}")
        raise SaveFailed(
            f"step {step}: the checkpoint could not be saved in {folder}: {reason}. Nothing of it is left; "
            + (f"the last complete checkpoint is step {max(complete)}." if complete else "no checkpoint was saved before it.")
            + " Make room and run the same command to continue."
        ) from error


def _prune_checksums(manager: ocp.CheckpointManager, keep: set[int]) -> None:
    """Removes the checksum records of checkpoints that no longer exist (deleted by the keep policy), but
    not of `keep` (being saved) nor of checkpoints set aside as corrupt (kept with them, for inspection)."""
    folder = _checksum_path(manager, 0).parent
    set_aside = pathlib.Path(manager.directory).parent / SET_ASIDE
    kept = set(manager.all_steps()) | keep | {int(p.name.split(".")[0]) for p in set_aside.glob("*")
                                               if p.name.split(".")[0].isdigit()}
    for record in folder.glob("*.json"):
        if record.stem.isdigit() and int(record.stem) not in kept:
            record.unlink(missing_ok=True)


def checksums(state: Any) -> dict[str, str]:
    """{array name: "crc32:<hex>:<dtype><shape>"} of a state's arrays, from this process's copy of each."""
    def one(x: Any) -> str:
        array = np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x)
        return f"crc32:{zlib.crc32(np.ascontiguousarray(array).view(np.uint8)):08x}:{array.dtype}{list(array.shape)}"

    return {name: one(leaf) for name, leaf in _leaf_names(state).items()}


def _checksum_path(manager: ocp.CheckpointManager, step: int) -> pathlib.Path:
    return pathlib.Path(manager.directory).parent / CHECKSUMS / f"{step}.json"


def verify_checksums(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
    """Raises ValueError naming the first array of a restored state whose checksum differs from the one
    recorded when it was saved (checkpoints saved without a record are not checked)."""
    path = _checksum_path(manager, step)
    if not path.exists():
        return
    try:
        recorded = json.loads(path.read_text())
        if not isinstance(recorded, dict):
            raise ValueError(f"a {type(recorded).__name__}, not a record of arrays")
    except (OSError, ValueError) as error:  # the record is damaged, not (as far as can be told) the checkpoint
        console.say(f"warning: the checksum record {path} is unreadable ({' '.join(str(error).split())[:200]}); "
                    f"checkpoint {step} is used unverified.")
        return
    restored = checksums(state)
    wrong = sorted(k for k in recorded if recorded[k] != restored.get(k))
    if wrong:
        raise ValueError(f"Checkpoint {manager.directory}/{step} is silently corrupt: {len(wrong)} arrays differ from "
                         f"their checksums at saving, first {wrong[0]} ({restored.get(wrong[0])} now, {recorded[wrong[0]]} saved).")


def _leaf_names(tree: Any) -> dict[str, Any]:
    """{"params/inception_3a/1x1/Conv_0/kernel": leaf, ...} for dataclass and dict trees alike."""
    def name(key: Any) -> str:
        for attr in ("name", "key", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {"/".join(name(k) for k in path): leaf for path, leaf in flat}


def check_shapes(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> None:
    """Raises ValueError if the checkpoint at `step` holds arrays of other shapes than the model's."""
    saved = {k: tuple(v.shape) for k, v in _leaf_names(manager.item_metadata(step)).items() if hasattr(v, "shape")}
    ours = {k: tuple(v.shape) for k, v in _leaf_names(abstract_state).items()}
    missing = sorted(set(ours) - set(saved))
    wrong = sorted(k for k in set(ours) & set(saved) if ours[k] != saved[k])
    if missing or wrong or set(saved) - set(ours):
        first = wrong[0] if wrong else (missing[0] if missing else sorted(set(saved) - set(ours))[0])
        raise ValueError(
            f"Checkpoint {manager.directory}/{step} does not match the model config: {first} is "
            f"{saved.get(first, 'absent')} there and {ours.get(first, 'absent')} in the model "
            f"({len(wrong)} shapes differ, {len(missing)} arrays missing). Use the config the run was trained with."
        )


def restore_or_none(
    manager: ocp.CheckpointManager, abstract_state: Any, runner: "parallel.Runner", allow_restart_from_scratch: bool = False,
) -> tuple[Any, int]:
    """(state on the devices, its step) from the newest readable checkpoint, or (None, 0) when there is none.

    A checkpoint that cannot be read (truncated, corrupt) is moved aside to `<checkpoints>/../corrupt_checkpoints`
    (never deleted, under a name no earlier one has) with a warning, and the one before it is tried. A
    checkpoint of another model is an error. A run whose every checkpoint was set aside is not started again
    from step 0 unless `allow_restart_from_scratch`: that would silently replace what it had trained.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    set_aside = pathlib.Path(manager.directory).parent / SET_ASIDE
    if not steps and set_aside.is_dir() and any(set_aside.iterdir()) and not allow_restart_from_scratch:
        raise RuntimeError(
            f"{manager.directory} holds no checkpoint but {set_aside} holds "
            f"{', '.join(sorted(p.name for p in set_aside.iterdir()))}: every checkpoint of this run was set aside "
            "as unreadable. Move a good one back into checkpoints/, or pass "
            "--config.allow_restart_from_scratch=True to start this run again from step 0."
        )
    if not steps:
        return None, 0
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=runner.state_sharding), abstract_state
    )
    for step in steps:
        try:
            check_shapes(manager, step, abstract_state)
            state = manager.restore(step, args=ocp.args.StandardRestore(target))
            verify_checksums(manager, step, state)
        except ValueError as error:
            if "does not match the model config" in str(error):
                raise
            _set_aside(manager, step, error)
            continue
        except Exception as error:  # orbax/tensorstore raise many types for unreadable files
            _set_aside(manager, step, error)
            continue
        return runner.put_state(state), step
    raise RuntimeError(
        f"No readable checkpoint in {manager.directory}: all were moved to corrupt_checkpoints/. "
        "Restore one by hand, or start the run in a new workdir."
    )


def _set_aside(manager: ocp.CheckpointManager, step: int, error: Exception) -> None:
    source = pathlib.Path(manager.directory) / str(step)
    folder = pathlib.Path(manager.directory).parent / SET_ASIDE
    destination = folder / str(step)
    copies = 1
    while destination.exists():  # an earlier checkpoint of the same step was set aside: keep both
        destination, copies = folder / f"{step}.{copies}", copies + 1
    console.say(f"warning: checkpoint {source} is unreadable ({type(error).__name__}: "
                f"{' '.join(str(error).split())[:300]}); moving it to {destination} and trying the one before.")
    if jax.process_index() == 0:
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(source, destination)
    multihost_utils.sync_global_devices(f"set_aside_{step}")
    manager.reload()


def _flat(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    as_dict = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return json.loads(json.dumps(flax.traverse_util.flatten_dict(as_dict, sep=".")))


def check_workdir_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Refuses to resume a workdir whose saved config differs, unless config.allow_config_change."""
    saved_path = workdir / CONFIG_FILE
    if not saved_path.exists() or config.allow_config_change or not has_checkpoints(workdir):
        return  # a config with no checkpoint beside it records nothing trained yet: a new one may replace it
    saved = json.loads(saved_path.read_text())
    ours = _flat(config)
    ignored = {"allow_config_change", "allow_restart_from_scratch"}
    # Keys this code has and the saved run does not were added since the run started: a newer version of the
    # code resumes it, with those keys at their current values (said, not refused).
    added = sorted(set(ours) - set(saved) - ignored)
    if added:
        console.say(f"{workdir}: config keys new since this run was saved, at their current values: "
                    + ", ".join(f"{k}={ours[k]!r}" for k in added))
    diff = sorted(k for k in set(saved) | set(ours) if k not in ignored and k not in added and saved.get(k) != ours.get(k))
    if diff:
        details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {ours.get(k)!r}" for k in diff)
        raise ValueError(
            f"{workdir} holds a run with a different config ({details}). Use another --workdir, or pass "
            "--config.allow_config_change=True to continue this run with the new values on purpose."
        )


def has_checkpoints(workdir: pathlib.Path) -> bool:
    """True if `workdir` holds a checkpoint, readable or set aside as corrupt."""
    return any(p.name[:1].isdigit() for folder in ("checkpoints", SET_ASIDE) if (workdir / folder).is_dir()
               for p in (workdir / folder).iterdir())


def save_workdir_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Writes the config as flat JSON (process 0, atomically): the record of what the run is."""
    if jax.process_index() != 0:
        return
    workdir.mkdir(parents=True, exist_ok=True)
    files.write_atomically(workdir / CONFIG_FILE, json.dumps(_flat(config), indent=1, sort_keys=True))


def check_workdir_classes(workdir: pathlib.Path, class_names: tuple[str, ...]) -> None:
    """Refuses to resume a trained run on data whose classes differ from its classes.json (a renamed, added
    or removed class folder would permute the labels), naming the differences."""
    saved = load_workdir_classes(workdir)
    if saved is None or saved == list(class_names) or not has_checkpoints(workdir):
        return
    missing, new = [c for c in saved if c not in class_names], [c for c in class_names if c not in saved]
    details = "; ".join(part for part in (f"missing from the data: {missing}" if missing else "",
                                          f"new in the data: {new}" if new else "") if part)
    raise ValueError(f"{workdir} was trained on the classes of its {CLASSES_FILE}, and the data's differ ("
                     f"{details or 'the same classes in another order'}): its labels would be permuted. Restore "
                     "the data's class folders, or train in another --workdir.")


def save_workdir_classes(workdir: pathlib.Path, class_names: tuple[str, ...]) -> None:
    """Writes the run's class list (process 0, atomically), so that evaluation labels images as training did;
    a trained run's list is never rewritten (`check_workdir_classes` refuses other data first)."""
    if jax.process_index() != 0 or load_workdir_classes(workdir) == list(class_names):
        return
    files.write_atomically(workdir / CLASSES_FILE, json.dumps(list(class_names)))


def load_workdir_classes(workdir: pathlib.Path) -> list[str] | None:
    """The class list a run saved, or None for a run that saved none."""
    path = pathlib.Path(workdir) / CLASSES_FILE
    return json.loads(path.read_text()) if path.exists() else None


def load_workdir_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run saved in its workdir."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {workdir} is not a bn_inception run directory.")
    return ml_collections.ConfigDict(flax.traverse_util.unflatten_dict(json.loads(path.read_text()), sep="."))
