r"""Training and evaluation throughput of a config on this host's devices, with FLOPs, MFU and BN overhead.

  python scripts/benchmark.py --config=configs/bn_x30.py [--config.key=value ...] \
      [--steps=20] [--warmup_steps=3] [--real_data=true] [--bn_overhead=true] [--output=benchmark.json]

Prints a table and writes JSON: compile time; training step time and images/s per device with
synthetic data and (unless the config is `:synthetic` or --real_data=false) with the config's input
pipeline; evaluation images/s; peak memory; the training step's cross-device collectives (count and bytes, from
the optimised HLO); FLOPs per step from XLA's cost analysis and MFU against the
device's peak (bn_inception/benchmarking.py has the table; --peak_tflops overrides it); and the cost of
BN, the same network trained without it. The data the config names is checked before anything compiles.
"""

import datetime
import json
import pathlib
import platform
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bn_inception import benchmarking, config_checks, console, train  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flag_as_required("config")
flags.DEFINE_integer("steps", 20, "Timed steps per measurement.", lower_bound=1)
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps before each measurement.", lower_bound=0)
flags.DEFINE_bool("real_data", True, "Also time training fed by the config's input pipeline.")
flags.DEFINE_bool("bn_overhead", True, "Also time the same network without BN.")
flags.DEFINE_float("peak_tflops", None, "Device peak in TFLOP/s for MFU (default: the table, by device kind).")
flags.DEFINE_string("output", "benchmark.json", "Where to write the JSON results.")


def _table(results: dict) -> str:
    t, e = results["train"], results["eval"]
    mib = lambda b: "n/a" if b is None else f"{b / 2**20:,.0f} MiB"  # noqa: E731
    pct = lambda x: "n/a (no peak known for this device)" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    rows = [
        ("device", f"{results['device_count']} x {results['device_kind']}"),
        ("config", f"{results['ablation']}, {results['image_size']}px, global batch {results['global_batch_size']}, {results['dtype']}, lowering {results['lowering']}"),
        ("train compile time", f"{t['compile_seconds']:.1f} s"),
        ("train step time (synthetic)", f"{1e3 * t['step_seconds']:.1f} ms"),
        ("train images/s per device (synthetic)", f"{t['images_per_second_per_device']:,.1f}"),
    ]
    if "real_data_images_per_second_per_device" in t:
        rows.append(("train images/s per device (input pipeline)", f"{t['real_data_images_per_second_per_device']:,.1f}"))
    rows += [
        ("train GFLOP per image (XLA)", f"{t['flops_per_image'] / 1e9:.3g}"),
        ("MFU (synthetic)", pct(results["mfu"])),
        ("eval images/s per device", f"{e['images_per_second_per_device']:,.1f}"),
        ("eval GFLOP per image (XLA)", f"{e['flops_per_image'] / 1e9:.3g}"),
        ("XLA train-step memory per device", mib(t["xla_memory_bytes"])),
        ("train-step collectives (count, bytes per device)", f"{t['collectives_per_step']}, {t['collective_bytes_per_step'] / 2**20:.2f} MiB"),
        ("peak device memory", mib(results["memory"]["device_peak_bytes"])),
        ("peak host memory (max RSS)", mib(results["memory"]["host_max_rss_bytes"])),
    ]
    if "bn_overhead" in results:
        rows.append(("train images/s per device without BN", f"{results['without_bn']['images_per_second_per_device']:,.1f}"))
        rows.append(("BN overhead (step time with / without - 1)", f"{100 * results['bn_overhead']:.1f}%"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str]) -> None:
    """Checks the config and data, measures, prints the table and writes the JSON."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    config_checks.validate(config)
    real = FLAGS.real_data and not config.synthetic_data
    if real:  # the input pipeline is TensorFlow's: imported without its start-up lines
        console.quiet_tensorflow_import(sys.argv)
    real_batches = train.config_train_batches(config) if real else None  # the data is checked here, before compiling
    device = jax.devices()[0]
    peak = FLAGS.peak_tflops or benchmarking.peak_tflops(device.device_kind, config.dtype)

    results = {
        "date": datetime.date.today().isoformat(),
        "host": platform.node(),
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "ablation": config.ablation,
        "image_size": config.image_size,
        "global_batch_size": config.global_batch_size,
        "eval_batch_size": config.eval_batch_size,
        "dtype": config.dtype,
        "lowering": train.resolved_lowering(config),
        "peak_tflops": peak,
    } | benchmarking.measure(config, FLAGS.steps, FLAGS.warmup_steps, real_batches)
    results["mfu"] = benchmarking.utilisation(results["train"]["flops_per_step_per_device"], results["train"]["step_seconds"], peak)
    if FLAGS.bn_overhead and config.model.use_bn:
        plain = benchmarking.measure(benchmarking.without_bn(config), FLAGS.steps, FLAGS.warmup_steps, evaluation=False)["train"]
        results["without_bn"] = plain
        results["bn_overhead"] = results["train"]["step_seconds"] / plain["step_seconds"] - 1.0
    results["memory"] = benchmarking.peak_memory_bytes()
    if jax.process_index() == 0:
        pathlib.Path(FLAGS.output).write_text(json.dumps(results, indent=1))
        print(_table(results))
        print(f"JSON: {FLAGS.output}")


if __name__ == "__main__":
    console.run(main, __doc__)
