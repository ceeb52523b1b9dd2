"""The training loop: data-parallel SGD on one host or many, with evaluation, checkpoints and TensorBoard.

Knows about image classification batches ({"image", "label"}: uint8 pixels, with "photometric" distortion
parameters when training), not about any dataset in particular. The input pipeline, TensorBoard writers
and event reading (all TensorFlow) are imported where a run reads data or writes logs, not at import:
the steps alone (`setup`, `step_functions`: what `scripts/benchmark.py` times on synthetic batches)
need no TensorFlow, which accelerator images may lack.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bn_inception import (
    batch_norm, checkpointing, config_checks, console, gradient_stats, metrics, models, optim, parallel, photometric,
    preemption, provenance, synthetic_data, workdir_lock,
)


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue: step, weights, BN statistics, optimiser and Polyak averages."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    ema_params: Any  # Polyak averages of params; {} when config.polyak_decay == 0


def create_model(config: ml_collections.ConfigDict, bn_axis_name: str | None) -> nn.Module:
    """The network a config describes; `bn_axis_name` is set under pmap for whole-batch BN statistics."""
    if config.model_name != "bn_inception":
        raise ValueError(f"model_name={config.model_name!r}; this trainer expects 'bn_inception' (MNIST: configs/mnist.py).")
    model_args = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model.items()}
    model_args["lowering"] = resolved_lowering(config)
    return models.BNInception(
        num_classes=config.num_classes,
        bn_group_size=config.bn_group_size or None,
        bn_axis_name=bn_axis_name if not config.bn_group_size else None,
        dtype=jnp.dtype(config.dtype),
        **model_args,  # lists (from config.json) made tuples: modules must stay hashable
    )


def resolved_lowering(config: ml_collections.ConfigDict) -> str:
    """`config.model.lowering`, with "auto" resolved: "cpu" on a CPU backend, "xla" on accelerators."""
    lowering = config.model.get("lowering", "auto")
    if lowering == "auto":
        return "cpu" if jax.default_backend() == "cpu" else "xla"
    return lowering


def train_schedule(config: ml_collections.ConfigDict, num_train_examples: int) -> tuple[int, int, optax.Schedule]:
    """(data steps per epoch, total training steps, learning-rate schedule) for a dataset size."""
    steps_per_epoch = num_train_examples // config.global_batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"global_batch_size={config.global_batch_size} is larger than the {num_train_examples} training examples."
        )
    exact_steps_per_epoch = num_train_examples / config.global_batch_size
    num_steps = config.num_train_steps or int(round(config.num_epochs * exact_steps_per_epoch))
    if num_steps < 1:
        raise ValueError(f"num_train_steps={config.num_train_steps}, num_epochs={config.num_epochs}: nothing to train.")
    schedule = optim.learning_rate_schedule(
        config.base_learning_rate, config.global_batch_size, config.lr_scaling_batch, exact_steps_per_epoch,
        config.lr_decay_rate, config.lr_decay_epochs, config.warmup_epochs,
    )
    return steps_per_epoch, num_steps, schedule


def config_train_batches(config: ml_collections.ConfigDict, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """This process's training batches of the config's data from `start_step` on (its share of each
    global batch): what recalibration and benchmarks read."""
    from bn_inception import input_pipeline  # TensorFlow: see the module docstring

    local_batch = config.global_batch_size // jax.process_count()
    source = input_pipeline.make_source(config, config.train_split, jax.process_index(), jax.process_count(), local_batch)
    steps_per_epoch, _, _ = train_schedule(config, source.num_examples)
    cfg = input_pipeline.InputConfig.from_config(config)
    return input_pipeline.train_batches(source, cfg, local_batch, steps_per_epoch, start_step)


def initial_state(model: nn.Module, tx: optax.GradientTransformation, config: ml_collections.ConfigDict) -> TrainState:
    """Fresh parameters from `config.seed`, zero optimiser state."""
    images = jnp.zeros((1, config.image_size, config.image_size, 3))
    variables = model.init(jax.random.key(config.seed), images, train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        ema_params=params if config.polyak_decay else {},
    )


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a config trains, for a dataset size: network, optimiser, schedule and step counts."""

    config: ml_collections.ConfigDict
    model: nn.Module
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    steps_per_epoch: int
    num_steps: int

    def initial_state(self) -> TrainState:
        """Fresh parameters from `config.seed` (compiled)."""
        return jax.jit(functools.partial(initial_state, self.model, self.tx, self.config))()

    def abstract_state(self) -> TrainState:
        """Shapes and dtypes of the state, without computing it (restoring, checking checkpoints)."""
        return jax.eval_shape(functools.partial(initial_state, self.model, self.tx, self.config))


