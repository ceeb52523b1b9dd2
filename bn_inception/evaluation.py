"""Evaluating trained runs: single crop or 144 crops, one network or an ensemble, optional Algorithm 2."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from bn_inception import batch_norm, checkpointing, console, input_pipeline, metrics, parallel, photometric, train


@dataclasses.dataclass
class Member:
    """One trained network of an evaluation: where it came from and what to run."""

    workdir: str
    step: int
    config: ml_collections.ConfigDict
    model: nn.Module
    variables: dict[str, Any]
    class_names: list[str] | None  # the run's training classes (None: a run that saved none)


# Checkpoints a run training in the workdir may delete under `load_member` before it gives up.
RETRIES = 5


def load_member(workdir: str, step: int | None = None) -> Member:
    """The run's config and its checkpoint (`step`, or the latest), checked against the config's shapes. The
    latest deleted while it is read (a run training there) is replaced by the newest then, said in a line."""
    config = checkpointing.load_workdir_config(pathlib.Path(workdir))
    if config.model_name != "bn_inception":
        raise ValueError(f"{workdir}: model_name={config.model_name!r}; evaluation handles bn_inception runs.")
    built = train.setup(config, num_train_examples=config.global_batch_size, bn_axis_name=None)
    abstract = built.abstract_state()
    runner = parallel.Runner.over_all_devices()
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=runner.state_sharding), abstract)
    asked = step
    with checkpointing.create_manager(pathlib.Path(workdir) / "checkpoints", config.keep_checkpoints) as manager:
        for _ in range(RETRIES):
            steps = manager.all_steps()
            if not steps:
                raise FileNotFoundError(f"{workdir}/checkpoints holds no checkpoint.")
            step = max(steps) if asked is None else asked
            if step not in steps:
                raise FileNotFoundError(f"{workdir}/checkpoints has no step {step}; it has {sorted(steps)}.")
            try:
                checkpointing.check_shapes(manager, step, abstract)
                state = manager.restore(step, args=checkpointing.ocp.args.StandardRestore(target))
            except Exception:
                if (pathlib.Path(workdir) / "checkpoints" / str(step)).exists():
                    raise
                # Deleted while read: a run training in the workdir dropped it (its keep_checkpoints policy).
                manager.reload()
                if asked is not None:
                    raise FileNotFoundError(f"{workdir}/checkpoints/{step} was deleted while it was read (the run "
                                            f"is training there); it now has {sorted(manager.all_steps())}.") from None
                console.say(f"{workdir}/checkpoints/{step} was deleted while it was read (the run is training "
                            "there); reading the newest checkpoint now there.")
                continue
            checkpointing.verify_checksums(manager, step, state)
            break
        else:
            raise RuntimeError(f"{workdir}: {RETRIES} checkpoints in a row were deleted while they were read; "
                               "evaluate once the run has saved, or pass --step of a checkpoint it keeps.")
    params = state.ema_params if state.ema_params else state.params
    return Member(workdir, step, config, built.model, {"params": params, "batch_stats": state.batch_stats},
                  checkpointing.load_workdir_classes(pathlib.Path(workdir)))


def recalibrate(member: Member, num_batches: int) -> None:
    """Algorithm 2: replaces the moving averages by population statistics from `num_batches` training
    batches of the run's global batch size, each process reading its share, BN groups as in training."""
    config = member.config
    if config.global_batch_size % jax.device_count():
        raise ValueError(f"{member.workdir}: global_batch_size={config.global_batch_size} does not split over the "
                         f"{jax.device_count()} devices here; recalibrate on a device count that divides it.")
    batches = train.config_train_batches(config)
    runner = parallel.Runner.over_all_devices()

    @jax.jit
    def moments(variables, batch):
        return member.model.apply(
            variables, photometric.model_inputs(batch), train=False, use_batch_stats=True, mutable=[batch_norm.MOMENTS]
        )[1]

    def reported():
        began = time.time()
        for k in range(num_batches):
            yield runner.shard_batch(next(batches))
            _report(f"{member.workdir}: Algorithm 2, training batch", k + 1, num_batches, began)

    member.variables["batch_stats"] = batch_norm.population_statistics(moments, member.variables, reported())


def evaluate_ensemble(members: list[Member], crops: int, batch_size: int) -> dict[str, Any]:
    """Top-1/top-5 error of the members' averaged class probabilities (and of each crop's softmax)."""
    first = members[0].config
    for m in members[1:]:
        if m.config.image_size != first.image_size or m.config.num_classes != first.num_classes:
            raise ValueError(f"{m.workdir} has image_size/num_classes {m.config.image_size}/{m.config.num_classes}, "
                             f"but {members[0].workdir} has {first.image_size}/{first.num_classes}: not one ensemble.")
        if m.class_names != members[0].class_names:
            raise ValueError(f"{m.workdir} was trained on the classes {m.class_names}, {members[0].workdir} on "
                             f"{members[0].class_names}: not one ensemble.")
    parallel.check_eval_batch_size(batch_size)
    source = input_pipeline.make_source(first, first.eval_split, jax.process_index(), jax.process_count(),
                                        block=batch_size // jax.process_count(), limit=first.num_eval_examples,
                                        classes=members[0].class_names)
    cfg = input_pipeline.InputConfig.from_config(first)
    runner = parallel.Runner.over_all_devices()

    def probabilities(model, variables, images):
        flat = photometric.to_unit_range(images.reshape((-1,) + images.shape[-3:]))
        probs = jax.nn.softmax(model.apply(variables, flat, train=False), axis=-1)
        return probs.reshape(images.shape[: images.ndim - 3] + probs.shape[-1:])

    member_probabilities = [jax.jit(functools.partial(probabilities, m.model)) for m in members]

    @jax.jit
    def hits(probs, labels, mask):
        if probs.ndim == 3:
            probs = probs.mean(axis=1)  # average the softmax over the crops
        return metrics.top_k_hits(probs, labels, mask)

    num_batches = -(-source.num_examples // batch_size)
    began = time.time()

    def batch_hits():
        for k, batch in enumerate(input_pipeline.eval_batches(source, cfg, batch_size // jax.process_count(), jax.process_count(), crops)):
            batch = runner.shard_batch(batch)
            probs = sum(f(m.variables, batch["image"]) for f, m in zip(member_probabilities, members)) / len(members)
            yield hits(probs, batch["label"], batch["mask"])
            _report(f"evaluating {crops} crop{'s' * (crops > 1)}, batch", k + 1, num_batches, began)

    sums, _ = metrics.sum_trees(batch_hits())  # summed on the devices, fetched once
    totals = {key: float(v) for key, v in runner.to_host(sums).items()}
    count = totals["count"]
    return {
        "top1_error": 1.0 - totals["top1"] / count,
        "top5_error": 1.0 - totals["top5"] / count,
        "num_examples": int(count),
        "crops": crops,
        "checkpoints": [{"workdir": m.workdir, "step": m.step} for m in members],
        "dataset": first.dataset if not first.data_dir else f"folder {first.data_dir}",
        "num_classes": first.num_classes,
        "image_size": first.image_size,
    }


def _report(what: str, done: int, total: int, began: float) -> None:
    """Says 'evaluating 144 crops, batch 12/62 (19%), ETA 4m10s' at every tenth of `total` and at the end."""
    if done % max(1, total // 10) and done != total:
        return
    seconds = time.time() - began
    console.say(f"{what} {done}/{total} ({100 * done // total}%), ETA {console.duration(seconds * (total - done) / done)}")
