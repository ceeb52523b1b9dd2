"""BN-Inception against the paper's table (shapes and a hand-worked parameter count), and the MNIST net."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bn_inception.models import BNInception, Inception, MnistMLP, local_response_norm
from configs import default

# Paper's table (PAPER.md section 3): per-block output shapes of the default network at 224x224.
EXPECTED_BLOCK_SHAPES = {
    "3a": (28, 28, 256),
    "3b": (28, 28, 320),
    "3c": (14, 14, 576),
    "4a": (14, 14, 576),
    "4b": (14, 14, 576),
    "4c": (14, 14, 608),
    "4d": (14, 14, 608),
    "4e": (7, 7, 1056),
    "5a": (7, 7, 1024),
    "5b": (7, 7, 1024),
}


def count_parameters_by_hand(num_classes=1000):
    """Works the count out from the table: conv k*k*cin*cout (no bias) + BN gamma, beta per channel."""

    def conv(k, cin, cout):
        return k * k * cin * cout + 2 * cout

    total = 7 * 7 * 1 * 24  # separable stem: depthwise 7x7, 3 -> 24 (multiplier 8), no BN
    total += conv(1, 24, 64) + conv(1, 64, 64) + conv(3, 64, 192)
    rows = [  # (#1x1, #3x3 reduce, #3x3, double reduce, double #3x3, pool proj), as printed
        (64, 64, 64, 64, 96, 32),
        (64, 64, 96, 64, 96, 64),
        (0, 128, 160, 64, 96, 0),
        (224, 64, 96, 96, 128, 128),
        (192, 96, 128, 96, 128, 128),
        (160, 128, 160, 128, 160, 128),
        (96, 128, 192, 160, 192, 128),
        (0, 128, 192, 192, 256, 0),
        (352, 192, 320, 160, 224, 128),
        (352, 192, 320, 192, 224, 128),
    ]
    cin = 192
    for c1, r3, c3, rd, cd, proj in rows:
        total += conv(1, cin, c1) if c1 else 0
        total += conv(1, cin, r3) + conv(3, r3, c3)
        total += conv(1, cin, rd) + conv(3, rd, cd) + conv(3, cd, cd)
        total += conv(1, cin, proj) if proj else 0
        cin = c1 + c3 + cd + (proj if proj else cin)
    return total + cin * num_classes + num_classes


def param_count(params):
    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def test_full_size_block_shapes_and_parameter_count_match_the_table():
    model = BNInception()
    images = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
    assert count_parameters_by_hand() == 11_278_528
    assert param_count(variables["params"]) == 11_278_528

    def forward(v, x):
        return model.apply(v, x, train=False, capture_intermediates=lambda m, _: isinstance(m, Inception))

    logits, state = jax.eval_shape(forward, variables, images)
    assert logits.shape == (2, 1000)
    shapes = {name[len("inception_") :]: out["__call__"][0].shape[1:] for name, out in state["intermediates"].items()}
    assert shapes == EXPECTED_BLOCK_SHAPES


def test_slim_projection_and_plain_stem_options_change_the_count_as_expected():
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)

    def count(model):
        return param_count(jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)["params"])

    default = count(BNInception())
    # Pool projections of 4c/4d: 128 -> 96 (1x1 conv + BN); 4d, 4e and 5a then see 32 fewer input channels.
    slim = count(BNInception(slim_pool_proj=True))
    removed = (
        (576 * 128 - 576 * 96 + 2 * 32)  # 4c projection
        + (608 * 128 - 576 * 96 + 2 * 32)  # 4d projection, on 608 -> 576 inputs
        + 32 * (96 + 128 + 160)  # 4d's other 1x1 convs
        + 32 * (128 + 192)  # 4e's 1x1 convs
        + 32 * (352 + 192 + 160 + 128)  # 5a's 1x1 convs (4e passes 1056 -> 1024 channels through)
    )
    assert default - slim == removed
    plain = count(BNInception(separable_stem=False))
    assert plain - default == (7 * 7 * 3 * 64) - (7 * 7 * 24 + 24 * 64)


def test_inception_baseline_has_conv_biases_and_no_batch_stats():
    model = BNInception(use_bn=False, lrn=True, dropout_rate=0.4)
    variables = jax.eval_shape(
        lambda x: model.init(jax.random.key(0), x, train=False), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    )
    assert "batch_stats" not in variables
    assert "bias" in variables["params"]["inception_3a"]["1x1"]["Conv_0"]


def tiny_model(**kwargs):
    return BNInception(num_classes=5, width_multiplier=0.125, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"use_bn": False, "lrn": True, "dropout_rate": 0.4}, {"activation": "sigmoid", "bn_group_size": 2},
     {"per_activation_bn_blocks": ("5a", "5b"), "dtype": jnp.bfloat16}],
    ids=["bn", "inception_baseline", "sigmoid_groups", "per_activation_bf16"],
)
def test_tiny_network_trains_one_step(kwargs):
    # One block of each kind (as the configs' :tiny): the compile of all ten took most of this test's time.
    model = tiny_model(blocks=default.TINY_BLOCKS, **kwargs)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(4, 32, 32, 3)), jnp.float32)
    labels = jnp.asarray([0, 1, 2, 3])
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))

    def loss_fn(params):
        logits, updates = model.apply(
            {**variables, "params": params}, images, train=True, mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(1)},
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

    (loss, updates), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])
    assert np.isfinite(loss)
    grad_norm = optax.global_norm(grads)
    assert np.isfinite(grad_norm) and grad_norm > 0
    if model.use_bn:
        before = jax.tree.leaves(variables["batch_stats"])
        after = jax.tree.leaves(updates["batch_stats"])
        assert any(not np.allclose(a, b) for a, b in zip(before, after))
    else:
        assert "batch_stats" not in updates


def test_per_activation_blocks_store_statistics_per_position():
    model = tiny_model(per_activation_bn_blocks=("5b",))
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), jnp.zeros((2, 64, 64, 3)))
    assert variables["batch_stats"]["inception_5b"]["1x1"]["BatchNorm_0"]["mean"].shape == (2, 2, 44)
    assert variables["batch_stats"]["inception_5a"]["1x1"]["BatchNorm_0"]["mean"].shape == (44,)
    with pytest.raises(ValueError, match=r"per_activation_bn_blocks has blocks \['6a'\] that the network does not have"):
        tiny_model(per_activation_bn_blocks=("6a",)).init(jax.random.key(0), jnp.zeros((2, 64, 64, 3)), train=False)


def test_a_network_of_some_blocks_runs_them_in_the_table_order():
    def init(model):
        return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), jnp.zeros((2, 32, 32, 3)))

    full, some = init(tiny_model()), init(tiny_model(blocks=("5b", "3a", "3c")))
    assert [k for k in some["params"] if k.startswith("inception_")] == ["inception_3a", "inception_3c", "inception_5b"]
    # 3a follows the stem in both networks: the same parameters. 5b's input is 3c's output at 1/8 width:
    # 160/8 + 96/8 from its two 3x3 branches and 3a's 256/8 passed through its max pool.
    assert jax.tree.map(jnp.shape, some["params"]["inception_3a"]) == jax.tree.map(jnp.shape, full["params"]["inception_3a"])
    assert some["params"]["inception_5b"]["1x1"]["Conv_0"]["kernel"].shape[2] == 20 + 12 + 32
    with pytest.raises(ValueError, match=r"blocks has unknown blocks \['6a'\]"):
        init(tiny_model(blocks=("3a", "6a")))
    with pytest.raises(ValueError, match=r"per_activation_bn_blocks has blocks \['5a'\] that the network does not have"):
        init(tiny_model(blocks=("3a", "5b"), per_activation_bn_blocks=("5a",)))


def test_local_response_norm_matches_caffe_formula():
    x = np.random.default_rng(0).normal(size=(1, 2, 2, 7)).astype(np.float32)
    y = local_response_norm(jnp.asarray(x), size=5, alpha=1e-1, beta=0.75, bias=1.0)
    x64 = x.astype(np.float64)
    expected = np.empty_like(x64)
    for c in range(7):
        window = x64[..., max(0, c - 2) : c + 3]
        expected[..., c] = x64[..., c] / (1.0 + 0.1 / 5 * (window**2).sum(-1)) ** 0.75
    np.testing.assert_allclose(y, expected, rtol=1e-5)


@pytest.mark.parametrize("use_bn", [False, True])
def test_mnist_net_exposes_the_last_hidden_sigmoid_input(use_bn):
    model = MnistMLP(use_bn=use_bn)
    images = jnp.asarray(np.random.default_rng(0).uniform(size=(60, 28, 28)), jnp.float32)
    variables = model.init(jax.random.key(0), images, train=False)
    assert param_count(variables["params"]) == (
        784 * 100 + 100 * 100 * 2 + 100 * 10 + 10 + (3 * 2 * 100 if use_bn else 3 * 100)
    )
    logits, state = model.apply(variables, images, train=True, mutable=["intermediates", "batch_stats"])
    assert logits.shape == (60, 10)
    z = np.asarray(state["intermediates"]["last_hidden_input"])
    assert z.shape == (60, 100)
    if use_bn:  # gamma=1, beta=0 at init: the BN output is normalised over the mini-batch
        np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(z.var(0), 1.0, rtol=1e-2)