def setup(config: ml_collections.ConfigDict, num_train_examples: int, bn_axis_name: str | None) -> Setup:
    """The config's network (`create_model`), schedule (`train_schedule`) and SGD optimiser."""
    model = create_model(config, bn_axis_name)
    steps_per_epoch, num_steps, schedule = train_schedule(config, num_train_examples)
    tx = optim.sgd_with_weight_decay(schedule, config.momentum, config.weight_decay)
    return Setup(config, model, tx, schedule, steps_per_epoch, num_steps)


def dropout_key(config: ml_collections.ConfigDict) -> jax.Array:
    """The key every training step's dropout key is folded from (`step_rng`)."""
    return jax.random.key(config.seed + 1)


def step_rng(dropout_key: jax.Array, step: jax.Array, axis_name: str | None) -> jax.Array:
    """The dropout key of a training step (and, under pmap, of this device)."""
    rng = jax.random.fold_in(dropout_key, step)
    if axis_name is not None:
        rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    return rng


def loss_and_grads(
    params: Any, batch_stats: Any, batch: dict[str, jax.Array], *, model: nn.Module, rng: jax.Array
) -> tuple[tuple[jax.Array, tuple[jax.Array, Any]], Any]:
    """((mean cross-entropy, (logits, updated BN moving averages)), gradient w.r.t. `params`) of a training
    forward pass on `batch` (this device's share under pmap)."""

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": batch_stats}, photometric.model_inputs(batch), train=True,
            mutable=["batch_stats"], rngs={"dropout": rng},
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, (logits, updates.get("batch_stats", {}))

    return jax.value_and_grad(loss_fn, has_aux=True)(params)


