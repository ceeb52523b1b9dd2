"""Checkpoints (orbax) and the run's saved config: what lets a run resume where it stopped."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import flax
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

BEST_METRIC = "eval/top1_accuracy"
CONFIG_FILE = "config.json"


def create_manager(directory: pathlib.Path, keep: int) -> ocp.CheckpointManager:
    """Keeps the last `keep` checkpoints and the best one by validation top-1."""
    policy = checkpoint_managers.AnyPreservationPolicy(
        [
            checkpoint_managers.LatestN(keep),
            checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[BEST_METRIC], n=1, keep_checkpoints_without_metrics=False
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(preservation_policy=policy)
    return ocp.CheckpointManager(directory.absolute(), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, metrics: dict[str, float] | None) -> None:
    """Saves asynchronously; orbax writes to a temporary folder and renames it, so a crash keeps the last one."""
    manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)


def restore_or_none(manager: ocp.CheckpointManager, abstract_state: Any, runner) -> tuple[Any, int]:
    """(state on the devices, its step) from the latest checkpoint, or (None, 0) when there is none."""
    step = manager.latest_step()
    if step is None:
        return None, 0
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=runner.state_sharding), abstract_state
    )
    state = manager.restore(step, args=ocp.args.StandardRestore(target))
    return runner.put_state(state), step


def _flat(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    as_dict = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return json.loads(json.dumps(flax.traverse_util.flatten_dict(as_dict, sep=".")))


def check_workdir_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Refuses to resume a workdir whose saved config differs, unless config.allow_config_change."""
    saved_path = workdir / CONFIG_FILE
    if not saved_path.exists() or config.allow_config_change:
        return
    saved = json.loads(saved_path.read_text())
    ours = _flat(config)
    ignored = {"allow_config_change"}
    diff = sorted(k for k in set(saved) | set(ours) if k not in ignored and saved.get(k) != ours.get(k))
    if diff:
        details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {ours.get(k)!r}" for k in diff)
        raise ValueError(
            f"{workdir} holds a run with a different config ({details}). Use another --workdir, or pass "
            "--config.allow_config_change=True to continue this run with the new values on purpose."
        )


def save_workdir_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Writes the config as flat JSON (process 0, atomically): the record of what the run is."""
    if jax.process_index() != 0:
        return
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(_flat(config), indent=1, sort_keys=True))
    os.replace(tmp, workdir / CONFIG_FILE)


def load_workdir_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run saved in its workdir."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {workdir} is not a bn_inception run directory.")
    return ml_collections.ConfigDict(flax.traverse_util.unflatten_dict(json.loads(path.read_text()), sep="."))
