"""Batch Normalization (Ioffe & Szegedy, 2015): Algorithm 1 for training, Algorithm 2 for inference.

Why not `flax.linen.BatchNorm` alone: it normalises over the whole batch it sees (or the whole
`axis_name` group), keeps the *biased* variance in its moving average, and has no Algorithm 2. The paper
normalises over mini-batches of 32 examples however many devices train, and infers with the unbiased
population variance. This module adds exactly that; in the whole-batch case it computes what
`nn.BatchNorm(use_fast_variance=False)` computes (tests check both agree).

Statistics are always computed in float32 (float64 for float64 inputs) with the two-pass variance E[(x - E[x])^2]: the one-pass form
E[x^2] - E[x]^2 cancels catastrophically for activations with a large mean (google/flax #1491).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from bn_inception import metrics

# Collection in which training-mode BN layers sow their mini-batch moments (read by Algorithm 2).
MOMENTS = "bn_moments"


def _moments(x: jax.Array, reduce_axes: Sequence[int], axis_name: str | None) -> tuple[jax.Array, jax.Array]:
    """Mean and biased variance over `reduce_axes` (and over `axis_name` devices), two-pass, in x's dtype."""
    mean = jnp.mean(x, axis=reduce_axes, keepdims=True)
    if axis_name is not None:
        mean = jax.lax.pmean(mean, axis_name)
    var = jnp.mean(jnp.square(x - mean), axis=reduce_axes, keepdims=True)
    if axis_name is not None:
        var = jax.lax.pmean(var, axis_name)
    return mean, var


