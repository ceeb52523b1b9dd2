"""Test set-up: 8 fake CPU devices, and the location of ../shared/data."""

import os

# Must happen before JAX initialises its backend: every test sees 8 CPU devices. XLA:CPU's backend
# optimisations and the threefry PRNG dominate compile time on the tiny test networks; tests need neither.
# (Not XLA:CPU's older fusion emitters: they compile the tiny training step in half the time, but bfloat16
# training with them departs from float32 well past test_pod's tolerance, 2026-11-27; users run the newer.)
# The 8 devices' collectives meet in one process; on a 2-core machine running two test workers, a device's
# thread can reach an all-reduce long after the others, and XLA:CPU aborts a collective it thinks is stuck:
# the tests give it 10 minutes instead of XLA's default and warn after 2, so only a real deadlock fails. (The
# CI aborts of 2026-11-28 were one: too many programs in flight, fixed by parallel.DispatchPacer; see
# docs/development.md.)
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    " --xla_cpu_collective_call_warn_stuck_timeout_seconds=120 --xla_cpu_collective_call_terminate_timeout_seconds=600"
    " --xla_cpu_collective_timeout_seconds=600"
)
os.environ.setdefault("JAX_DEFAULT_PRNG_IMPL", "rbg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import atexit  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# One persistent compilation cache per test session: the many subprocess runs (resume, pods, the
# command-line tools) compile the same tiny programs again and again. The process that imports this file
# first (pytest-xdist's controller, or pytest alone) creates the folder and removes it at exit; each xdist
# worker inherits it and uses a subfolder of its own (JAX writes an entry without a lock, so another process
# reading it meanwhile would see half a file), which the worker's subprocesses inherit in turn. The key
# covers the program, XLA_FLAGS and the devices, so a hit is the same executable.
# Every program is cached, however fast it compiled: a tiny run compiles many small programs besides its steps.
# JAX_COMPILATION_CACHE_DIR= (empty) runs without it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="bn_inception_test_jax_cache_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
if os.environ["JAX_COMPILATION_CACHE_DIR"] and "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
        os.environ["JAX_COMPILATION_CACHE_DIR"], os.environ["PYTEST_XDIST_WORKER"]
    )
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> pathlib.Path:
    """../shared/data; skips where it is absent, fails instead when BN_INCEPTION_REQUIRE_SHARED_DATA=1 (CI)."""
    if not SHARED_DATA.is_dir():
        message = f"real data folder {SHARED_DATA} is absent (it sits beside the repository in CI)"
        if os.environ.get("BN_INCEPTION_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> pathlib.Path:
    """A generated folder of JPEGs, 4 classes of 64 training and 9 validation images, one per test module."""
    from tests.fixtures import write_image_folder  # TensorFlow, imported only by the tests that need it

    return write_image_folder(tmp_path_factory.mktemp("images"), {"train": 64, "val": 9})
