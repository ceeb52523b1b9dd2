"""Test set-up: 8 fake CPU devices, and the location of ../shared/data."""

import os

# Must happen before JAX initialises its backend: every test sees 8 CPU devices. XLA:CPU's backend
# optimisations and the threefry PRNG dominate compile time on the tiny test networks; tests need neither.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
os.environ.setdefault("JAX_DEFAULT_PRNG_IMPL", "rbg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402

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
