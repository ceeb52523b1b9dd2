"""Throughput, memory and FLOP utilisation of a config's training and evaluation steps.

Used by `scripts/benchmark.py`. Steps are compiled ahead of time (so compile time is measured apart),
timed after warm-up with the results blocked on, and XLA's cost analysis of the compiled per-device
program gives the FLOPs that the model FLOPs utilisation (MFU) divides by the device's peak rate.
"""

from __future__ import annotations

import dataclasses
import re
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from bn_inception import parallel, synthetic_data, train

# Dense peak rates in TFLOP/s per device (vendor data sheets; SXM parts for GPUs). float32 is the
# non-tensor-core rate; TPUs run float32 matmuls in bfloat16 passes by default, so both use the bf16 peak.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100": {"bfloat16": 989.0, "float32": 67.0},
    "A100": {"bfloat16": 312.0, "float32": 19.5},
    "V100": {"bfloat16": 125.0, "float32": 15.7},  # V100 has no bf16: its fp16 tensor-core peak
    "TPU v4": {"bfloat16": 275.0, "float32": 275.0},
    "TPU v5e": {"bfloat16": 197.0, "float32": 197.0},
    "TPU v5p": {"bfloat16": 459.0, "float32": 459.0},
}
# jax's device_kind strings -> the table's names ("TPU v5 lite" is v5e).
_KIND_ALIASES = (("v5 lite", "TPU v5e"), ("v5e", "TPU v5e"), ("v5p", "TPU v5p"), ("v5", "TPU v5p"), ("v4", "TPU v4"),
                 ("H100", "H100"), ("H200", "H100"), ("A100", "A100"), ("V100", "V100"))


def peak_tflops(device_kind: str, dtype: str) -> float | None:
    """The table's peak for a jax `device_kind` (H200 counts as H100: same compute), None if unknown."""
    for needle, name in _KIND_ALIASES:
        if needle.lower() in device_kind.lower():
            return PEAK_TFLOPS[name]["bfloat16" if dtype == "bfloat16" else "float32"]
    return None


_COLLECTIVE = re.compile(r"= (\S.*?) (all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)(?:-start)?\(")
_ARRAY = re.compile(r"\b(pred|[suf]\d+|bf16)\[([\d,]*)\]")


