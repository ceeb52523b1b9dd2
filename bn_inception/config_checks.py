"""Checks a training config before anything expensive runs: every error names the value and what was expected.

Unknown keys and values of the wrong type are refused earlier, by `ml_collections.config_flags` on the
command line (the configs are locked).
"""

from __future__ import annotations

import math

import ml_collections

from bn_inception.models import PRECISIONS
from bn_inception.photometric import DISTORTIONS

# BN-Inception halves its resolution five times (stem conv, two pools, 3c, 4e): 32 pixels reach 1x1.
MIN_IMAGE_SIZE = 32
DTYPES = ("float32", "bfloat16", "float16")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _numbers(tree: dict, prefix: str = "") -> dict[str, float]:
    """Every int and float leaf of a (nested) config dict, by dotted key."""
    found: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            found |= _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found[prefix + key] = value
    return found


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad value of `config`."""
    for key, value in _numbers(config.to_dict()).items():
        _require(math.isfinite(value), f"{key}={value} must be a finite number.")
    _require(config.seed >= 0, f"seed={config.seed} must be >= 0 (it seeds numpy and JAX generators).")
    _require(config.base_learning_rate > 0, f"base_learning_rate={config.base_learning_rate} must be > 0.")
    _require(0 <= config.momentum < 1, f"momentum={config.momentum} must be in [0, 1).")
    _require(config.weight_decay >= 0, f"weight_decay={config.weight_decay} must be >= 0.")
    _require(0 < config.lr_decay_rate <= 1, f"lr_decay_rate={config.lr_decay_rate} must be in (0, 1].")
    _require(config.lr_decay_epochs > 0, f"lr_decay_epochs={config.lr_decay_epochs} must be > 0.")
    _require(config.warmup_epochs >= 0, f"warmup_epochs={config.warmup_epochs} must be >= 0.")
    _require(0 <= config.polyak_decay < 1, f"polyak_decay={config.polyak_decay} must be in [0, 1) (0 disables).")
    _require(
        config.num_train_steps > 0 or (config.num_train_steps == 0 and config.num_epochs > 0),
        f"num_train_steps={config.num_train_steps}, num_epochs={config.num_epochs}: set num_train_steps > 0 "
        "or num_epochs > 0.",
    )
    for key in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints", "num_classes",
                "eval_moving_average_every"):
        _require(config[key] >= 1, f"{key}={config[key]} must be >= 1.")
    _require(config.bn_group_size >= 0, f"bn_group_size={config.bn_group_size} must be >= 0 (0: whole batch).")
    _require(
        config.eval_recalibrate_batches >= 0,
        f"eval_recalibrate_batches={config.eval_recalibrate_batches} must be >= 0 (0: moving averages).",
    )
    _require(config.shuffle_buffer >= 0, f"shuffle_buffer={config.shuffle_buffer} must be >= 0 (0: no example buffer).")
    _require(config.num_eval_examples >= 0, f"num_eval_examples={config.num_eval_examples} must be >= 0 (0: all).")
    _require(config.distortion in DISTORTIONS, f"distortion={config.distortion!r}; expected one of {sorted(DISTORTIONS)}.")
    _require(config.dtype in DTYPES, f"dtype={config.dtype!r}; expected one of {DTYPES}.")
    _require(config.parallelism in ("jit", "pmap"), f"parallelism={config.parallelism!r}; expected 'jit' or 'pmap'.")
    _require(config.model_name == "bn_inception", f"model_name={config.model_name!r}; expected 'bn_inception'.")
    _require(
        config.image_size >= MIN_IMAGE_SIZE,
        f"image_size={config.image_size} is too small for bn_inception: it needs >= {MIN_IMAGE_SIZE} pixels.",
    )
    _require(
        config.eval_resize >= config.image_size,
        f"eval_resize={config.eval_resize} must be >= image_size={config.image_size} (central crop of the resized image).",
    )
    _require(
        config.model.activation in ("relu", "sigmoid"),
        f"model.activation={config.model.activation!r}; expected 'relu' or 'sigmoid'.",
    )
    _require(
        config.model.get("precision", "default") in PRECISIONS,
        f"model.precision={config.model.get('precision')!r}; expected one of {PRECISIONS}.",
    )
    _require(0 <= config.model.dropout_rate < 1, f"model.dropout_rate={config.model.dropout_rate} must be in [0, 1).")
    _require(config.model.width_multiplier > 0, f"model.width_multiplier={config.model.width_multiplier} must be > 0.")