def train_step(
    state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module, tx: optax.GradientTransformation,
    schedule: optax.Schedule, dropout_key: jax.Array, polyak_decay: float, axis_name: str | None,
    skip_nonfinite: bool = False, stage_scalars: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on the global batch (under pmap: this device's share, reduced over `axis_name`).

    `metrics["nonfinite"]` is 1 when the loss or the gradient is not finite; with `skip_nonfinite` such a
    step leaves weights, statistics and optimiser state unchanged (the step counter still advances).
    `stage_scalars` adds `gradient_stats.stage_scalars` (relative gradient, kernel norm and angular update
    per stage) to the metrics.
    """
    rng = step_rng(dropout_key, state.step, axis_name)
    (loss, (logits, batch_stats)), grads = loss_and_grads(state.params, state.batch_stats, batch, model=model, rng=rng)
    metrics = {"loss": loss, "top1_accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}
    if axis_name is not None:
        grads, metrics, batch_stats = jax.lax.pmean((grads, metrics, batch_stats), axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = state.ema_params
    if polyak_decay:
        ema_params = optax.incremental_update(params, ema_params, 1.0 - polyak_decay)
    metrics["grad_norm"] = optax.global_norm(grads)
    metrics["learning_rate"] = schedule(state.step)
    if stage_scalars:
        metrics |= gradient_stats.stage_scalars(state.params, params, grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"])
    metrics["nonfinite"] = 1.0 - finite.astype(jnp.float32)
    new_state = TrainState(state.step + 1, params, batch_stats, opt_state, ema_params)
    if skip_nonfinite:
        kept = TrainState(state.step + 1, state.params, state.batch_stats, state.opt_state, state.ema_params)
        new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, kept)
    return new_state, metrics


def eval_step(
    state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module, axis_name: str | None
) -> dict[str, jax.Array]:
    """Summed loss, top-1 and top-5 hits and example count over the unmasked examples of a batch."""
    params = state.ema_params if state.ema_params else state.params
    logits = model.apply({"params": params, "batch_stats": state.batch_stats}, photometric.model_inputs(batch), train=False)
    mask = batch["mask"]
    hits = metrics.top_k_hits(logits, batch["label"], mask)
    sums = {
        "loss": jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]) * mask),
        "top1_accuracy": hits["top1"],
        "top5_accuracy": hits["top5"],
        "count": hits["count"],
    }
    if axis_name is not None:
        sums = jax.lax.psum(sums, axis_name)
    return sums


def moments_step(
    state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module, axis_name: str | None
) -> dict[str, Any]:
    """Algorithm 2's per-batch moments: every BN layer's mini-batch mean and variance (BN groups as in
    training) with the evaluated weights frozen, as `{batch_norm.MOMENTS: tree}`."""
    params = state.ema_params if state.ema_params else state.params
    _, sown = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, photometric.model_inputs(batch), train=False,
        use_batch_stats=True, mutable=[batch_norm.MOMENTS],
    )
    if axis_name is not None:
        sown = jax.lax.pmean(sown, axis_name)  # each device's groups are as many: their mean is the mean
    return sown


def recalibrated(
    moments_fn: Callable[..., Any], state: TrainState, batches: Iterator[dict[str, jax.Array]]
) -> TrainState:
    """`state` with its BN moving averages replaced by Algorithm 2's population statistics over `batches`
    (device batches), computed by `moments_fn` (a compiled `moments_step`)."""
    population = batch_norm.population_statistics(moments_fn, state, batches)
    return state.replace(batch_stats=population)


def evaluate(eval_fn: Callable[..., dict[str, jax.Array]], state: TrainState, batches: Iterator[dict[str, np.ndarray]], runner: parallel.Runner) -> dict[str, float]:
    """Mean eval metrics over every unmasked example the batches hold, summed on the devices and fetched once."""
    sums, _ = metrics.sum_trees(eval_fn(state, runner.shard_batch(batch)) for batch in batches)
    totals = {k: float(v) for k, v in runner.to_host(sums).items()}
    count = totals.pop("count")
    return {f"eval/{k}": v / count for k, v in totals.items()} | {"eval/num_examples": count}


def step_functions(built: Setup, runner: parallel.Runner) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The training step (donating the state) and evaluation step of a setup, compiled by `runner`
    (`runner.compile_step(functools.partial(moments_step, ...))` gives Algorithm 2's step)."""
    config = built.config
    p_train = runner.compile_step(
        functools.partial(
            train_step, model=built.model, tx=built.tx, schedule=built.schedule,
            dropout_key=dropout_key(config), polyak_decay=config.polyak_decay,
            axis_name=runner.axis_name, skip_nonfinite=config.skip_nonfinite_steps,
            stage_scalars=config.log_stage_scalars,
        ),
        donate_state=True,
    )
    p_eval = runner.compile_step(functools.partial(eval_step, model=built.model, axis_name=runner.axis_name))
    return p_train, p_eval


def _raise_if_nonfinite(history: list[tuple[int, dict[str, np.ndarray]]], skip: bool,
                        last_saved: Callable[[], int | None]) -> None:
    bad = [s for s, m in history if m["nonfinite"]]
    if bad and not skip:
        saved = last_saved()  # asked only here: not a checkpoint-folder read at every sync point
        kept = (f"the last checkpoint (step {saved}) is intact" if saved is not None
                else "no checkpoint had been saved yet")
        raise FloatingPointError(
            f"Non-finite loss or gradient at step {bad[0]}; training stopped before saving it, {kept}. Lower the "
            "learning rate, or set --config.skip_nonfinite_steps=True."
        )


def _say_abandoned(step: int) -> None:
    console.say(f"step {step}: evaluation abandoned for the stop; the resumed run does it first.")


def _summarise(history: list[tuple[int, dict[str, np.ndarray]]]) -> dict[str, float]:
    """Means of the logged metrics over the steps since the last log; non-finite steps counted, not averaged."""
    finite = [m for _, m in history if not m["nonfinite"]]
    summary = {f"train/{k}": float(np.mean([m[k] for m in finite])) for k in finite[0] if k != "nonfinite"} if finite else {}
    summary["train/skipped_nonfinite_steps"] = float(len(history) - len(finite))
    return summary


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains (or resumes) the run in `workdir` to the configured step; returns the last eval metrics.

    SIGTERM (`preemption`) before the first step ends it without writing anything; after it, the run saves
    the current step, without starting an evaluation, and returns. The caller's SIGTERM handler is put
    back on return.
    """
    previous = preemption.install()
    try:
        return _train_and_evaluate(config, workdir)
    finally:
        preemption.restore(previous)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """`train_and_evaluate` with SIGTERM already a flag."""
    config_checks.validate(config)
    workdir_path = pathlib.Path(workdir)
    runner = parallel.Runner.create(config)
    # One run per workdir: process 0 takes its lock before anything is read from it or written to it.
    lock = workdir_lock.FolderLock(workdir_path)
    busy = None
    if jax.process_index() == 0:
        try:
            lock.acquire()
        except workdir_lock.Busy as error:
            busy = error
    if runner.any_process(busy is not None):
        raise busy or workdir_lock.Busy(f"{workdir} is in use by another run (process 0 names it).")
    if lock.note:
        console.say(lock.note)
    try:
        return _train_locked(config, workdir, runner)
    finally:
        lock.release(remove_empty_folder=True)


def _train_locked(config: ml_collections.ConfigDict, workdir: str, runner: parallel.Runner) -> dict[str, float]:
    """`_train_and_evaluate` holding the workdir's lock."""
    from clu import metric_writers, periodic_actions  # TensorFlow: see the module docstring

    from bn_inception import events, input_pipeline

    workdir_path = pathlib.Path(workdir)
    checkpointing.check_workdir_config(workdir_path, config)
    cfg = input_pipeline.InputConfig.from_config(config)
    local_batch = config.global_batch_size // jax.process_count()
    local_eval_batch = config.eval_batch_size // jax.process_count()

    if config.synthetic_data:
        num_train_examples = config.global_batch_size * 1000
    else:
        train_source = input_pipeline.make_source(
            config, config.train_split, jax.process_index(), jax.process_count(), local_batch
        )
        checkpointing.check_workdir_classes(workdir_path, train_source.class_names)  # before labelling anything
        eval_source = input_pipeline.make_source(
            config, config.eval_split, jax.process_index(), jax.process_count(), local_eval_batch,
            limit=config.num_eval_examples, classes=train_source.class_names,
        )
        num_train_examples = train_source.num_examples
        if train_source.num_classes != config.num_classes:
            raise ValueError(
                f"num_classes={config.num_classes} but the training data has {train_source.num_classes} classes."
            )
    built = setup(config, num_train_examples, runner.axis_name)
    steps_per_epoch, num_steps = built.steps_per_epoch, built.num_steps
    last_start = (provenance.read(workdir_path) or [{}])[-1] if checkpointing.has_checkpoints(workdir_path) else {}
    _check_data_size(config, workdir, last_start.get("train_examples"), num_train_examples)

    if runner.any_process(preemption.requested()):
        console.say("Stopped (SIGTERM or Ctrl-C) before training started: nothing new to save.")
        return {}
    manager = checkpointing.create_manager(workdir_path / "checkpoints", config.keep_checkpoints)
    state, start_step = checkpointing.restore_or_none(
        manager, built.abstract_state(), runner, config.allow_restart_from_scratch
    )
    if start_step >= num_steps:
        manager.close()
        console.say(f"{workdir}: already finished at step {start_step}, {events.accuracy_summary(workdir_path)}; nothing to do.")
        return {}
    if state is None:
        state = runner.put_state(built.initial_state())
        start_step = 0
    before = provenance.device_count(last_start) if start_step else None
    console.say(
        f"{config.ablation}: {'starting' if start_step == 0 else 'resuming at step ' + str(start_step)}, "
        f"{num_steps} steps of {config.global_batch_size} ({steps_per_epoch} per epoch) on {jax.device_count()} "
        f"{jax.devices()[0].platform.upper()} device{'s' * (jax.device_count() > 1)}; workdir {workdir}"
        + (f" (its last start ran on {before} devices: the same computation up to float summation order)"
           if before and before != jax.device_count() else "")
    )
    p_train, p_eval = step_functions(built, runner)
    if config.synthetic_data:
        train_iter = synthetic_data.synthetic_batches(config.image_size, config.num_classes, local_batch, config.seed)
    else:
        train_iter = input_pipeline.train_batches(train_source, cfg, local_batch, steps_per_epoch, start_step)
    prefetched = runner.prefetch(train_iter)
    device_batches: Iterator[dict[str, jax.Array]] = prefetched
    single_process = jax.process_count() == 1
    if single_process:
        # The first batch and the training step's compilation (tens of seconds), watched for a stop request;
        # compiled ahead of time into the cache that the first step's call then hits, before anything is written.
        def first_batch_compiled() -> dict[str, jax.Array]:
            batch = next(prefetched)
            p_train.lower(state, batch).compile()
            return batch

        try:
            device_batches = itertools.chain([preemption.unless_stopped(first_batch_compiled)], prefetched)
        except preemption.Stopped:
            manager.close()
            if start_step == 0:  # a new run: the empty checkpoints/ that orbax made goes (and the lock its folder)
                with contextlib.suppress(OSError):
                    (workdir_path / "checkpoints").rmdir()
            console.say("Stopped (SIGTERM or Ctrl-C) while compiling, before the first step: nothing written.")
            return {}
    checkpointing.save_workdir_config(workdir_path, config)
    provenance.record(workdir_path, start_step, train_examples=num_train_examples)
    if not config.synthetic_data:
        checkpointing.save_workdir_classes(workdir_path, train_source.class_names)
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    if start_step == 0:
        writer.write_hparams({k: v for k, v in flax.traverse_util.flatten_dict(config.to_dict(), sep=".").items() if isinstance(v, (int, float, str, bool))})

    recalibrate = config.eval_recalibrate_batches > 0 and bool(jax.tree.leaves(state.batch_stats))
    p_moments = runner.compile_step(functools.partial(moments_step, model=built.model, axis_name=runner.axis_name))

    def recalibration_batches(at_step: int) -> Iterator[dict[str, jax.Array]]:
        """The K training batches that follow `at_step` (deterministic, so resuming gives the same)."""
        if config.synthetic_data:
            batches = synthetic_data.synthetic_batches(config.image_size, config.num_classes, local_batch, config.seed)
        else:
            batches = input_pipeline.train_batches(train_source, cfg, local_batch, steps_per_epoch, at_step)
        return (runner.shard_batch(next(batches)) for _ in range(config.eval_recalibrate_batches))

    if not config.synthetic_data:
        eval_data = input_pipeline.eval_dataset(eval_source, cfg, local_eval_batch, jax.process_count(),
                                                cache=config.eval_cache)

    watched_eval, watched_moments = _WatchedFirstCall(p_eval), _WatchedFirstCall(p_moments)

    def run_evaluation(at_step: int) -> dict[str, float]:
        """eval/*: with Algorithm 2's statistics when configured (and then also eval_moving_average/*, at every
        `eval_moving_average_every`-th evaluation and the last). One process abandons it at a stop request
        (`preemption.Stopped`) between two batches or during a compilation, except at the last step."""
        stoppable = single_process and at_step < num_steps
        eval_fn, moments_fn = (watched_eval, watched_moments) if stoppable else (p_eval, p_moments)

        def batches(source: Iterator[Any]) -> Iterator[Any]:
            for batch in source:
                if stoppable and preemption.requested():
                    raise preemption.Stopped
                yield batch

        if not recalibrate:
            return evaluate(eval_fn, state, batches(eval_batches()), runner)
        population_state = recalibrated(moments_fn, state, batches(recalibration_batches(at_step)))
        result = evaluate(eval_fn, population_state, batches(eval_batches()), runner)
        if (at_step // config.eval_every_steps) % config.eval_moving_average_every and at_step != num_steps:
            return result
        moving = evaluate(eval_fn, state, batches(eval_batches()), runner)
        return result | {k.replace("eval/", "eval_moving_average/", 1): v for k, v in moving.items()}

    def log_evaluation(at_step: int, metrics: dict[str, float], began: float) -> None:
        writer.write_scalars(at_step, {k: v for k, v in metrics.items() if not k.endswith("/num_examples")})
        console.say(_evaluation_line(at_step, metrics, time.time() - began))

    def eval_batches():
        if config.synthetic_data:
            return (b for b, _ in zip(synthetic_data.synthetic_batches(config.image_size, config.num_classes, local_batch, config.seed, mask=True), range(2)))
        return input_pipeline.iterate_eval(eval_data, eval_source, local_eval_batch)

    redo_evaluation = (single_process and start_step and start_step % config.eval_every_steps == 0
                       and start_step not in dict(events.read_scalars(workdir_path).get("eval/top1_accuracy", [])))
    report_progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
    progress = _Progress(start_step, num_steps, config.global_batch_size)
    pending: list[tuple[int, Any]] = []  # (step, device metrics) not yet fetched
    fetched: list[tuple[int, dict[str, np.ndarray]]] = []  # (step, host metrics) since the last log
    eval_metrics: dict[str, float] = {}
    step = start_step
    saves = checkpointing.Saves(manager)
    pacer = parallel.DispatchPacer()  # waits only on a host of several CPU devices (parallel.CPU_MAX_AHEAD)
    try:
        # Between sync points the host only dispatches, never waits for the devices (no device-to-host
        # transfer: tests/test_pod.py), so input and dispatch run ahead. Sync points are the log, evaluation and
        # checkpoint steps, and the last: there the host fetches the metrics and, on a pod, the processes
        # agree on a stop (so a SIGTERM on a pod is acted on within log_every_steps steps).
        with metric_writers.ensure_flushes(writer):
            if redo_evaluation:  # the evaluation a stop abandoned at this checkpoint's step: done first
                began = time.time()
                try:
                    log_evaluation(start_step, run_evaluation(start_step), began)
                except preemption.Stopped:
                    _say_abandoned(start_step)
                    return {}
            while step < num_steps:
                state, metrics = p_train(state, next(device_batches))
                pacer.dispatched(metrics)
                step += 1
                pending.append((step, metrics))
                report_progress(step)
                due = {"log": step % config.log_every_steps == 0 or step == num_steps,
                       "eval": step % config.eval_every_steps == 0 or step == num_steps,
                       "save": step % config.checkpoint_every_steps == 0 or step % config.eval_every_steps == 0}
                # One process reads its own SIGTERM flag each step, for free; a pod's processes agree on it
                # at sync points only.
                stop = single_process and preemption.requested()
                if not (stop or any(due.values())):
                    continue
                if not single_process:
                    stop = runner.any_process(preemption.requested())
                fetched += [(s, runner.to_host(m)) for s, m in pending]
                pending = []
                saves.poll()  # before this sync point's lines: a save completed since the last one is said first
                _raise_if_nonfinite(fetched, config.skip_nonfinite_steps, saves.last_complete)
                if due["log"] or stop:  # a stop logs its steps too
                    summary = _summarise(fetched)
                    writer.write_scalars(step, summary)
                    console.say(progress.line(step, summary))
                    fetched = []
                metrics_for_checkpoint = None
                if due["eval"] and not stop:  # stopping: save first
                    began = time.time()
                    try:
                        with report_progress.timed("eval"):
                            eval_metrics = run_evaluation(step)
                    except preemption.Stopped:
                        stop = True
                        _say_abandoned(step)
                    else:
                        log_evaluation(step, eval_metrics, began)
                        metrics_for_checkpoint = eval_metrics
                if stop or due["save"] or step == num_steps:
                    saves.save(step, runner.get_state(state), metrics_for_checkpoint)
                if stop:
                    saves.finish()
                    console.say(f"Preempted at step {step}: checkpoint saved; run the same command to continue.")
                    break
            saves.finish()
    except BaseException:
        # Let an in-flight asynchronous save complete, so the last checkpoint is whole, without hiding the error.
        with contextlib.suppress(checkpointing.SaveFailed):
            saves.finish()
        raise
    finally:
        manager.close()

    if step == num_steps:
        console.say(progress.summary(config.ablation, step, workdir_path, events.accuracy_summary(workdir_path)))
    return eval_metrics


class _WatchedFirstCall:
    """`fn`, whose first call (with its compilation: seconds to tens of seconds) runs under
    `preemption.unless_stopped`, so that a stop request during it raises `preemption.Stopped` at once; later
    calls go straight to `fn`."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn, self.called = fn, False

    def __call__(self, *args: Any) -> Any:
        if self.called:
            return self.fn(*args)
        result = preemption.unless_stopped(lambda: self.fn(*args))
        self.called = True
        return result


def _check_data_size(config: ml_collections.ConfigDict, workdir: str, trained_on: int | None, now: int) -> None:
    """A resumed run whose training data changed size (images added or removed) would change its steps per
    epoch and so its learning-rate schedule: refused as a config change is, said in one line when allowed."""
    if trained_on is None or trained_on == now:
        return
    before, after = trained_on // config.global_batch_size, now // config.global_batch_size
    change = (f"{workdir}: the training data has {now} examples, the run's last start had {trained_on}: "
              f"{before} -> {after} steps per epoch, which changes the learning-rate schedule")
    if not config.allow_config_change:
        raise ValueError(change + "; restore the data, or pass --config.allow_config_change=True to resume on it.")
    console.say(change + " (allow_config_change).")


def _percent(metrics: dict[str, float], key: str) -> str:
    return f"{100 * metrics[key]:.1f}%"


def _evaluation_line(step: int, metrics: dict[str, float], seconds: float) -> str:
    """'step 150: eval top-1 41.2%, top-5 88.0%, loss 1.712 (3,925 images, 2.1 s)' (+ moving averages)."""
    line = (f"step {step}: eval top-1 {_percent(metrics, 'eval/top1_accuracy')}, top-5 "
            f"{_percent(metrics, 'eval/top5_accuracy')}, loss {metrics['eval/loss']:.3f} "
            f"({metrics['eval/num_examples']:,.0f} images, {seconds:.1f} s)")
    if "eval_moving_average/top1_accuracy" in metrics:
        line += (f"; BN statistics by Algorithm 2 (with the moving averages: top-1 "
                 f"{_percent(metrics, 'eval_moving_average/top1_accuracy')})")
    return line


class _Progress:
    """The progress line of each log interval and the closing summary. The line's rate and ETA come from the
    last `WINDOW` log intervals of this invocation (compilation excluded, evaluations included), so that a
    pause (a suspended laptop, a stopped process) or a change of speed leaves them within `WINDOW` lines."""

    WINDOW = 10

    def __init__(self, start_step: int, num_steps: int, global_batch: int) -> None:
        self.start_step, self.num_steps, self.global_batch = start_step, num_steps, global_batch
        self.began = time.time()
        self.recent: collections.deque[tuple[int, float]] = collections.deque(maxlen=self.WINDOW + 1)

    def line(self, step: int, summary: dict[str, float]) -> str:
        """'step 50/1500 (3%): loss 2.301, lr 0.09, 512 images/s, ETA 3m05s'."""
        self.recent.append((step, time.time()))
        (first_step, first_time), (_, now) = self.recent[0], self.recent[-1]
        done, seconds = step - first_step, now - first_time
        rate = f"{done * self.global_batch / seconds:,.0f} images/s, ETA {console.duration((self.num_steps - step) * seconds / done)}" if done else "first interval, compilation included"
        loss = f"loss {summary['train/loss']:.3f}, lr {summary['train/learning_rate']:.3g}, " if "train/loss" in summary else ""
        return f"step {step}/{self.num_steps} ({100 * step // self.num_steps}%): {loss}{rate}"

    def summary(self, ablation: str, step: int, workdir: pathlib.Path, accuracy: str) -> str:
        """The closing lines: `accuracy` (final and best evaluation), wall time, images/s, where the outputs are."""
        wall = time.time() - self.began
        images = (step - self.start_step) * self.global_batch
        return (f"Finished {ablation} at step {step} in {console.duration(wall)} ({images / wall:,.0f} images/s "
                f"including start-up and evaluations), {accuracy}.\n"
                f"Events: {workdir} (tensorboard --logdir {workdir}); checkpoints: {workdir / 'checkpoints'}.")
