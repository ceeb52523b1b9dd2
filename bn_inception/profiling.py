"""Where a device step's time goes: the kernels of a `jax.profiler` trace, summed per step and by kind.

Used by `scripts/dev/profile_step.py`. A trace (the Perfetto JSON that `jax.profiler.trace(...,
create_perfetto_trace=True)` writes) holds, for a GPU, one timeline per CUDA stream of the device process
("/device:GPU:0"), each event a kernel or a memory copy. From the kernels of `steps` traced steps this
module gives the device's busy time per step (the union of the kernels' intervals over all streams, so
overlapping streams count once), the number of kernels per step, their time by kind, by layer of the
network (from the name scope jax records with each kernel) and the kernels that took longest. A step
whose busy time is far under its wall time waits on the host (kernel launches, Python); one whose kernels
are many and short is launch-bound even when the device looks busy.
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
from typing import Any, NamedTuple

# Timelines the profiler derives from the kernels (they repeat kernel time) or fills from the host.
_DERIVED_LINES = ("XLA Modules", "XLA Ops", "XLA TraceMe", "Steps", "Framework", "Source", "Launch Stats", "TensorFlow")

# Kinds of kernel by name, first match wins. cuDNN and cuBLAS kernels carry their algorithm in the name
# (`sm90_xmma_fprop_implicit_gemm_...`, `cutlass_...`; cuDNN's own layout transforms, `nhwcToNchwKernel`,
# count as convolution); XLA names its own kernels after their fusions (`input_reduce_fusion_3`,
# `loop_add_fusion`, `transpose_fusion_2`).
KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("convolution / matmul", re.compile(r"xmma|gemm|conv|cudnn|cutlass|cublas|wgrad|dgrad|fprop|nchw|nhwc", re.I)),
    ("reduction", re.compile(r"reduce", re.I)),
    ("transpose / copy", re.compile(r"transpose|copy", re.I)),
    ("memcpy / memset", re.compile(r"memcpy|memset", re.I)),
)
OTHER = "other fusion (element-wise)"


class Kernel(NamedTuple):
    """One kernel (or copy) of a device timeline: times in microseconds; `scope` as `layer_scope` gives it."""

    name: str
    start: float
    duration: float
    scope: str


def layer_scope(name_stack: str | None) -> str:
    """'LAYER forward' or 'LAYER backward' from the name scope jax gives a kernel, e.g.
    'jit(train_step)/transpose(jvp(BNInception))/inception_3a/3x3/Conv_0/conv_general_dilated' ->
    'inception_3a backward'; '(no layer)' for kernels outside the model (the optimizer, the loss) and
    '(unnamed)' for those XLA fused without a name (most element-wise fusions and reductions)."""
    if not name_stack:
        return "(unnamed)"
    parts = name_stack.split("/")
    for i, part in enumerate(parts):
        direction = "backward" if part.startswith("transpose(jvp(") else "forward" if part.startswith("jvp(") else None
        if direction and i + 1 < len(parts) - 1:
            return f"{parts[i + 1]} {direction}"
    return "(no layer)"


def kind(name: str) -> str:
    """The kind of a kernel, by its name (`KINDS`); `OTHER` when no pattern matches."""
    for label, pattern in KINDS:
        if pattern.search(name):
            return label
    return OTHER


def read_trace(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """The events of a Perfetto/Chrome trace file (`.json` or `.json.gz`)."""
    path = pathlib.Path(path)
    with (gzip.open(path, "rt") if path.suffix == ".gz" else path.open()) as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def device_kernels(events: list[dict[str, Any]], device_prefix: str = "/device:") -> list[Kernel]:
    """Every complete event on a device process's own timelines (the derived ones, `_DERIVED_LINES`, left
    out), sorted by start."""
    processes, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            processes[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e["pid"], e.get("tid"))] = e["args"]["name"]
    kernels = []
    for e in events:
        if e.get("ph") != "X" or not processes.get(e.get("pid"), "").startswith(device_prefix):
            continue
        line = threads.get((e["pid"], e.get("tid")), "")
        if any(line.startswith(derived) for derived in _DERIVED_LINES):
            continue
        scope = layer_scope(e.get("args", {}).get("name"))
        kernels.append(Kernel(e["name"], float(e["ts"]), float(e.get("dur", 0.0)), scope))
    return sorted(kernels, key=lambda k: k.start)


def busy_microseconds(kernels: list[Kernel]) -> float:
    """Length of the union of the kernels' intervals (kernels sorted by start): time the device was busy."""
    busy, end = 0.0, float("-inf")
    for _, start, duration, _ in kernels:
        stop = start + duration
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return busy


