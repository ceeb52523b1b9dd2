"""bn_inception/profiling.py on a generated trace with known kernels, and profile_step.py's error on a CPU."""

import gzip
import json
import os
import subprocess
import sys

import pytest

from bn_inception import profiling
from tests.test_benchmark import REPO, WITHOUT_TENSORFLOW


def _trace(path, kernels_by_line):
    """A Perfetto JSON trace: a host process with one Python event, and a GPU process whose timelines
    (name -> [(kernel, start, duration, jax name scope or None)]) hold the given kernels."""
    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "M", "pid": 1, "tid": 1, "name": "thread_name", "args": {"name": "python"}},
        {"ph": "X", "pid": 1, "tid": 1, "ts": 0.0, "dur": 1000.0, "name": "PjitFunction(train_step)"},
        {"ph": "M", "pid": 7, "name": "process_name", "args": {"name": "/device:GPU:0"}},
    ]
    for tid, (line, kernels) in enumerate(kernels_by_line.items(), start=10):
        events.append({"ph": "M", "pid": 7, "tid": tid, "name": "thread_name", "args": {"name": line}})
        events += [{"ph": "X", "pid": 7, "tid": tid, "ts": ts, "dur": dur, "name": name, "args": {"name": scope} if scope else {}}
                   for name, ts, dur, scope in kernels]
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events, "displayTimeUnit": "ns"}, f)


def test_summary_of_known_kernels(tmp_path):
    # Two steps of 1 ms wall each. Stream 1: a convolution 0-300 us and a reduction 350-400 us in step 1,
    # the same at 1000-1300 and 1350-1400 in step 2. Stream 2: an element-wise fusion 250-450 us,
    # overlapping both of step 1's kernels: busy 0-450 = 450 us in step 1, 300 + 50 = 350 us in step 2.
    # The derived "XLA Ops" line repeats a kernel and must not count; the host's event is not a kernel.
    # The convolutions are layer 3a's forward pass, the fusion the optimizer's, the reductions unnamed.
    conv = "sm90_xmma_fprop_implicit_gemm_bf16bf16_nhwckrsc_nhwc"
    scope = "jit(train_step)/jvp(BNInception)/inception_3a/1x1/Conv_0/conv_general_dilated"
    path = tmp_path / "perfetto_trace.json.gz"
    _trace(path, {
        "Stream #13(Compute)": [(conv, 0.0, 300.0, scope), ("input_reduce_fusion_3", 350.0, 50.0, None),
                                (conv, 1000.0, 300.0, scope), ("input_reduce_fusion_3", 1350.0, 50.0, None)],
        "Stream #14(Compute)": [("loop_add_fusion", 250.0, 200.0, "jit(train_step)/mul")],
        "XLA Ops": [("fusion.3", 350.0, 50.0, None)],
    })
    kernels = profiling.device_kernels(profiling.read_trace(path))
    assert [k.name for k in kernels] == [conv, "loop_add_fusion", "input_reduce_fusion_3", conv, "input_reduce_fusion_3"]
    s = profiling.summarise(kernels, steps=2, wall_seconds_per_step=1e-3, top=2)
    assert s["busy_ms"] == pytest.approx((450 + 350) / 2 / 1e3)
    assert s["busy_fraction"] == pytest.approx(0.4)
    assert s["kernel_ms"] == pytest.approx((300 + 50 + 300 + 50 + 200) / 2 / 1e3)
    assert s["kernels_per_step"] == 2.5 and s["mean_kernel_us"] == pytest.approx(180.0)
    assert list(s["by_kind"]) == ["convolution / matmul", profiling.OTHER, "reduction"]  # by time
    assert s["by_kind"]["convolution / matmul"] == pytest.approx({"ms": 0.3, "kernels": 1.0, "fraction": 600 / 900})
    assert s["by_kind"]["reduction"]["kernels"] == 1.0
    assert s["top"] == [{"name": conv, "ms": pytest.approx(0.3), "kernels": 1.0},
                        {"name": "loop_add_fusion", "ms": pytest.approx(0.1), "kernels": 0.5}]
    assert s["top_layers"] == [{"name": "inception_3a forward", "ms": pytest.approx(0.3), "kernels": 1.0},
                               {"name": "(no layer)", "ms": pytest.approx(0.1), "kernels": 0.5}]
    text = profiling.table(s)
    assert "wall 1.00 ms (untraced), device busy 0.40 ms (40%), 2 kernels of 180.0 us" in text and conv in text
    assert "inception_3a forward" in text


@pytest.mark.parametrize("name_stack, expected", [
    ("jit(train_step)/transpose(jvp(BNInception))/inception_3a/3x3/Conv_0/conv_general_dilated", "inception_3a backward"),
    ("jit(train_step)/jvp(BNInception)/stem_7x7_depthwise/conv_general_dilated", "stem_7x7_depthwise forward"),
    ("jit(train_step)/jvp(BNInception)", "(no layer)"),
    ("jit(train_step)/jvp(BNInception)/mul", "(no layer)"),
    ("jit(train_step)", "(no layer)"),
    (None, "(unnamed)"),
])
def test_layer_scope_of_a_name_stack(name_stack, expected):
    assert profiling.layer_scope(name_stack) == expected


@pytest.mark.parametrize("name, expected", [
    ("sm90_xmma_wgrad_implicit_gemm_indexed_bf16", "convolution / matmul"),
    ("cutlass_80_tensorop_s1688gemm_128x128", "convolution / matmul"),
    ("input_reduce_fusion_12", "reduction"),
    ("transpose_fusion_2", "transpose / copy"),
    ("Memset (Device)", "memcpy / memset"),
    ("loop_multiply_fusion_7", profiling.OTHER),
])
def test_kind_by_kernel_name(name, expected):
    assert profiling.kind(name) == expected


def test_bad_summaries_are_refused():
    with pytest.raises(ValueError, match="steps=0"):
        profiling.summarise([profiling.Kernel("k", 0.0, 1.0, "(unnamed)")], steps=0, wall_seconds_per_step=1.0)
    with pytest.raises(ValueError, match="no device kernels"):
        profiling.summarise([], steps=1, wall_seconds_per_step=1.0)


def test_profile_step_on_a_cpu_says_why_in_one_line_before_compiling(tmp_path):
    # Without TensorFlow, as on the GPU image: the flags and config parse, then the device is refused.
    output = tmp_path / "profile.json"
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, "scripts/dev/profile_step.py", "--config=configs/bn_x30.py:tiny,synthetic",
         f"--output={output}"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: ValueError: profile_step.py needs a GPU; this host's first device is 'cpu' (platform 'cpu'). "
        "(--verbose shows the traceback)"]
    assert result.stdout == "" and not output.exists()


def test_profile_step_refuses_an_output_folder_that_does_not_exist(tmp_path):
    output = tmp_path / "absent" / "profile.json"
    result = subprocess.run(
        [sys.executable, "scripts/dev/profile_step.py", "--config=configs/bn_x30.py:tiny,synthetic", f"--output={output}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: ValueError: --output={output}: the folder {output.parent} does not exist. (--verbose shows the traceback)"]
    assert not output.parent.exists()
