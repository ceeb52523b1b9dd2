"""The CPU lowerings compute the same values and gradients as lax's convolution and flax's max pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from bn_inception import lowering, models, train
from configs import bn_x30, default
from tests.variables import random_variables

NHWC = ("NHWC", "HWIO", "NHWC")


def _max_rel_error(a, b):
    return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-30)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("kernel, stride, groups, cin, cout", [
    (1, 1, 1, 6, 5),  # a matrix product
    (3, 1, 1, 4, 7),  # XLA forward, per-tap weight gradient
    (3, 2, 1, 4, 6),  # stride 2 with SAME's uneven padding
    (7, 2, 3, 3, 24),  # the stem: depthwise with multiplier 8
    (1, 2, 1, 4, 3),  # a strided 1x1 is not a matrix product: per-tap path
])
def test_conv_values_and_gradients_match_lax_in_float64(kernel, stride, groups, cin, cout):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((2, 9, 11, cin)))
        w = jnp.asarray(rng.standard_normal((kernel, kernel, cin // groups, cout)))
        probe = jnp.asarray(rng.standard_normal((2, -(-9 // stride), -(-11 // stride), cout)))

        def loss(conv):
            return lambda x, w: jnp.sum(conv(x, w, (stride, stride), "SAME", dimension_numbers=NHWC, feature_group_count=groups) * probe)

        ours = jax.value_and_grad(loss(lowering.matmul_friendly_conv), argnums=(0, 1))(x, w)
        reference = jax.value_and_grad(loss(jax.lax.conv_general_dilated), argnums=(0, 1))(x, w)
        assert _max_rel_error(ours, reference) < 1e-12


def test_max_pool_gradient_goes_to_one_maximum_per_window():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        # Distinct values: the gradient equals flax's exactly.
        x = jnp.asarray(rng.permutation(2 * 9 * 9 * 3).reshape(2, 9, 9, 3).astype(np.float64))
        probe = jnp.asarray(rng.standard_normal((2, 5, 5, 3)))
        for pool in (lowering.max_pool, lambda v, w, strides: nn.max_pool(v, w, strides=strides, padding="SAME")):
            np.testing.assert_array_equal(pool(x, (3, 3), (2, 2)), nn.max_pool(x, (3, 3), (2, 2), padding="SAME"))
        ours = jax.grad(lambda v: jnp.sum(lowering.max_pool(v, (3, 3), (2, 2)) * probe))(x)
        reference = jax.grad(lambda v: jnp.sum(nn.max_pool(v, (3, 3), (2, 2), padding="SAME") * probe))(x)
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)
    # Ties (a constant image): every window's gradient is given once, so the total is conserved.
    ones = jnp.ones((1, 8, 8, 1))
    g = jax.grad(lambda v: jnp.sum(lowering.max_pool(v, (3, 3), (2, 2))))(ones)
    assert float(g.sum()) == 16.0 and float(g.max()) <= 4.0


def test_network_gradients_agree_between_lowerings():
    # Without BN: in float32, BN over 4 examples at 1x1 resolution amplifies summation-order differences
    # to ~1e-2 in this tiny net; the float64 tests above check each lowering exactly.
    x = jnp.asarray(np.random.default_rng(2).standard_normal((4, 32, 32, 3)), jnp.float32)
    nets = {name: models.BNInception(num_classes=5, width_multiplier=0.0625, use_bn=False, blocks=default.TINY_BLOCKS,
                                     lowering=name) for name in ("xla", "cpu")}
    variables = random_variables(nets["xla"], x, seed=0)

    def grads(net):
        def loss(params):
            logits, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
            return jnp.sum(logits * jnp.arange(5.0))
        return jax.jit(jax.grad(loss))(variables["params"])

    assert _max_rel_error(grads(nets["cpu"]), grads(nets["xla"])) < 1e-4
    with pytest.raises(ValueError, match="lowering='gpu'"):
        models.BNInception(num_classes=5, width_multiplier=0.125, lowering="gpu").init(jax.random.key(0), x, train=False)


def test_bn_relu_network_gradients_agree_between_lowerings_in_float64():
    # The BN-ReLU network (groups of BN statistics, ReLU ties in max pooling; one block of each kind, as
    # `:tiny`) in float64: the CPU lowerings' hand-written gradients equal XLA's autodiff of lax's
    # convolution and flax's pooling.
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(3).standard_normal((8, 32, 32, 3)))
        nets = {name: models.BNInception(num_classes=5, width_multiplier=0.125, bn_group_size=4, lowering=name,
                                         blocks=default.TINY_BLOCKS, dtype=jnp.float64) for name in ("xla", "cpu")}
        variables = random_variables(nets["xla"], x, seed=0)

        def grads(net):
            def loss(params):
                logits, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
                return jnp.sum(jax.nn.log_softmax(logits)[:, 2])
            return jax.jit(jax.grad(loss))(variables["params"])

        assert _max_rel_error(grads(nets["cpu"]), grads(nets["xla"])) < 1e-10


@pytest.mark.parametrize("lowering", ["xla", "cpu"])
def test_precision_reaches_every_convolution_and_matrix_product_of_the_gradient(lowering):
    # Known count, read from the lowered program: with precision="highest" every convolution and dot_general
    # of the training gradient (forward, input and weight gradients, the CPU lowering's hand-written ones
    # too) asks for HIGHEST; with "default" none asks for anything, so jax's default applies.
    config = bn_x30.get_config("tiny")
    config.model.lowering = lowering
    x = jnp.ones((4, 32, 32, 3))
    counts = {}
    for precision in ("default", "highest"):
        config.model.precision = precision
        net = train.create_model(config, None)
        variables = jax.eval_shape(lambda: net.init(jax.random.key(0), x, train=False))

        def loss(params, variables):
            logits, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"],
                                  rngs={"dropout": jax.random.key(1)})
            return jnp.sum(logits)

        text = jax.jit(jax.grad(loss)).lower(variables["params"], variables).as_text()
        ops = [line for line in text.splitlines() if "stablehlo.convolution" in line or "stablehlo.dot_general" in line]
        counts[precision] = (len(ops), sum("HIGHEST" in line for line in ops))
    total = counts["default"][0]
    assert total > 30 and counts == {"default": (total, 0), "highest": (total, total)}


def test_precision_changes_nothing_on_a_cpu():
    # The reduced-scale configs ask for "highest" so that a GPU computes what a CPU computes; on the CPU
    # itself the training gradient is bitwise the same either way (runs before and after the setting agree).
    config = bn_x30.get_config("tiny")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
    grads = {}
    for precision in ("default", "highest"):
        config.model.precision = precision
        net = train.create_model(config, None)
        variables = random_variables(net, x, seed=0)

        def loss(params):
            logits, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"],
                                  rngs={"dropout": jax.random.key(1)})
            return jnp.sum(logits ** 2)

        grads[precision] = jax.jit(jax.grad(loss))(variables["params"])
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), grads["default"], grads["highest"]))
    with pytest.raises(ValueError, match=r"precision='tf32'; expected one of \('default', 'high', 'highest'\)"):
        models.BNInception(num_classes=5, width_multiplier=0.125, precision="tf32").init(jax.random.key(0), x, train=False)