def collectives(hlo_text: str) -> list[tuple[str, int]]:
    """(kind, bytes) of every cross-device collective in an optimised HLO module's text, in program order.

    Bytes are those of the collective's result (for an all-reduce: the data each device contributes and
    receives); an asynchronous pair (`all-reduce-start`/`-done`, on GPU and TPU) counts once.
    """
    found = []
    for result, kind in _COLLECTIVE.findall(hlo_text):
        size = 0
        for dtype, dims in _ARRAY.findall(result):
            elements = int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
            size += elements * (1 if dtype == "pred" else int(re.sub(r"\D", "", dtype)) // 8)
        found.append((kind, size))
    return found


@dataclasses.dataclass
class CompiledStep:
    """An ahead-of-time compiled step with what XLA reports about it."""

    fn: Callable[..., Any]
    compile_seconds: float
    flops_per_device: float  # XLA cost analysis of the per-device program, before backend optimisation
    memory_bytes: int | None  # arguments + outputs + temporaries - aliased, from XLA's memory analysis
    aliased_bytes: int | None  # donated argument buffers reused for outputs (the training state, once)
    collectives: list[tuple[str, int]]  # (kind, bytes) of each cross-device collective, see `collectives`


def compile_step(jitted: Callable[..., Any], *args: Any, partitions: int) -> CompiledStep:
    """Lowers and compiles `jitted` for `args`, timing it and reading its cost and memory analyses.

    FLOPs come from the lowered program, before the backend's optimisations: on GPUs the compiled program
    calls cuDNN for convolutions, which XLA's cost analysis counts as no FLOPs (an H200 reported 0.31
    GFLOP per training image of BN-Inception at 224px in bfloat16 for the compiled step, 11.5 on a CPU).
    The lowered program of `jit` is the global one, split over `partitions` devices (`Runner.program_devices`);
    that of `pmap` is already one device's (`partitions=1`).
    """
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    compiled = lowered.compile()
    seconds = time.perf_counter() - start
    cost = lowered.cost_analysis() or cpu_cost_analysis(lowered)
    if isinstance(cost, (list, tuple)):  # older jax: one dict per program
        cost = cost[0]
    memory = compiled.memory_analysis()
    memory_bytes = aliased_bytes = None
    if memory is not None:
        memory_bytes = int(
            memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        )
        aliased_bytes = int(memory.alias_size_in_bytes)
    return CompiledStep(compiled, seconds, float((cost or {}).get("flops", 0.0)) / partitions, memory_bytes, aliased_bytes,
                        collectives(compiled.as_text()))


def cpu_cost_analysis(lowered: jax.stages.Lowered) -> dict[str, float] | None:
    """XLA's cost analysis of a lowered program, run by the CPU client; None where this jax lacks it.

    Backends that are PJRT plugins (jax's CUDA and TPU plugins) do not analyse lowered programs
    (`Lowered.cost_analysis()` returns None there: an H200 with jax 0.11.2, 2026-11-26); the analysis of the
    same HLO does not depend on the backend. `hlo_module_cost_analysis` is jax's own, not public, hence None
    when a jax version moves it.
    """
    try:
        from jax._src.lib import _jax

        return _jax.hlo_module_cost_analysis(jax.devices("cpu")[0].client, lowered.compiler_ir("hlo").as_hlo_module())
    except (ImportError, AttributeError, RuntimeError):
        return None


def seconds_per_step(step: Callable[[], Any], num_steps: int, warmup_steps: int) -> float:
    """Mean wall time of `step()` over `num_steps` calls after `warmup_steps`, with results blocked on (paced
    on a host of several CPU devices only: `parallel.DispatchPacer`)."""
    for _ in range(warmup_steps):
        jax.block_until_ready(step())
    pacer = parallel.DispatchPacer()
    start = time.perf_counter()
    for _ in range(num_steps):
        out = step()
        pacer.dispatched(out)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / num_steps


def synthetic_batch(config: ml_collections.ConfigDict, batch: int, runner: parallel.Runner, mask: bool = False) -> dict[str, jax.Array]:
    """One synthetic batch of `batch` images (this process's share) of the config's size, on the devices."""
    host = next(synthetic_data.synthetic_batches(config.image_size, config.num_classes, batch, config.seed, mask=mask))
    return runner.shard_batch(host)


def prepare(config: ml_collections.ConfigDict) -> tuple[parallel.Runner, Callable[..., Any], Callable[..., Any], Any]:
    """(runner, training step, evaluation step, initial state on the devices) of a config, uncompiled."""
    runner = parallel.Runner.create(config)
    built = train.setup(config, config.global_batch_size * 1000, runner.axis_name)
    p_train, p_eval = train.step_functions(built, runner)
    return runner, p_train, p_eval, runner.put_state(built.initial_state())


def measure(
    config: ml_collections.ConfigDict, num_steps: int, warmup_steps: int,
    real_batches: Iterator[dict[str, np.ndarray]] | None = None, evaluation: bool = True,
) -> dict[str, dict[str, Any]]:
    """{"train": ..., "eval": ...}: the config's training step and (with `evaluation`) evaluation step,
    built and initialised once. See `_training` and `_evaluation` for what each holds."""
    runner, p_train, p_eval, state = prepare(config)
    results = {}
    if evaluation:  # first: training donates (consumes) the state
        results["eval"] = _evaluation(config, runner, p_eval, state, num_steps, warmup_steps)
    results["train"] = _training(config, runner, p_train, state, num_steps, warmup_steps, real_batches)
    return results


def training_stepper(
    config: ml_collections.ConfigDict, runner: parallel.Runner, p_train: Callable[..., Any], state: Any,
) -> tuple[CompiledStep, Callable[..., Any]]:
    """Compiles the training step for this process's share of a synthetic global batch.

    Returns the compiled step and `step(batch=None)`, which trains the state it holds (starting from `state`)
    one step on `batch` (a device batch of the same shapes) or on the synthetic batch, and returns the metrics.
    """
    batch = synthetic_batch(config, config.global_batch_size // jax.process_count(), runner)
    compiled = compile_step(p_train, state, batch, partitions=runner.program_devices)
    holder = [state]

    def step(next_batch: dict[str, jax.Array] | None = None) -> Any:
        holder[0], metrics = compiled.fn(holder[0], batch if next_batch is None else next_batch)
        return metrics

    return compiled, step


def _training(
    config: ml_collections.ConfigDict, runner: parallel.Runner, p_train: Callable[..., Any], state: Any,
    num_steps: int, warmup_steps: int, real_batches: Iterator[dict[str, np.ndarray]] | None,
) -> dict[str, Any]:
    """Compile time, step time, images/s per device, FLOPs and memory of the training step.

    With `real_batches` (this process's batches), also the step time when every step waits for the input.
    """
    compiled, step = training_stepper(config, runner, p_train, state)
    step_seconds = seconds_per_step(step, num_steps, warmup_steps)
    per_device = config.global_batch_size / jax.device_count()
    result = {
        "compile_seconds": compiled.compile_seconds,
        "step_seconds": step_seconds,
        "images_per_second_per_device": per_device / step_seconds,
        "flops_per_step_per_device": compiled.flops_per_device,
        "flops_per_image": compiled.flops_per_device / per_device,
        "xla_memory_bytes": compiled.memory_bytes,
        "collectives_per_step": len(compiled.collectives),
        "collective_bytes_per_step": sum(size for _, size in compiled.collectives),
    }
    if real_batches is not None:
        device_batches = runner.prefetch(real_batches)

        real_seconds = seconds_per_step(lambda: step(next(device_batches)), num_steps, warmup_steps)
        result["real_data_step_seconds"] = real_seconds
        result["real_data_images_per_second_per_device"] = per_device / real_seconds
    return result


def _evaluation(
    config: ml_collections.ConfigDict, runner: parallel.Runner, p_eval: Callable[..., Any], state: Any,
    num_steps: int, warmup_steps: int,
) -> dict[str, Any]:
    """Compile time, images/s per device and FLOPs of the evaluation step at `config.eval_batch_size`."""
    batch = synthetic_batch(config, config.eval_batch_size // jax.process_count(), runner, mask=True)
    compiled = compile_step(p_eval, state, batch, partitions=runner.program_devices)
    step_seconds = seconds_per_step(lambda: compiled.fn(state, batch), num_steps, warmup_steps)
    per_device = config.eval_batch_size / jax.device_count()
    return {
        "compile_seconds": compiled.compile_seconds,
        "images_per_second_per_device": per_device / step_seconds,
        "flops_per_image": compiled.flops_per_device / per_device,
    }


def without_bn(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The same network and batch with BN removed (conv biases instead): the paper's BN overhead."""
    plain = config.copy_and_resolve_references()
    plain.model.use_bn = False
    plain.bn_group_size = 0
    return plain


def peak_memory_bytes() -> dict[str, int | None]:
    """Peak memory of the first local device (accelerators report it) and of this process (max RSS)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    return {
        "device_peak_bytes": stats.get("peak_bytes_in_use"),
        "host_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def utilisation(flops_per_step_per_device: float, step_seconds: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s per device over the peak (TFLOP/s); None without a peak."""
    if not peak or not flops_per_step_per_device:
        return None
    return flops_per_step_per_device / step_seconds / (peak * 1e12)
