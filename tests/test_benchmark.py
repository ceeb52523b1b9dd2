"""scripts/benchmark.py runs end to end and writes its JSON (no timing is asserted), and the MFU table."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from bn_inception import benchmarking, parallel
from tests.fixtures import write_image_folder
from tests.test_console import LOG_LINE

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_benchmark_writes_json_with_consistent_flops(tmp_path):
    data = write_image_folder(tmp_path / "images", {"train": 16, "val": 2})
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "--config=configs/bn_x30.py:tiny", f"--config.data_dir={data}",
         "--config.num_classes=4", "--config.model.width_multiplier=0.0625", "--steps=2", "--warmup_steps=1",
         f"--output={output}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BN overhead" in result.stdout and "input pipeline" in result.stdout
    assert not [line for line in (result.stdout + result.stderr).splitlines() if LOG_LINE.match(line)]  # no library logs
    r = json.loads(output.read_text())
    assert r["device_count"] == 8 and r["global_batch_size"] == 32 and r["lowering"] == "cpu"
    train, evaluation, plain = r["train"], r["eval"], r["without_bn"]
    for measured in (train["images_per_second_per_device"], train["real_data_images_per_second_per_device"],
                     evaluation["images_per_second_per_device"], plain["images_per_second_per_device"],
                     train["compile_seconds"], r["memory"]["host_max_rss_bytes"]):
        assert measured > 0
    # Independent check of the cost analysis: a training step is a forward pass plus a backward pass of
    # about twice its cost, and per-image FLOPs do not depend on the batch (eval batch 32, train 4/device).
    assert 2.5 < train["flops_per_image"] / evaluation["flops_per_image"] < 3.6
    # BN adds work: normalisation's forward and backward passes cost more than the conv biases they replace.
    assert train["flops_per_image"] > plain["flops_per_image"]
    assert r["mfu"] is None  # CPU: no peak in the table


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_compile_step_counts_one_devices_convolution_flops(mode):
    # Known count: a 3x3 SAME convolution does 2 * Cin * Cout FLOPs per valid tap, and a 32x32 image has
    # 94 x 94 valid (output, input) pairs per axis pair; each of 8 devices convolves 2 of the 16 images.
    # The FLOPs are read before the backend optimises (on GPUs the compiled step calls cuDNN, which XLA
    # counts as none), and jit's global program is divided over the devices it spans.
    runner = parallel.Runner.over_all_devices(mode)
    kernel = np.ones((3, 3, 4, 6), np.float32)

    def conv(kernel, batch):
        return jax.lax.conv_general_dilated(batch["image"], kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    batch = runner.shard_batch({"image": np.ones((16, 32, 32, 4), np.float32)})
    step = benchmarking.compile_step(runner.compile_step(conv), runner.put_state(kernel), batch, partitions=runner.program_devices)
    assert step.flops_per_device == pytest.approx(2 * 2 * 4 * 6 * 94 * 94, rel=1e-5)  # XLA: a few FLOPs off
    # Where the backend cannot analyse a lowered program (GPUs), the CPU client's analysis counts the same.
    lowered = runner.compile_step(conv).lower(runner.put_state(kernel), batch)
    assert benchmarking.cpu_cost_analysis(lowered)["flops"] == lowered.cost_analysis()["flops"]


# The GPU image the project's accelerator checks run on has JAX, flax, optax and orbax but no TensorFlow,
# tensorflow-datasets or clu: the synthetic benchmark and the device check must run with those unimportable.
# Usage: python -c WITHOUT_TENSORFLOW SCRIPT ARGS...
WITHOUT_TENSORFLOW = """
import runpy, sys
for name in ("tensorflow", "tensorflow_datasets", "clu"):
    sys.modules[name] = None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_synthetic_benchmark_runs_without_tensorflow(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, "scripts/benchmark.py", "--config=configs/bn_x30.py:tiny,synthetic",
         "--config.dtype=bfloat16", "--config.global_batch_size=64", "--config.bn_group_size=8",
         "--config.model.width_multiplier=0.0625", "--steps=1", "--warmup_steps=0", "--bn_overhead=false",
         f"--output={output}"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(output.read_text())
    assert r["dtype"] == "bfloat16" and r["train"]["images_per_second_per_device"] > 0
    assert "real_data_images_per_second_per_device" not in r["train"]
    # Groups of 8, one per device: the gradient, statistics and metric reductions only (tests/test_pod.py).
    assert r["train"]["collectives_per_step"] == 1


def test_check_device_compares_two_lowerings_and_fails_over_tolerance():
    # On a CPU host the "device" runs XLA's own convolution and pooling gradients (--config.model.lowering=xla)
    # and the reference the CPU lowering's: two code paths of one function, equal up to float32 rounding.
    # Tolerance 0 turns that rounding into a failure: exit 1 and the verdict line.
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, "scripts/dev/check_device.py", "--config=configs/bn_x30.py:tiny,synthetic",
         "--config.model.lowering=xla", "--config.num_classes=10", "--config.model.width_multiplier=0.0625", "--tolerance=0"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "lowering xla; reference: CPU, lowering cpu" in result.stdout
    assert not [line for line in (result.stdout + result.stderr).splitlines() if LOG_LINE.match(line)]
    checked = re.search(r"highest precision: loss \S+; relative difference: loss (\S+), parameter change (\S+), "
                        r"BN statistics (\S+)", result.stdout)
    loss, change, statistics = (float(x) for x in checked.groups())
    assert 0 < max(loss, change, statistics) and max(loss, change, statistics) < 1e-4  # measured: 8.6e-6 at most
    assert "DIFFERENT training step: largest relative difference at highest precision" in result.stdout


def test_benchmark_rejects_missing_data_before_compiling(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "--config=configs/bn_x30.py:tiny",
         f"--config.data_dir={tmp_path / 'absent'}", f"--output={tmp_path / 'b.json'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0 and "absent" in result.stderr and "does not exist" in result.stderr
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("kind, dtype, expected", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.0),
    ("NVIDIA A100-SXM4-40GB", "float32", 19.5),
    ("Tesla V100-SXM2-16GB", "bfloat16", 125.0),
    ("TPU v4", "bfloat16", 275.0),
    ("TPU v5 lite", "bfloat16", 197.0),
    ("TPU v5p", "float32", 459.0),
    ("cpu", "float32", None),
])
def test_peak_table_lookup(kind, dtype, expected):
    assert benchmarking.peak_tflops(kind, dtype) == expected


def test_utilisation_is_achieved_over_peak():
    # 12 GFLOP per image at 16,000 images/s on a 989 TFLOP/s device: 19.4%.
    assert benchmarking.utilisation(12e9 * 256, 256 / 16_000, 989.0) == pytest.approx(12e9 * 16_000 / 989e12)
    assert benchmarking.utilisation(1e9, 1.0, None) is None


def test_accelerator_figures_rejects_unknown_measurement_before_running(tmp_path):
    result = subprocess.run(["bash", "scripts/dev/accelerator_figures.sh", str(tmp_path / "out"), "check_device", "full_bf16"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Unknown measurement 'full_bf16'" in result.stderr and "full_bf16_b256" in result.stderr
    assert not (tmp_path / "out").exists() and result.stdout == ""
