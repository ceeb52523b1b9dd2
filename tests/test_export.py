"""The folded inference network (paper section 3.1) and the SavedModel export, loaded with TensorFlow alone."""

import functools
import json
import re
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bn_inception import evaluation, folding, input_pipeline, models, train
from configs import bn_x30, ensemble, inception
from tests.fixtures import write_image_folder
from tests.variables import jit_apply, random_variables
from tests.test_train import REPO, _env, tiny_config

FOLD_CONFIG = ml_collections.ConfigDict({"model_name": "bn_inception", "model": {"bn_epsilon": 1e-3}})


def _bn_layer_paths(params):
    return [path[:-2] for path in flax.traverse_util.flatten_dict(params) if path[-2:] == (folding.BN, "scale")]


@pytest.mark.parametrize("kwargs, size", [
    ({}, 32),  # per feature map everywhere, separable stem (BN after the pointwise conv)
    ({"separable_stem": False}, 32),  # the plain 7x7 stem
    ({"per_activation_bn_blocks": ("5a", "5b")}, 64),  # per activation in 5a/5b: 2x2 positions there at 64px
], ids=["per_feature_map", "plain_stem", "per_activation_5a_5b"])
def test_folded_logits_equal_the_bn_networks_inference_logits_in_float64(kwargs, size):
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, size, size, 3)))
        net = models.BNInception(num_classes=5, width_multiplier=0.125, bn_epsilon=1e-3, dtype=jnp.float64, **kwargs)
        variables = random_variables(net, x, seed=1)
        folded = folding.fold_batch_norm(variables, FOLD_CONFIG)
        folded_net = net.clone(folded=True)
        folding.check_folded_shapes(folded_net, folded, size)
        assert set(jax.eval_shape(functools.partial(folded_net.init, train=False), jax.random.key(0), x)) == {"params"}
        expected = jit_apply(net, variables, x)
        logits = jit_apply(folded_net, folded, x)
        assert float(jnp.max(jnp.abs(logits - expected)) / jnp.max(jnp.abs(expected))) < 1e-10

    flat = flax.traverse_util.flatten_dict(folded["params"])
    units = _bn_layer_paths(variables["params"])
    per_activation = [u for u in units if u[0] in ("inception_5a", "inception_5b")] if kwargs.get("per_activation_bn_blocks") else []
    for unit in units:
        if unit in per_activation:  # a per-position affine map, the conv without bias
            assert flat[unit + (folding.FOLDED_BN, "scale")].shape[:2] == (2, 2)
            assert unit + (folding.CONV, "bias") not in flat
        else:  # into the convolution: kernel and a bias
            assert unit + (folding.CONV, "bias") in flat and unit + (folding.FOLDED_BN, "scale") not in flat
    assert not any(folding.BN in path for path in flat)
    assert len(per_activation) == (2 * 7 if per_activation else 0)  # 5a and 5b have seven conv units each


def test_a_folded_kernel_is_the_paper_formula_per_output_channel():
    # One unit by hand: kernel * gamma/sqrt(Var+eps) on the output axis, bias beta - gamma E/sqrt(Var+eps).
    rng = np.random.default_rng(2)
    kernel, gamma, beta = rng.normal(size=(3, 3, 4, 5)), rng.uniform(0.5, 2, 5), rng.normal(size=5)
    mean, var = rng.normal(size=5), rng.uniform(0.1, 3, 5)
    variables = {"params": {"unit": {"Conv_0": {"kernel": kernel}, "BatchNorm_0": {"scale": gamma, "bias": beta}},
                            "classifier": {"kernel": np.ones((5, 2)), "bias": np.zeros(2)}},
                 "batch_stats": {"unit": {"BatchNorm_0": {"mean": mean, "var": var}}}}
    with jax.enable_x64(True):
        folded = folding.fold_batch_norm(variables, FOLD_CONFIG)["params"]
    assert set(folded["unit"]) == {"Conv_0"} and set(folded["unit"]["Conv_0"]) == {"kernel", "bias"}
    for k in range(5):
        s = gamma[k] / np.sqrt(var[k] + 1e-3)
        np.testing.assert_allclose(folded["unit"]["Conv_0"]["kernel"][..., k], kernel[..., k] * s, rtol=1e-14)
        np.testing.assert_allclose(folded["unit"]["Conv_0"]["bias"][k], beta[k] - s * mean[k], rtol=1e-14)
    np.testing.assert_array_equal(folded["classifier"]["kernel"], variables["params"]["classifier"]["kernel"])


@pytest.mark.parametrize("member", [None, 4], ids=["bn_x30", "ensemble_member_4_per_activation"])
def test_full_size_folded_network_in_float32_and_its_parameter_count(member):
    config = bn_x30.get_config() if member is None else ensemble.get_config(f"member={member}")
    net = train.create_model(config, None).clone(lowering="xla")
    x = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (2, 224, 224, 3)), jnp.float32)
    variables = random_variables(net, x, seed=4)
    folded = folding.fold_batch_norm(variables, config)
    expected = jit_apply(net, variables, x)
    logits = jit_apply(net.clone(folded=True), folded, x)
    assert float(jnp.max(jnp.abs(logits - expected)) / jnp.max(jnp.abs(expected))) < 1e-4

    count = lambda tree: sum(int(v.size) for v in jax.tree.leaves(tree))  # noqa: E731
    flat = flax.traverse_util.flatten_dict(variables["params"])
    gammas = [flat[unit + (folding.BN, "scale")] for unit in _bn_layer_paths(variables["params"])]
    # Per feature map, gamma and beta (2 per channel) become one conv bias per channel; per activation, gamma
    # and beta (H, W, C) become a scale and a bias of the same shape.
    assert count(folded) == count(variables["params"]) - sum(int(g.size) for g in gammas if g.ndim == 1)
    assert sum(g.ndim == 3 for g in gammas) == (14 if member else 0)
    if member is not None:
        return
    assert count(folded) == 11_268_512
    reference = (REPO / "docs" / "reference.md").read_text()  # where the manual gives both counts
    assert "**Parameter count: 11,278,528**" in reference and "11,268,512" in reference
    assert "11,268,512" in (REPO / "README.md").read_text()


