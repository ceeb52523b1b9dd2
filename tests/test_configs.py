"""Every ablation config carries the paper's numbers (PAPER.md section 4) and builds its network."""

import importlib
import math

import jax
import jax.numpy as jnp
import pytest

from bn_inception import input_pipeline, parallel, train

# (config module, initial lr, weight decay, decay every N epochs, dropout, BN, activation), the paper's table.
PAPER = {
    "inception": (0.0015, 2e-4, 8.0, 0.4, False, "relu"),
    "bn_baseline": (0.0015, 2e-4, 8.0, 0.4, True, "relu"),
    "bn_x5": (0.0075, 4e-5, 8.0 / 6.0, 0.0, True, "relu"),
    "bn_x30": (0.045, 4e-5, 8.0 / 6.0, 0.0, True, "relu"),
    "bn_x5_sigmoid": (0.0075, 4e-5, 8.0 / 6.0, 0.0, True, "sigmoid"),
    "inception_sigmoid": (0.0015, 2e-4, 8.0, 0.4, False, "sigmoid"),
}


def load(name, args=None):
    return importlib.import_module(f"configs.{name}").get_config(args)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_ablation_configs_hold_the_paper_numbers(name):
    config = load(name)
    lr, wd, decay_epochs, dropout, use_bn, activation = PAPER[name]
    assert config.ablation == name
    assert config.base_learning_rate == lr and config.weight_decay == wd
    assert math.isclose(config.lr_decay_epochs, decay_epochs) and config.lr_decay_rate == 0.96
    assert config.momentum == 0.9 and config.lr_scaling_batch == 32
    assert config.model.dropout_rate == dropout and config.model.use_bn == use_bn
    assert config.model.activation == activation
    assert config.model.lrn == (not use_bn)
    assert config.distortion == ("reduced" if config.weight_decay == 4e-5 else "googlenet")
    model = train.create_model(config, bn_axis_name=None)
    shape = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), shape)
    assert ("batch_stats" in variables) == use_bn


@pytest.mark.parametrize("member", range(6))
def test_ensemble_members_are_bn_x30_variants(member):
    config = load("ensemble", f"member={member},imagenette")
    assert config.base_learning_rate == 0.045 and config.model.use_bn
    assert config.dataset == "imagenette" and config.num_classes == 10
    base = load("bn_x30")
    changed = (
        config.model.weight_init_scale != base.model.weight_init_scale,
        config.model.dropout_rate > 0,
        bool(config.model.per_activation_bn_blocks),
    )
    assert any(changed) == (member > 0)


def test_bad_config_arguments_are_named():
    with pytest.raises(ValueError, match=r"member=0..5, got member='7'"):
        load("ensemble", "member=7")
    with pytest.raises(ValueError, match=r"Unknown config arguments \['imagenet'\]"):
        load("bn_x30", "imagenet")


def test_batch_layout_errors_name_the_values():
    parallel.check_batch_layout(256, 32, 8, 1)
    with pytest.raises(ValueError, match="global_batch_size=100 must be a positive multiple of the 8 devices"):
        parallel.check_batch_layout(100, 0, 8, 1)
    with pytest.raises(ValueError, match="bn_group_size=32 must divide each device's share of the batch, 16"):
        parallel.check_batch_layout(128, 32, 8, 1)
    with pytest.raises(ValueError, match="bn_group_size=12 must divide"):
        parallel.check_batch_layout(256, 12, 8, 1)


def test_unprepared_imagenet_says_what_to_do(tmp_path):
    config = load("bn_x30")
    config.tfds_data_dir = str(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ILSVRC2012_img_train.tar.*downloads/manual.*scripts/prepare_imagenet.py --manual_dir="):
        input_pipeline.make_source(config, "train", 0, 1, block=32)


def test_missing_or_empty_image_folder_is_named(tmp_path):
    config = load("bn_x30", "imagenette")
    config.data_dir = str(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="absent' does not exist"):
        input_pipeline.make_source(config, "train", 0, 1, block=32)
    (tmp_path / "empty" / "train" / "class_a").mkdir(parents=True)
    config.data_dir = str(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="No images"):
        input_pipeline.make_source(config, "train", 0, 1, block=32)
