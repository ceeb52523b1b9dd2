"""BatchNorm against the paper's Algorithms 1 and 2 and its closed-form gradients, in float64 numpy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bn_inception.batch_norm import MOMENTS, BatchNorm, population_statistics

EPS = 1e-3


def reference_forward(x, gamma, beta, reduce_axes, eps=EPS):
    """Algorithm 1 in float64: returns y, xhat, mu_B and the biased sigma2_B."""
    x = np.asarray(x, np.float64)
    mu = x.mean(axis=reduce_axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=reduce_axes, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, xhat, mu, var


def init_with_random_affine(module, x, seed=0):
    variables = module.init(jax.random.key(seed), x)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), variables["params"])
    return {**variables, "params": params}


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 5, 6)], ids=["dense", "conv"])
def test_training_forward_is_algorithm_1(shape):
    x = np.random.default_rng(1).normal(3.0, 2.0, size=shape).astype(np.float32)
    bn = BatchNorm(use_running_average=False, epsilon=EPS)
    variables = init_with_random_affine(bn, x)
    y, _ = bn.apply(variables, x, mutable=["batch_stats"])
    gamma, beta = (np.asarray(variables["params"][k], np.float64) for k in ("scale", "bias"))
    expected, *_ = reference_forward(x, gamma, beta, tuple(range(x.ndim - 1)))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_per_activation_normalises_each_position_over_the_batch_only():
    x = np.random.default_rng(2).normal(size=(8, 3, 3, 4)).astype(np.float32)
    bn = BatchNorm(use_running_average=False, per_activation=True, epsilon=EPS)
    variables = init_with_random_affine(bn, x)
    assert variables["params"]["scale"].shape == (3, 3, 4)
    y, _ = bn.apply(variables, x, mutable=["batch_stats"])
    gamma, beta = (np.asarray(variables["params"][k], np.float64) for k in ("scale", "bias"))
    expected, *_ = reference_forward(x, gamma, beta, (0,))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_whole_batch_mode_matches_flax_batch_norm():
    x = np.random.default_rng(3).normal(5.0, 3.0, size=(6, 4, 4, 7)).astype(np.float32)
    ours = BatchNorm(use_running_average=False, epsilon=EPS)
    theirs = nn.BatchNorm(use_running_average=False, epsilon=EPS, use_fast_variance=False)
    variables = ours.init(jax.random.key(0), x)
    np.testing.assert_allclose(
        ours.apply(variables, x, mutable=["batch_stats"])[0],
        theirs.apply(theirs.init(jax.random.key(0), x), x, mutable=["batch_stats"])[0],
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 5, 6)], ids=["dense", "conv"])
def test_autodiff_equals_closed_form_gradients(shape):
    rng = np.random.default_rng(4)
    x = rng.normal(1.0, 2.0, size=shape).astype(np.float32)
    upstream = rng.normal(size=shape)  # dL/dy for L = sum(upstream * y)
    bn = BatchNorm(use_running_average=False, epsilon=EPS)
    variables = init_with_random_affine(bn, x)

    def loss(params, x):
        y, _ = bn.apply({**variables, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(jnp.asarray(upstream, jnp.float32) * y)

    grad_params, grad_x = jax.grad(loss, argnums=(0, 1))(variables["params"], x)

    axes = tuple(range(x.ndim - 1))
    m = np.prod([x.shape[a] for a in axes])  # m' = m*p*q for convolutions
    gamma = np.asarray(variables["params"]["scale"], np.float64)
    _, xhat, _, var = reference_forward(x, gamma, 0.0, axes)
    dxhat = upstream * gamma
    dx = (m * dxhat - dxhat.sum(axes, keepdims=True) - xhat * (dxhat * xhat).sum(axes, keepdims=True)) / (
        m * np.sqrt(var + EPS)
    )
    np.testing.assert_allclose(grad_params["scale"], (upstream * xhat).sum(axes), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad_params["bias"], upstream.sum(axes), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad_x, dx, rtol=1e-4, atol=1e-4)


def test_inference_uses_stored_statistics():
    x = np.random.default_rng(5).normal(size=(3, 2, 2, 4)).astype(np.float32)
    bn = BatchNorm(use_running_average=True, epsilon=EPS)
    variables = init_with_random_affine(bn, x)
    mean, var = np.array([1.0, -2.0, 0.5, 3.0]), np.array([4.0, 0.25, 1.0, 9.0])
    variables = {**variables, "batch_stats": {"mean": jnp.asarray(mean), "var": jnp.asarray(var)}}
    gamma, beta = (np.asarray(variables["params"][k], np.float64) for k in ("scale", "bias"))
    expected = gamma / np.sqrt(var + EPS) * x + (beta - gamma * mean / np.sqrt(var + EPS))
    np.testing.assert_allclose(bn.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_moving_averages_track_mean_and_unbiased_variance():
    x = np.random.default_rng(6).normal(2.0, 3.0, size=(5, 2, 2, 3)).astype(np.float32)
    bn = BatchNorm(use_running_average=False, momentum=0.9)
    variables = bn.init(jax.random.key(0), x)
    _, updates = bn.apply(variables, x, mutable=["batch_stats"])
    m = 5 * 2 * 2
    x64 = x.astype(np.float64).reshape(-1, 3)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * x64.mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        updates["batch_stats"]["var"], 0.9 + 0.1 * x64.var(0) * m / (m - 1), rtol=1e-5
    )


def test_algorithm_2_population_statistics_are_unbiased_averages_over_batches():
    rng = np.random.default_rng(7)
    batches = [rng.normal(1.0, 2.0, size=(4, 3, 3, 2)).astype(np.float32) for _ in range(5)]
    bn = BatchNorm(use_running_average=False)
    variables = bn.init(jax.random.key(0), batches[0])
    stats = population_statistics(lambda v, x: bn.apply(v, x, mutable=[MOMENTS])[1], variables, batches)
    per_batch = [b.astype(np.float64).reshape(-1, 2) for b in batches]
    m = 4 * 3 * 3
    np.testing.assert_allclose(stats["mean"], np.mean([b.mean(0) for b in per_batch], 0), rtol=1e-5)
    np.testing.assert_allclose(
        stats["var"], m / (m - 1) * np.mean([b.var(0) for b in per_batch], 0), rtol=1e-5
    )
    with pytest.raises(ValueError, match="at least one batch"):
        population_statistics(lambda v, x: {}, variables, [])


def test_bfloat16_activations_with_large_mean_keep_accurate_statistics():
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.normal(1e3, 1.0, size=(64, 8, 8, 4)), jnp.bfloat16)
    bn = BatchNorm(use_running_average=False, dtype=jnp.bfloat16)
    variables = bn.init(jax.random.key(0), x)
    y, state = bn.apply(variables, x, mutable=["batch_stats", MOMENTS])
    assert y.dtype == jnp.bfloat16
    x64 = np.asarray(x.astype(jnp.float32), np.float64).reshape(-1, 4)
    np.testing.assert_allclose(state[MOMENTS]["mean"], x64.mean(0), rtol=1e-6)
    np.testing.assert_allclose(state[MOMENTS]["var"], x64.var(0), rtol=1e-3)
    y64 = (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
    np.testing.assert_allclose(np.asarray(y, np.float32).reshape(-1, 4), y64, atol=0.05)


def _apply_train(bn, variables, x):
    return bn.apply(variables, x, mutable=["batch_stats"])[0]


def test_global_statistics_under_jit_with_sharded_batch_equal_one_device():
    x = np.random.default_rng(9).normal(size=(16, 4, 4, 3)).astype(np.float32)
    bn = BatchNorm(use_running_average=False)
    variables = bn.init(jax.random.key(0), x)
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
    y = jax.jit(lambda v, x: _apply_train(bn, v, x))(variables, sharded)
    assert len(y.sharding.device_set) == 8
    np.testing.assert_allclose(y, _apply_train(bn, variables, x), rtol=1e-5, atol=1e-5)


def test_global_statistics_under_pmap_equal_concatenated_batch():
    x = np.random.default_rng(10).normal(size=(16, 4, 4, 3)).astype(np.float32)
    bn = BatchNorm(use_running_average=False, axis_name="batch")
    variables = BatchNorm(use_running_average=False).init(jax.random.key(0), x)
    replicated = jax.tree.map(lambda a: np.broadcast_to(a, (8,) + a.shape), variables)
    y, updates = jax.pmap(lambda v, x: bn.apply(v, x, mutable=["batch_stats"]), axis_name="batch")(
        replicated, x.reshape(8, 2, 4, 4, 3)
    )
    single_y, single_updates = BatchNorm(use_running_average=False).apply(variables, x, mutable=["batch_stats"])
    np.testing.assert_allclose(y.reshape(x.shape), single_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["var"][3], single_updates["batch_stats"]["var"], rtol=1e-5)


@pytest.mark.parametrize("num_devices", [1, 2, 8])
def test_group_statistics_are_per_group_whatever_the_device_count(num_devices):
    group = 4
    scales = np.arange(1, 17)[:, None, None, None]
    x = (np.random.default_rng(11).normal(size=(16, 3, 3, 2)) * scales).astype(np.float32)
    bn = BatchNorm(use_running_average=False, group_size=group, epsilon=EPS)
    variables = init_with_random_affine(bn, x)
    mesh = Mesh(np.array(jax.devices()[:num_devices]), ("data",))
    sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
    y, state = jax.jit(lambda v, x: bn.apply(v, x, mutable=["batch_stats", MOMENTS]))(variables, sharded)
    gamma, beta = (np.asarray(variables["params"][k], np.float64) for k in ("scale", "bias"))
    groups = x.reshape(4, group, 3, 3, 2)
    expected, _, mu, var = reference_forward(groups, gamma, beta, (1, 2, 3))
    np.testing.assert_allclose(y, expected.reshape(x.shape), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(state[MOMENTS]["mean"], mu.mean(0).reshape(2), rtol=1e-5)
    np.testing.assert_allclose(state[MOMENTS]["var"], var.mean(0).reshape(2), rtol=1e-5)


def test_group_size_must_divide_the_batch():
    x = np.zeros((6, 2), np.float32)
    with pytest.raises(ValueError, match="group_size=4 must be a positive divisor of the batch size 6"):
        BatchNorm(use_running_average=False, group_size=4).init(jax.random.key(0), x)