def summarise(kernels: list[Kernel], steps: int, wall_seconds_per_step: float, top: int = 12) -> dict[str, Any]:
    """Per-step figures of `steps` traced steps: wall milliseconds (`wall_seconds_per_step`, best timed
    without the profiler, which slows the host), busy milliseconds, kernels, time by kind, and the `top`
    layers and kernels by time (name, milliseconds and launches per step)."""
    if steps < 1:
        raise ValueError(f"steps={steps}; expected at least 1.")
    if not kernels:
        raise ValueError("The trace has no device kernels (a CPU run, or a profiler that saw no device).")
    by_kind: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    by_name: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    by_scope: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for name, _, duration, scope in kernels:
        for table, key in ((by_kind, kind(name)), (by_name, name), (by_scope, scope)):
            table[key][0] += duration
            table[key][1] += 1
    per_step = lambda total_us: total_us / steps / 1e3  # noqa: E731 (microseconds in all steps -> ms per step)
    busy_ms = per_step(busy_microseconds(kernels))
    kernel_ms = per_step(sum(k.duration for k in kernels))
    longest = lambda table: sorted(table.items(), key=lambda item: -item[1][0])  # noqa: E731
    return {
        "steps": steps,
        "wall_ms": 1e3 * wall_seconds_per_step,
        "busy_ms": busy_ms,
        "busy_fraction": busy_ms / (1e3 * wall_seconds_per_step),
        "kernel_ms": kernel_ms,
        "kernels_per_step": len(kernels) / steps,
        "mean_kernel_us": 1e3 * kernel_ms / (len(kernels) / steps),
        "by_kind": {k: {"ms": per_step(t), "kernels": n / steps, "fraction": per_step(t) / kernel_ms}
                    for k, (t, n) in longest(by_kind)},
        "top_layers": [{"name": name, "ms": per_step(t), "kernels": n / steps} for name, (t, n) in longest(by_scope)[:top]],
        "top": [{"name": name, "ms": per_step(t), "kernels": n / steps} for name, (t, n) in longest(by_name)[:top]],
    }


def table(summary: dict[str, Any]) -> str:
    """`summarise`'s result as lines of text."""
    s = summary
    lines = [
        f"per step ({s['steps']} traced): wall {s['wall_ms']:.2f} ms (untraced), device busy {s['busy_ms']:.2f} ms "
        f"({100 * s['busy_fraction']:.0f}%), {s['kernels_per_step']:.0f} kernels of {s['mean_kernel_us']:.1f} us on average",
    ]
    lines += [f"  {k:<28} {v['ms']:8.2f} ms {100 * v['fraction']:5.1f}%  {v['kernels']:6.0f} kernels" for k, v in s["by_kind"].items()]
    lines.append("longest layers (ms and kernels per step):")
    lines += [f"  {t['ms']:8.3f} ms {t['kernels']:5.0f}x  {t['name']}" for t in s["top_layers"]]
    lines.append("longest kernels (ms and launches per step):")
    lines += [f"  {t['ms']:8.3f} ms {t['kernels']:5.0f}x  {t['name'][:100]}" for t in s["top"]]
    return "\n".join(lines)
