"""Lowerings of convolution and max pooling that keep XLA:CPU on fast paths (docs/cpu_performance.md).

`nn.Conv(..., conv_general_dilated=matmul_friendly_conv)` computes exactly what `lax.conv_general_dilated`
computes, with the same parameters, but:
- a 1x1, stride-1 convolution is a matrix product over the channels, so its weight and input gradients
  are matrix products too (XLA:CPU lowers the weight gradient of a convolution as a convolution whose
  window is the whole feature map, 3-7x slower than the equivalent matrix product);
- any other convolution keeps XLA's forward convolution and input gradient, but its weight gradient is
  one matrix product per kernel tap (XLA:CPU lowers it as a convolution whose window is the whole
  feature map, which runs 1.5-2x slower);
- a grouped convolution with one input channel per group (the stem's depthwise 7x7 with multiplier 8)
  keeps XLA's forward convolution, but its weight gradient is a matrix product of the input's patches
  with the output gradient (XLA:CPU's grouped weight gradient takes seconds per batch of 32).
Dilated, non-NHWC or other grouped convolutions go to `lax.conv_general_dilated` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

NHWC = ("NHWC", "HWIO", "NHWC")


def _is_nhwc(dimension_numbers: Any, ndim: int) -> bool:
    return ndim == 4 and jax.lax.conv_dimension_numbers((1,) * 4, (1,) * 4, dimension_numbers) == \
        jax.lax.conv_dimension_numbers((1,) * 4, (1,) * 4, NHWC)


def _explicit_padding(padding: Any, spatial: Sequence[int], window: Sequence[int], strides: Sequence[int]) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        return tuple(jax.lax.padtype_to_pads(spatial, window, strides, padding))
    return tuple(tuple(p) for p in padding)


def _taps(x: jax.Array, window: tuple[int, int], strides: tuple[int, int], padding: tuple[tuple[int, int], ...], out_hw: tuple[int, int]) -> list[jax.Array]:
    """For each kernel tap (i, j), row-major: the (N, H', W', C) inputs it multiplies, by strided slices."""
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    (kh, kw), (sh, sw), (ho, wo) = window, strides, out_hw
    return [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :] for i in range(kh) for j in range(kw)]


def _xla_conv(
    x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: tuple[tuple[int, int], ...], depthwise: bool,
    precision: Any = None,
) -> jax.Array:
    groups = x.shape[-1] if depthwise else 1
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC, feature_group_count=groups,
                                        precision=precision)


_conv = jax.custom_vjp(_xla_conv, nondiff_argnums=(2, 3, 4, 5))


def _conv_fwd(x, kernel, strides, padding, depthwise, precision):
    return _conv(x, kernel, strides, padding, depthwise, precision), (x, kernel)


def _conv_bwd(strides, padding, depthwise, precision, residuals, dy):
    x, kernel = residuals
    kh, kw, cin, cout = kernel.shape
    taps = _taps(x, (kh, kw), strides, padding, dy.shape[1:3])
    if depthwise:
        # dK[i, j, 0, c*m + k] = sum over positions of x_tap[c] * dY[c*m + k]: one contraction of all taps.
        channels = x.shape[-1]
        grouped_dy = dy.reshape(dy.shape[:3] + (channels, cout // channels))
        dkernel = jnp.einsum("nhwct,nhwcm->tcm", jnp.stack(taps, axis=-1), grouped_dy, precision=precision)
    else:
        # dK[i, j] = (inputs under tap (i, j))^T dY: one (C, N*H'*W') x (N*H'*W', O) matrix product per tap.
        flat_dy = dy.reshape(-1, cout)
        dkernel = jnp.stack([jnp.matmul(t.reshape(-1, cin).T, flat_dy, precision=precision) for t in taps])
    # The input gradient through XLA's own transpose (for the stem it is unused and XLA removes it).
    _, x_vjp = jax.vjp(lambda v: _xla_conv(v, kernel, strides, padding, depthwise, precision), x)
    return x_vjp(dy)[0], dkernel.reshape(kernel.shape).astype(kernel.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def matmul_friendly_conv(
    lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
    lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None, feature_group_count: int = 1, precision: Any = None, **kwargs: Any,
) -> jax.Array:
    """`lax.conv_general_dilated` with matrix-product lowerings for 1x1 and depthwise-multiplier convs."""
    strides = tuple(window_strides)
    undilated = all(d == 1 for d in (lhs_dilation or ())) and all(d == 1 for d in (rhs_dilation or ()))
    if undilated and not kwargs and _is_nhwc(dimension_numbers, lhs.ndim):
        kh, kw, _, _ = rhs.shape
        pads = _explicit_padding(padding, lhs.shape[1:3], (kh, kw), strides)
        if (kh, kw) == (1, 1) and strides == (1, 1) and feature_group_count == 1 and pads == ((0, 0), (0, 0)):
            return jax.lax.dot_general(lhs, rhs[0, 0], (((3,), (0,)), ((), ())), precision=precision)
        depthwise = feature_group_count == lhs.shape[-1] > 1 and rhs.shape[2] == 1
        if depthwise or feature_group_count == 1:
            return _conv(lhs, rhs, strides, pads, depthwise, precision)
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
        precision=precision, **kwargs,
    )


def _max_pool_plain(x: jax.Array, window: tuple[int, int], strides: tuple[int, int], padding: tuple[tuple[int, int], ...]) -> jax.Array:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *strides, 1), ((0, 0), *padding, (0, 0)))


_max_pool = jax.custom_vjp(_max_pool_plain, nondiff_argnums=(1, 2, 3))


def _max_pool_fwd(x, window, strides, padding):
    y = _max_pool(x, window, strides, padding)
    return y, (x, y)


def _max_pool_bwd(window, strides, padding, residuals, dy):
    x, y = residuals
    (kh, kw), (sh, sw) = window, strides
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
    ho, wo = y.shape[1:3]
    unclaimed = jnp.ones(y.shape, bool)
    dxp = jnp.zeros(xp.shape, dy.dtype)
    for i in range(kh):
        for j in range(kw):
            # Each output's gradient goes to the first input of its window (row-major) that equals the max.
            hit = unclaimed & (xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :] == y)
            unclaimed = unclaimed & ~hit
            grad = jnp.where(hit, dy, 0)
            dxp = dxp + jax.lax.pad(grad, jnp.zeros((), dy.dtype), (
                (0, 0, 0), (i, xp.shape[1] - i - sh * (ho - 1) - 1, sh - 1),
                (j, xp.shape[2] - j - sw * (wo - 1) - 1, sw - 1), (0, 0, 0)))
    (pt, _), (pl, _) = padding
    return (dxp[:, pt:pt + x.shape[1], pl:pl + x.shape[2], :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int], padding: str = "SAME") -> jax.Array:
    """`nn.max_pool` on NHWC whose gradient goes through strided slices and pads, not XLA's argmax
    reduce-window and scatter (which XLA:CPU runs with four full-size index tensors per pooling)."""
    pads = _explicit_padding(padding, x.shape[1:3], window, strides)
    return _max_pool(x, tuple(window), tuple(strides), pads)
