"""The paper's optimiser (section 4.2, from GoogLeNet): SGD with momentum, L2 weight decay, and a learning
rate decayed exponentially in epochs. Schedules are written in epochs and converted to steps here."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


def learning_rate_schedule(
    base_learning_rate: float,
    global_batch_size: int,
    lr_scaling_batch: int,
    steps_per_epoch: float,
    decay_rate: float,
    decay_epochs: float,
    warmup_epochs: float = 0.0,
) -> optax.Schedule:
    """lr(step) = base * (global_batch / lr_scaling_batch) * decay_rate ** floor(epoch / decay_epochs).

    `epoch = step / steps_per_epoch`. With `warmup_epochs` > 0 the rate rises linearly from 0 over that
    many epochs (section 6: linear scaling with the global batch, with warm-up, stands in for the paper's
    asynchronous training on batches of 32).
    """
    peak = base_learning_rate * global_batch_size / lr_scaling_batch

    def schedule(step: jax.Array) -> jax.Array:
        epoch = jnp.asarray(step, jnp.float32) / steps_per_epoch
        lr = peak * decay_rate ** jnp.floor(epoch / decay_epochs)
        if warmup_epochs > 0:
            lr = lr * jnp.minimum(1.0, epoch / warmup_epochs)
        return lr

    return schedule


def decay_mask(params: Any) -> Any:
    """True for the weights that L2 regularisation applies to: conv and dense kernels (not BN's gamma and
    beta, not biases), as in TF-slim and the Caffe solvers."""
    flat = flax.traverse_util.flatten_dict(params)
    return flax.traverse_util.unflatten_dict({path: path[-1] == "kernel" for path in flat})


def sgd_with_weight_decay(schedule: optax.Schedule, momentum: float, weight_decay: float) -> optax.GradientTransformation:
    """SGD with momentum on gradients of loss + weight_decay/2 * ||kernels||^2 (Caffe's convention)."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
        optax.sgd(schedule, momentum=momentum),
    )