def test_a_network_without_bn_folds_to_itself_and_a_folded_network_refuses_to_train():
    config = inception.get_config("tiny")
    net = train.create_model(config, None)
    x = jnp.zeros((2, 32, 32, 3))
    variables = random_variables(net, x, seed=5)
    folded = folding.fold_batch_norm(variables, config)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), folded["params"], variables["params"]))
    with pytest.raises(ValueError, match="only infers"):
        jit_apply(net.clone(folded=True), folded, x, train=True)
    with pytest.raises(ValueError, match="model_name='mnist_mlp'"):
        folding.fold_batch_norm(variables, ml_collections.ConfigDict({"model_name": "mnist_mlp"}))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    data = write_image_folder(tmp_path_factory.mktemp("images"), {"train": 16, "val": 9})
    workdir = tmp_path_factory.mktemp("run")
    config = tiny_config(data, num_train_steps=6, eval_every_steps=6, checkpoint_every_steps=6, log_every_steps=6)
    train.train_and_evaluate(config, str(workdir))
    return workdir


def _export(workdir, output, *extra):
    command = [sys.executable, "scripts/export.py", f"--workdir={workdir}", f"--output={output}", *extra]
    return subprocess.run(command, cwd=REPO, env=_env(1), capture_output=True, text=True)


# Run by a fresh interpreter that cannot import JAX, flax or this project: TensorFlow and numpy alone.
TF_ONLY_LOADER = """
import sys
for name in ("jax", "jaxlib", "flax", "bn_inception", "configs"):
    sys.modules[name] = None
import numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
np.save(sys.argv[3], serve(images=tf.constant(np.load(sys.argv[2])))["probabilities"].numpy())
"""


def test_export_loads_with_tensorflow_alone_and_agrees_with_evaluate(trained_run, tmp_path):
    workdir = trained_run
    result = _export(workdir, tmp_path / "model", "--recalibrate_batches=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"Exported .* step 6 \(\d+ BN layers folded, Algorithm 2 from 2 training batches", result.stdout)
    info = json.loads((tmp_path / "model" / "inference.json").read_text())
    assert info["input"]["shape"] == [None, 32, 32, 3] and info["input"]["dtype"] == "uint8"
    assert [c["id"] for c in info["classes"]] == [f"class_{k}" for k in range(4)]
    assert info["source"]["step"] == 6 and info["output"]["shape"] == [None, 4]

    # The validation images as the evaluation pipeline gives them, and the BN network's probabilities.
    member = evaluation.load_member(str(workdir))
    evaluation.recalibrate(member, 2)
    config = member.config
    source = input_pipeline.make_source(config, config.eval_split, 0, 1, block=16, classes=member.class_names)
    batches = list(input_pipeline.eval_batches(source, input_pipeline.InputConfig.from_config(config), 16, 1))
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches]).astype(bool)
    logits = member.model.apply(member.variables, images.astype(np.float32) * (2 / 255) - 1, train=False)
    expected = np.asarray(jax.nn.softmax(logits, axis=-1))
    np.save(tmp_path / "images.npy", images)

    loaded = subprocess.run([sys.executable, "-I", "-c", TF_ONLY_LOADER, str(tmp_path / "model"), str(tmp_path / "images.npy"),
                             str(tmp_path / "probabilities.npy")], cwd=tmp_path, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    probabilities = np.load(tmp_path / "probabilities.npy")
    assert probabilities.shape == (len(images), 4)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)

    evaluated = subprocess.run([sys.executable, "scripts/evaluate.py", f"--workdir={workdir}", "--crops=1", "--batch_size=16",
                                "--recalibrate_batches=2", f"--output={tmp_path / 'evaluation.json'}"],
                               cwd=REPO, env=_env(1), capture_output=True, text=True)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads((tmp_path / "evaluation.json").read_text())
    top1 = np.mean(probabilities[mask].argmax(-1) == labels[mask])
    assert results["num_examples"] == mask.sum() == 36
    assert top1 == pytest.approx(1 - results["top1_error"], abs=1e-9)


def test_export_refuses_bad_input_before_writing(trained_run, tmp_path):
    workdir = trained_run
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    result = _export(workdir, existing)
    assert result.returncode == 1 and "exists; choose another directory or pass --overwrite" in result.stderr
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]

    empty = tmp_path / "no_checkpoints"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "config.json").write_text((workdir / "config.json").read_text())
    result = _export(empty, tmp_path / "out")
    assert result.returncode == 1 and "holds no checkpoint" in result.stderr and not (tmp_path / "out").exists()

    result = _export(workdir, tmp_path / "out", "--format=onnx")
    assert result.returncode == 2 and "--format=onnx" in result.stderr and "savedmodel" in result.stderr

    mnist = tmp_path / "mnist_run"
    mnist.mkdir()
    (mnist / "config.json").write_text(json.dumps(json.loads((workdir / "config.json").read_text()) | {"model_name": "mnist_mlp"}))
    result = _export(mnist, tmp_path / "out")
    assert result.returncode == 1 and "model_name='mnist_mlp'" in result.stderr and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial*"))

    result = _export(workdir, existing, "--overwrite")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (existing / "saved_model.pb").exists() and not (existing / "keep.txt").exists()