class BatchNorm(nn.Module):
    """Batch Normalizing Transform (Algorithm 1) with stored statistics for inference (Algorithm 2).

    Attributes:
      use_running_average: if True, normalise with the stored population statistics (inference);
        if False, with the statistics of the current mini-batch (training). May also be passed to
        `__call__`.
      per_activation: False (default) normalises convolutional inputs per feature map, pooling the
        statistics over the batch and all spatial positions (the paper's m' = m*p*q). True normalises
        each activation (every spatial position and channel) separately, as for fully connected layers;
        the ensemble members of section 4 use it in their last hidden layers. Dense inputs (N, C) are
        the same either way.
      group_size: None takes the statistics over the whole batch: the global batch under `jit` with a
        sharded batch, or across devices named by `axis_name` under `pmap`/`shard_map`. An integer g
        splits the batch into consecutive groups of g examples (the paper's mini-batch, 32), each
        normalised with its own statistics, whatever the number of devices.
      axis_name: the mapped device axis to reduce over in whole-batch mode under `pmap`/`shard_map`.
        Ignored in group mode, where every group must lie on one device.
      momentum: decay of the moving averages that track the population statistics during training.
      epsilon: the eps of Algorithm 1 (the paper gives none; configs choose).
      dtype: dtype of the output; statistics and normalisation are computed in float32
        (float64 for float64 inputs).
      use_scale, use_bias: learn gamma and beta.
    """

    use_running_average: bool | None = None
    per_activation: bool = False
    group_size: int | None = None
    axis_name: str | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Any = None
    use_scale: bool = True
    use_bias: bool = True
    scale_init: Callable[..., jax.Array] = nn.initializers.ones
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        """Normalises `x` of shape (N, ..., C) and applies gamma and beta."""
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        feature_shape = x.shape[1:] if self.per_activation else x.shape[-1:]
        stats_shape = (1,) * (x.ndim - len(feature_shape)) + feature_shape
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, feature_shape, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, feature_shape, jnp.float32)
        x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))

        if use_running_average:
            mean = ra_mean.value.reshape(stats_shape)
            var = ra_var.value.reshape(stats_shape)
            y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
        else:
            y, batch_mean, batch_var, count = self._normalise_batch(x32)
            self.sow(MOMENTS, "mean", batch_mean, init_fn=lambda: 0.0, reduce_fn=lambda _, b: b)
            self.sow(MOMENTS, "var", batch_var, init_fn=lambda: 0.0, reduce_fn=lambda _, b: b)
            self.sow(MOMENTS, "count", jnp.float32(count), init_fn=lambda: 0.0, reduce_fn=lambda _, b: b)
            if self.is_mutable_collection("batch_stats") and not self.is_initializing():
                # Moving averages track E[x] and the unbiased Var[x] = m/(m-1) sigma2_B (Algorithm 2).
                unbiased = batch_var * (count / max(count - 1, 1))
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * batch_mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * unbiased

        if self.use_scale:
            y = y * self.param("scale", self.scale_init, feature_shape, jnp.float32).reshape(stats_shape)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, feature_shape, jnp.float32).reshape(stats_shape)
        return y.astype(self.dtype or x.dtype)

    def _normalise_batch(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, int]:
        """Algorithm 1 lines 1-3. Returns xhat, the mean and biased variance (averaged over groups), and m."""
        n = x.shape[0]
        num_feature_axes = x.ndim - 1 if self.per_activation else 1
        feature_shape = x.shape[x.ndim - num_feature_axes :]
        spatial_size = math.prod(x.shape[1 : x.ndim - num_feature_axes])
        if self.group_size is None:
            reduce_axes = tuple(range(x.ndim - num_feature_axes))
            mean, var = _moments(x, reduce_axes, self.axis_name)
            count = n * spatial_size
            if self.axis_name is not None:
                count *= jax.lax.axis_size(self.axis_name)
            xhat = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
            return xhat, mean.reshape(feature_shape), var.reshape(feature_shape), count
        g = self.group_size
        if g < 1 or n % g:
            raise ValueError(
                f"BatchNorm group_size={g} must be a positive divisor of the batch size {n} seen here "
                "(under pmap/shard_map: the per-device batch)."
            )
        grouped = x.reshape((n // g, g) + x.shape[1:])
        mean, var = _moments(grouped, tuple(range(1, grouped.ndim - num_feature_axes)), None)
        xhat = ((grouped - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
        # E_B[mu_B] and E_B[sigma2_B] over the groups, as Algorithm 2 averages them.
        group_mean = jnp.mean(mean, axis=0).reshape(feature_shape)
        group_var = jnp.mean(var, axis=0).reshape(feature_shape)
        return xhat, group_mean, group_var, g * spatial_size


def population_statistics(
    apply_fn: Callable[[Any, Any], Any],
    variables: Any,
    batches: Iterable[Any],
) -> Any:
    """Algorithm 2, steps 8-11: population statistics of every BN layer from K training mini-batches.

    With the weights frozen, runs `apply_fn(variables, batch)` on each batch, where `apply_fn` must call
    the model so that BN uses mini-batch statistics and returns the sown moments, e.g.
    `jax.jit(lambda v, x: model.apply(v, x, train=False, use_batch_stats=True, mutable=[MOMENTS])[1])`
    (called as given: compile it, under jit or pmap, before passing it).
    Returns a `batch_stats` tree with E[x] = E_B[mu_B] and the unbiased Var[x] = m/(m-1) E_B[sigma2_B],
    to be used in place of the moving averages: `{**variables, 'batch_stats': result}`.
    """
    sums, num_batches = metrics.sum_trees(apply_fn(variables, batch)[MOMENTS] for batch in batches)
    if num_batches == 0:
        raise ValueError("population_statistics needs at least one batch, got none.")

    def finish(layer: dict[str, jax.Array]) -> dict[str, jax.Array]:
        count = layer["count"] / num_batches
        return {
            "mean": layer["mean"] / num_batches,
            "var": layer["var"] / num_batches * count / jnp.maximum(count - 1, 1),
        }

    def walk(tree: Any) -> Any:
        if isinstance(tree, dict) and set(tree) == {"mean", "var", "count"}:
            return finish(tree)
        return {k: walk(v) for k, v in tree.items()}

    return walk(flax.core.unfreeze(sums))
