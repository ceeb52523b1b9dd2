"""Section 3.3's figures (bn_inception/gradient_stats.py) against float64 computations of their definitions,
the training step with them against the step without, and their stage summaries in a tiny run's events."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from bn_inception import events, gradient_stats, models, synthetic_data, train
from tests.test_train import tiny_config


@pytest.fixture(scope="module")
def tiny_setup():
    config = tiny_config("unused", synthetic_data=True)
    return config, train.setup(config, num_train_examples=320, bn_axis_name=None)


def _norm(x):
    return float(np.sqrt(np.sum(np.square(np.asarray(x, np.float64)))))


def _leaf(tree, path):
    for key in path:
        tree = tree[key]
    return np.asarray(tree, np.float64)


def test_network_order_lists_every_kernel_in_the_order_the_forward_pass_applies_them(tiny_setup):
    config, built = tiny_setup
    order = gradient_stats.network_order(built.model, config.image_size)
    params = built.initial_state().params
    assert sorted(order) == sorted(gradient_stats.kernel_paths(params))
    names = ["/".join(path[:-1]) for path in order]
    # The stem (Figure 5's order), then each block's branches as `models.Inception` applies them, then the classifier.
    assert names[:4] == ["stem_7x7_depthwise", "stem_7x7_pointwise/Conv_0", "stem_1x1/Conv_0", "stem_3x3/Conv_0"]
    assert names[4:10] == [f"inception_3a/{b}/Conv_0" for b in ("1x1", "3x3_reduce", "3x3", "double_3x3_reduce",
                                                               "double_3x3_a", "double_3x3_b")]
    assert names[-1] == "classifier"
    stages = [gradient_stats.stage_of(p) for p in order]
    # Per block: 5 convolutions (3x3 and double 3x3 branches), plus its 1x1 and pool projection where Figure 5 has them.
    per_block = {n: 5 + bool(b.conv1x1) + bool(b.pool_proj) for n, b in models.INCEPTION_BLOCKS.items()}
    assert stages == (["stem"] * 4 + ["3x"] * (per_block["3a"] + per_block["3c"])
                      + ["5x"] * (per_block["5a"] + per_block["5b"]) + ["classifier"])
    assert {gradient_stats.stage_of(p) for p in order} == {"stem", "3x", "5x", "classifier"}  # :tiny has no 4x block


def test_layer_and_stage_figures_match_their_definitions_in_float64(tiny_setup):
    _, built = tiny_setup
    old = built.initial_state().params
    leaves, treedef = jax.tree_util.tree_flatten(old)
    keys = jax.random.split(jax.random.key(3), 2 * len(leaves))
    grads = jax.tree_util.tree_unflatten(treedef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    new = jax.tree_util.tree_unflatten(
        treedef, [x + 0.01 * jax.random.normal(k, x.shape) for k, x in zip(keys[len(leaves):], leaves)])
    paths = gradient_stats.kernel_paths(old)
    layers = jax.jit(functools.partial(gradient_stats.layer_figures, paths=paths))(old, new, grads)
    for i, path in enumerate(paths):
        w, g, w1 = _leaf(old, path), _leaf(grads, path), _leaf(new, path)
        np.testing.assert_allclose(layers["weight_norm"][i], _norm(w), rtol=1e-5)
        np.testing.assert_allclose(layers["grad_to_weight"][i], _norm(g) / _norm(w), rtol=1e-5)
        np.testing.assert_allclose(layers["angular_update"][i], _norm(w1 - w) / _norm(w), rtol=1e-4)
    stages = jax.jit(gradient_stats.stage_scalars)(old, new, grads)
    for stage in ("stem", "3x", "5x", "classifier"):
        mine = [p for p in paths if gradient_stats.stage_of(p) == stage]
        weight = np.sqrt(sum(_norm(_leaf(old, p)) ** 2 for p in mine))
        grad = np.sqrt(sum(_norm(_leaf(grads, p)) ** 2 for p in mine))
        change = np.sqrt(sum(_norm(_leaf(new, p) - _leaf(old, p)) ** 2 for p in mine))
        np.testing.assert_allclose(stages[f"weight_norm/{stage}"], weight, rtol=1e-5)
        np.testing.assert_allclose(stages[f"grad_to_weight/{stage}"], grad / weight, rtol=1e-5)
        np.testing.assert_allclose(stages[f"angular_update/{stage}"], change / weight, rtol=1e-4)
    assert "weight_norm/4x" not in stages and len(stages) == 12


def test_the_training_step_computes_the_same_weights_with_the_stage_scalars(tiny_setup):
    config, built = tiny_setup
    batch = next(synthetic_data.synthetic_batches(config.image_size, config.num_classes, config.global_batch_size, 0))
    states = []
    for with_scalars in (False, True):
        step = jax.jit(functools.partial(
            train.train_step, model=built.model, tx=built.tx, schedule=built.schedule,
            dropout_key=jax.random.key(1), polyak_decay=0.0, axis_name=None, stage_scalars=with_scalars))
        state = built.initial_state()
        for _ in range(2):
            state, metrics = step(state, batch)
        states.append(state)
        assert ("weight_norm/stem" in metrics) == with_scalars
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise


def test_a_tiny_run_logs_the_stage_summaries_of_its_steps(tmp_path):
    # A log and a checkpoint at every step: the logged norms and updates against the saved weights, in float64.
    config = tiny_config("unused", synthetic_data=True, num_train_steps=2, log_every_steps=1, eval_every_steps=2,
                         checkpoint_every_steps=1, keep_checkpoints=3)
    train.train_and_evaluate(config, str(tmp_path))
    scalars = events.read_scalars(tmp_path)
    stages = ("stem", "3x", "5x", "classifier")
    assert {f"train/{f}/{s}" for f in gradient_stats.SCALARS for s in stages} <= set(scalars)
    built = train.setup(config, num_train_examples=config.global_batch_size * 1000, bn_axis_name=None)
    weights = [built.initial_state().params] + [
        ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / str(s) / "default")["params"] for s in (1, 2)]
    paths = gradient_stats.kernel_paths(weights[0])
    for stage in stages:
        mine = [p for p in paths if gradient_stats.stage_of(p) == stage]
        for step in (1, 2):
            old, new = weights[step - 1], weights[step]
            norm = np.sqrt(sum(_norm(_leaf(old, p)) ** 2 for p in mine))
            change = np.sqrt(sum(_norm(_leaf(new, p) - _leaf(old, p)) ** 2 for p in mine))
            logged = {f: dict(scalars[f"train/{f}/{stage}"])[step] for f in ("weight_norm", "angular_update")}
            np.testing.assert_allclose(logged["weight_norm"], norm, rtol=1e-5)
            np.testing.assert_allclose(logged["angular_update"], change / norm, rtol=1e-3)
            assert dict(scalars[f"train/grad_to_weight/{stage}"])[step] > 0
