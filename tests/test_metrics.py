"""Evaluation sums against numpy: top-k hits under a mask, and tree sums that stay on the devices."""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from bn_inception import metrics


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
