r"""Where a config's training step spends its time on a GPU: its kernels, by kind, by layer and by name.

  python scripts/dev/profile_step.py --config=configs/bn_x30.py:synthetic [--config.key=value ...] \
      [--steps=10] [--timed_steps=100] [--warmup_steps=30] [--top=12] [--trace_dir=DIR] [--output=profile.json]

Compiles the training step on a synthetic batch, times `timed_steps` steps, then traces `steps` more with
`jax.profiler` and sums the device's kernels per step (bn_inception/profiling.py): busy time against
wall time, kernels per step, time by kind (convolutions and matmuls, reductions, transposes and copies,
other fusions), the layers of the network that took longest and the longest kernels. Prints a table and
writes JSON; the Perfetto trace stays in --trace_dir when given (open it at ui.perfetto.dev), else it is
deleted. Needs a GPU (the profiler records its kernels on their CUDA streams); elsewhere it stops with an
error before compiling.
"""

import datetime
import json
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bn_inception import benchmarking, config_checks, console, profiling, train  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flag_as_required("config")
flags.DEFINE_integer("steps", 10, "Steps traced.", lower_bound=1)
flags.DEFINE_integer("timed_steps", 100, "Steps timed without the profiler (the wall time per step).", lower_bound=1)
flags.DEFINE_integer("warmup_steps", 30, "Untimed steps before the timing.", lower_bound=0)
flags.DEFINE_integer("top", 12, "Longest layers and kernels listed.", lower_bound=0)
flags.DEFINE_string("trace_dir", "", "Keep the trace here (default: a temporary folder, deleted).")
flags.DEFINE_string("output", "profile.json", "Where to write the JSON results.")


def main(argv: list[str]) -> None:
    """Checks the config, compiles, times and traces the step, prints the summary and writes the JSON."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    config_checks.validate(config)
    output = pathlib.Path(FLAGS.output)
    if not output.parent.is_dir():
        raise ValueError(f"--output={FLAGS.output}: the folder {output.parent} does not exist.")
    device = jax.devices()[0]
    if device.platform != "gpu":  # the profiler records GPU kernels on their streams; TPUs and CPUs differ
        raise ValueError(f"profile_step.py needs a GPU; this host's first device is {device.device_kind!r} "
                         f"(platform {device.platform!r}).")
    runner, p_train, _, state = benchmarking.prepare(config)
    compiled, step = benchmarking.training_stepper(config, runner, p_train, state)
    wall = benchmarking.seconds_per_step(step, FLAGS.timed_steps, FLAGS.warmup_steps)
    with tempfile.TemporaryDirectory() as scratch:
        trace_dir = FLAGS.trace_dir or scratch
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            benchmarking.seconds_per_step(step, FLAGS.steps, 0)
        path = max(pathlib.Path(trace_dir).glob("plugins/profile/*/perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
        kernels = profiling.device_kernels(profiling.read_trace(path))
    summary = profiling.summarise(kernels, FLAGS.steps, wall, FLAGS.top)
    results = {
        "date": datetime.date.today().isoformat(),
        "device_kind": device.device_kind,
        "ablation": config.ablation,
        "image_size": config.image_size,
        "global_batch_size": config.global_batch_size,
        "dtype": config.dtype,
        "lowering": train.resolved_lowering(config),
        "flops_per_step_per_device": compiled.flops_per_device,
    } | summary
    output.write_text(json.dumps(results, indent=1))
    print(f"{device.device_kind}: {config.ablation}, {config.image_size}px, global batch {config.global_batch_size}, {config.dtype}")
    print(profiling.table(summary))
    if FLAGS.trace_dir:
        print(f"trace: {path}")
    print(f"JSON: {FLAGS.output}")


if __name__ == "__main__":
    console.run(main, __doc__)
