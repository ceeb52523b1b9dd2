"""Evaluation sums against numpy: top-k hits under a mask, and tree sums that stay on the devices."""

import os
import subprocess
import sys

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from bn_inception import metrics
from tests.test_train import REPO


def test_top_k_hits_match_a_numpy_ranking_over_the_unmasked_examples():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 9)).astype(np.float32)
    labels = rng.integers(0, 9, size=40)
    mask = (rng.random(40) < 0.7).astype(np.float32)
    ranked = np.argsort(-scores, axis=1)
    hits = metrics.top_k_hits(scores, labels, mask)
    assert float(hits["top1"]) == np.sum((ranked[:, 0] == labels) * mask)
    assert float(hits["top5"]) == np.sum(np.any(ranked[:, :5] == labels[:, None], axis=1) * mask)
    assert float(hits["count"]) == mask.sum()
    assert 0 < float(hits["top1"]) < float(hits["top5"]) < float(hits["count"])  # the example tells them apart


def test_under_five_classes_every_unmasked_example_is_a_top5_hit():
    hits = metrics.top_k_hits(np.eye(3, dtype=np.float32), np.array([0, 2, 2]), np.array([1.0, 1.0, 0.0]))
    assert (float(hits["top1"]), float(hits["top5"]), float(hits["count"])) == (1.0, 2.0, 2.0)


def test_sum_trees_adds_leaf_by_leaf_and_keeps_the_sum_on_the_devices():
    sharding = NamedSharding(jax.sharding.Mesh(np.array(jax.devices()), ("data",)), P("data"))
    host = [{"a": np.arange(8.0) * k, "b": {"c": np.full(8, k, np.float32)}} for k in (1, 2, 3)]
    total, count = metrics.sum_trees(jax.device_put(tree, sharding) for tree in host)
    assert count == 3
    np.testing.assert_array_equal(np.asarray(total["a"]), np.arange(8.0) * 6)
    np.testing.assert_array_equal(np.asarray(total["b"]["c"]), np.full(8, 6.0))
    assert total["a"].sharding == sharding
    assert metrics.sum_trees(iter([])) == (None, 0)


def test_summing_an_all_reduce_over_many_batches_on_8_in_process_cpu_devices_does_not_deadlock():
    # Issue 36's CI abort: XLA:CPU admits 32 programs in flight per device; with more dispatched ahead and
    # all-reduces among them, the in-process devices deadlock until XLA aborts (SIGABRT). Algorithm 2's sum
    # of BN statistics dispatched one addition per leaf after each batch's all-reduce. Here 40 batches of a
    # 24-leaf statistic (each from an all-reduce over the batch) are summed with XLA's stuck timeout at 30 s:
    # before the fix this deadlocked within seconds (docs/development.md); the sum is checked against numpy.
    code = (
        "import sys; sys.path.insert(0, '.')\n"
        "import jax, jax.numpy as jnp, numpy as np\n"
        "from jax.sharding import Mesh, NamedSharding, PartitionSpec as P\n"
        "from bn_inception import metrics\n"
        "mesh = Mesh(np.array(jax.devices()), ('data',))\n"
        "stats = jax.jit(lambda x: {f'layer{k}': jnp.sum(x * k, axis=0) for k in range(24)},\n"
        "                out_shardings=NamedSharding(mesh, P()))\n"
        "batches = [np.random.default_rng(b).random((64, 128), np.float32) for b in range(40)]\n"
        "for _ in range(5):\n"
        "    total, n = metrics.sum_trees(stats(jax.device_put(b, NamedSharding(mesh, P('data')))) for b in batches)\n"
        "want = sum(b.astype(np.float64).sum(axis=0) for b in batches) * 23\n"
        "np.testing.assert_allclose(np.asarray(total['layer23']), want, rtol=1e-4)\n"
        "print(jax.device_count(), n)\n"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8 "
               "--xla_cpu_collective_call_warn_stuck_timeout_seconds=5 --xla_cpu_collective_call_terminate_timeout_seconds=30")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "8 40\n" and "may be stuck" not in result.stderr
