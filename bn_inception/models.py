"""The networks of the paper: BN-Inception (Appendix, Figure 5) with its ablations, and the MNIST net.

The Inception table lives in `INCEPTION_BLOCKS`, row for row as PAPER.md section 3 prints it. The models
know nothing about devices: cross-device statistics come from `bn_axis_name` (pmap) or from `jit` over a
sharded batch, and groups of `bn_group_size` examples work the same on any number of devices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from bn_inception.batch_norm import BatchNorm
from bn_inception import lowering


class InceptionBlock(NamedTuple):
    """One row of the paper's architecture table (Figure 5)."""

    conv1x1: int  # 0: no 1x1 branch (the stride-2 blocks 3c and 4e)
    reduce3x3: int
    conv3x3: int
    double_reduce3x3: int
    double3x3: int
    pool: str  # "avg" or "max"
    pool_proj: int  # 0: the pool output passes through unprojected
    stride: int


INCEPTION_BLOCKS: dict[str, InceptionBlock] = {
    "3a": InceptionBlock(64, 64, 64, 64, 96, "avg", 32, 1),  # 28x28x256
    "3b": InceptionBlock(64, 64, 96, 64, 96, "avg", 64, 1),  # 28x28x320
    "3c": InceptionBlock(0, 128, 160, 64, 96, "max", 0, 2),  # 14x14x576
    "4a": InceptionBlock(224, 64, 96, 96, 128, "avg", 128, 1),  # 14x14x576
    "4b": InceptionBlock(192, 96, 128, 96, 128, "avg", 128, 1),  # 14x14x576
    "4c": InceptionBlock(160, 128, 160, 128, 160, "avg", 128, 1),  # 14x14x608 (table prints 576)
    "4d": InceptionBlock(96, 128, 192, 160, 192, "avg", 128, 1),  # 14x14x608 (table prints 576)
    "4e": InceptionBlock(0, 128, 192, 192, 256, "max", 0, 2),  # 7x7x1056 (table prints 1024)
    "5a": InceptionBlock(352, 192, 320, 160, 224, "avg", 128, 1),  # 7x7x1024
    "5b": InceptionBlock(352, 192, 320, 192, 224, "max", 128, 1),  # 7x7x1024, max pool as printed
}
# TF-slim's inception_v2 reading of the table: avg + 96 in 4c/4d, so that they output the printed 576.
SLIM_POOL_PROJ = {"4c": 96, "4d": 96}

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": nn.relu, "sigmoid": nn.sigmoid}


def local_response_norm(
    x: jax.Array, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0
) -> jax.Array:
    """GoogLeNet's (Caffe's) across-channel LRN: x / (bias + alpha/size * sum_{window} x^2)^beta."""
    squared = jnp.square(x.astype(jnp.float32))
    half = size // 2
    window_sum = jax.lax.reduce_window(
        squared, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1), [(0, 0), (0, 0), (0, 0), (half, half)]
    )
    return (x / jnp.power(bias + alpha / size * window_sum, beta)).astype(x.dtype)


# Values of `BNInception.precision` (and of config.model.precision): "default" leaves jax's default.
PRECISIONS = ("default", "high", "highest")


class ConvUnit(nn.Module):
    """Convolution followed by BN (before the nonlinearity, no conv bias) or by a bias alone, then activation."""

    features: int
    kernel_size: tuple[int, int]
    strides: int = 1
    use_bn: bool = True
    norm: Callable[..., nn.Module] = BatchNorm
    activation: str = "relu"
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    conv_general_dilated: Callable[..., jax.Array] | None = None
    precision: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, use_batch_stats: bool) -> jax.Array:
        """Applies conv -> BN -> activation (or conv+bias -> activation without BN)."""
        x = nn.Conv(
            self.features,
            self.kernel_size,
            strides=self.strides,
            padding="SAME",
            use_bias=not self.use_bn,
            kernel_init=self.kernel_init,
            conv_general_dilated=self.conv_general_dilated,
            precision=self.precision,
            dtype=self.dtype,
        )(x)
        if self.use_bn:
            x = self.norm(use_running_average=not use_batch_stats, dtype=self.dtype)(x)
        return ACTIVATIONS[self.activation](x)


class FoldedBatchNorm(nn.Module):
    """BN at inference (section 3.1) as the fixed affine map it is: y = scale * x + bias, with
    scale = gamma/sqrt(Var[x]+eps) and bias = beta - scale*E[x] (see `folding.fold_batch_norm`).

    The folded network uses it only where BN normalises per activation (the ensemble members' 5a/5b):
    there the scale varies with the position, so it cannot go into the convolution's shared kernel. A
    per-feature-map BN is folded into the kernel and bias of the convolution before it instead.
    """

    use_running_average: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the per-activation scale and bias to `x` of shape (N, H, W, C)."""
        if not self.use_running_average:
            raise ValueError("A folded network has no BN statistics to train with; it only infers (train=False).")
        scale = self.param("scale", nn.initializers.ones, x.shape[1:], jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, x.shape[1:], jnp.float32)
        return (x.astype(jnp.promote_types(x.dtype, jnp.float32)) * scale + bias).astype(self.dtype or x.dtype)


class Inception(nn.Module):
    """One Inception module: 1x1, 3x3, double 3x3 and pool branches, concatenated on channels."""

    block: InceptionBlock
    conv: Callable[..., nn.Module]
    max_pool: Callable[..., jax.Array] = functools.partial(nn.max_pool, padding="SAME")

    @nn.compact
    def __call__(self, x: jax.Array, use_batch_stats: bool) -> jax.Array:
        """Runs the four branches of the block on `x` and concatenates them."""
        b, s = self.block, self.block.stride
        branches = []
        if b.conv1x1:
            branches.append(self.conv(b.conv1x1, (1, 1), name="1x1")(x, use_batch_stats))
        y = self.conv(b.reduce3x3, (1, 1), name="3x3_reduce")(x, use_batch_stats)
        branches.append(self.conv(b.conv3x3, (3, 3), strides=s, name="3x3")(y, use_batch_stats))
        y = self.conv(b.double_reduce3x3, (1, 1), name="double_3x3_reduce")(x, use_batch_stats)
        y = self.conv(b.double3x3, (3, 3), name="double_3x3_a")(y, use_batch_stats)
        branches.append(self.conv(b.double3x3, (3, 3), strides=s, name="double_3x3_b")(y, use_batch_stats))
        if b.pool == "max":
            y = self.max_pool(x, (3, 3), strides=(s, s))
        else:
            y = nn.avg_pool(x, (3, 3), strides=(s, s), padding="SAME", count_include_pad=False)
        if b.pool_proj:
            y = self.conv(b.pool_proj, (1, 1), name="pool_proj")(y, use_batch_stats)
        branches.append(y)
        return jnp.concatenate(branches, axis=-1)


class BNInception(nn.Module):
    """BN-Inception of the paper's Figure 5, and its ablations.

    With `use_bn=False`, `lrn=True` and `dropout_rate=0.4` it is the paper's "Inception" baseline
    (GoogLeNet-style, conv biases). Called as `model.apply(variables, images, train=...)` on NHWC images.

    Attributes:
      num_classes: outputs of the final fully connected layer.
      use_bn: BN before every nonlinearity (and no conv bias); False gives the no-BN baseline.
      activation: "relu", or "sigmoid" (BN-x5-Sigmoid and the Inception-Sigmoid control).
      dropout_rate: dropout before the classifier (GoogLeNet 0.4; removed in section 4.2.1).
      lrn: GoogLeNet's local response normalisation after the first pool and the 3x3 conv of the stem.
      separable_stem: the paper's 7x7 stem, depthwise 3->24 (multiplier 8) then pointwise 24->64;
        False: a plain 7x7 convolution 3->64.
      slim_pool_proj: TF-slim's 96-wide pool projections in 4c/4d instead of the printed 128.
      blocks: the Inception blocks the network has, by name; they run in the table's order. All ten in
        every experiment; the `:tiny` configs keep four, so that tests of the machinery compile quickly.
      per_activation_bn_blocks: blocks (e.g. ("5a", "5b")) whose BN normalises per activation, not per
        feature map (the ensemble members of section 4).
      weight_init_scale: scale of the fan-in variance-scaling (truncated normal) weight initialiser.
      width_multiplier: multiplies every layer's width (tiny networks for tests).
      bn_group_size, bn_axis_name, bn_momentum, bn_epsilon: see `BatchNorm`.
      lowering: "xla" (lax convolutions, flax pooling) or "cpu" (`lowering.matmul_friendly_conv` and
        `lowering.max_pool`: the same functions and parameters, with the gradients computed by matrix
        products, slices and pads where XLA:CPU's own lowerings are slow).
      precision: matrix precision of the convolutions and the classifier: "default" (jax's, which runs
        float32 on TF32 matrix units on NVIDIA GPUs unless JAX_DEFAULT_MATMUL_PRECISION says otherwise),
        "high" or "highest" (full float32 everywhere). A CPU computes full float32 whatever it says.
      dtype: compute dtype (bfloat16 on accelerators); parameters and BN statistics stay float32.
      folded: the paper's inference network (section 3.1): every BN folded into the convolution before it
        (conv with a bias, no BN layer, no `batch_stats`), per-activation BN as a `FoldedBatchNorm`.
        Its parameters come from `folding.fold_batch_norm`; it only infers.
    """

    num_classes: int = 1000
    use_bn: bool = True
    activation: str = "relu"
    dropout_rate: float = 0.0
    lrn: bool = False
    separable_stem: bool = True
    slim_pool_proj: bool = False
    blocks: tuple[str, ...] = tuple(INCEPTION_BLOCKS)
    per_activation_bn_blocks: tuple[str, ...] = ()
    weight_init_scale: float = 2.0
    width_multiplier: float = 1.0
    bn_group_size: int | None = None
    bn_axis_name: str | None = None
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-5
    lowering: str = "xla"
    precision: str = "default"
    dtype: Any = jnp.float32
    folded: bool = False

    def _width(self, channels: int) -> int:
        return max(1, int(round(channels * self.width_multiplier)))

    def _conv(self, per_activation: bool = False) -> Callable[..., nn.Module]:
        norm = functools.partial(
            BatchNorm,
            per_activation=per_activation,
            group_size=self.bn_group_size,
            axis_name=self.bn_axis_name,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
        )
        if self.folded:
            # Per feature map: BN lives in the convolution's kernel and bias. Per activation: a fixed affine map.
            norm = FoldedBatchNorm
        unit = functools.partial(
            ConvUnit,
            use_bn=self.use_bn and (per_activation or not self.folded),
            norm=norm,
            activation=self.activation,
            kernel_init=self._kernel_init(),
            conv_general_dilated=self._conv_fn(),
            precision=self._precision(),
            dtype=self.dtype,
        )
        return lambda features, kernel_size, **kw: unit(self._width(features), kernel_size, **kw)

    def _precision(self) -> str | None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r}; expected one of {PRECISIONS}.")
        return None if self.precision == "default" else self.precision  # None: jax's default, as configured

    def _conv_fn(self) -> Callable[..., jax.Array] | None:
        if self.lowering not in ("xla", "cpu"):
            raise ValueError(f"lowering={self.lowering!r}; expected 'xla' or 'cpu'.")
        return lowering.matmul_friendly_conv if self.lowering == "cpu" else None

    def _max_pool(self) -> Callable[..., jax.Array]:
        return lowering.max_pool if self.lowering == "cpu" else functools.partial(nn.max_pool, padding="SAME")

    def _kernel_init(self) -> Callable[..., jax.Array]:
        return nn.initializers.variance_scaling(self.weight_init_scale, "fan_in", "truncated_normal")

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, use_batch_stats: bool | None = None) -> jax.Array:
        """Logits for NHWC `x`. `use_batch_stats` (default: `train`) makes BN use mini-batch statistics."""
        if use_batch_stats is None:
            use_batch_stats = train
        if self.folded and (train or use_batch_stats):
            raise ValueError("A folded network only infers: call it with train=False (and no use_batch_stats).")
        unknown = set(self.blocks) - set(INCEPTION_BLOCKS)
        if unknown:
            raise ValueError(f"blocks has unknown blocks {sorted(unknown)}; expected some of {list(INCEPTION_BLOCKS)}.")
        unknown = set(self.per_activation_bn_blocks) - set(self.blocks)
        if unknown:
            raise ValueError(f"per_activation_bn_blocks has blocks {sorted(unknown)} that the network does not have; "
                             f"expected some of {list(self.blocks)}.")
        conv = self._conv()
        x = x.astype(self.dtype)
        if self.separable_stem:
            x = nn.Conv(
                3 * 8, (7, 7), strides=2, padding="SAME", feature_group_count=3, use_bias=False,
                kernel_init=self._kernel_init(), conv_general_dilated=self._conv_fn(), precision=self._precision(),
                dtype=self.dtype, name="stem_7x7_depthwise",
            )(x)
            x = conv(64, (1, 1), name="stem_7x7_pointwise")(x, use_batch_stats)
        else:
            x = conv(64, (7, 7), strides=2, name="stem_7x7")(x, use_batch_stats)
        x = self._max_pool()(x, (3, 3), strides=(2, 2))
        if self.lrn:
            x = local_response_norm(x)
        x = conv(64, (1, 1), name="stem_1x1")(x, use_batch_stats)
        x = conv(192, (3, 3), name="stem_3x3")(x, use_batch_stats)
        if self.lrn:
            x = local_response_norm(x)
        x = self._max_pool()(x, (3, 3), strides=(2, 2))
        for name, block in INCEPTION_BLOCKS.items():
            if name not in self.blocks:
                continue
            if self.slim_pool_proj and name in SLIM_POOL_PROJ:
                block = block._replace(pool_proj=SLIM_POOL_PROJ[name])
            block_conv = self._conv(per_activation=True) if name in self.per_activation_bn_blocks else conv
            x = Inception(block, block_conv, self._max_pool(), name=f"inception_{name}")(x, use_batch_stats)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, kernel_init=self._kernel_init(), precision=self._precision(), dtype=self.dtype,
                     name="classifier")(x)
        return x.astype(jnp.promote_types(self.dtype, jnp.float32))


class MnistMLP(nn.Module):
    """The section 4.1 network: 784-100-100-100-10, sigmoid hidden units, optional BN on each hidden layer.

    The input of the last hidden layer's sigmoids is sown as `intermediates/last_hidden_input` (Figure 1 b, c).
    """

    hidden: tuple[int, ...] = (100, 100, 100)
    num_classes: int = 10
    use_bn: bool = False
    init_stddev: float = 1.0
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Logits for images `x` of shape (N, 28, 28[, 1]) or (N, 784)."""
        x = x.reshape((x.shape[0], -1)).astype(jnp.float32)
        init = nn.initializers.normal(self.init_stddev)
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, use_bias=not self.use_bn, kernel_init=init, name=f"hidden_{i}")(x)
            if self.use_bn:
                x = BatchNorm(
                    use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                    name=f"bn_{i}",
                )(x)
            if i == len(self.hidden) - 1:
                self.sow("intermediates", "last_hidden_input", x, init_fn=lambda: 0.0, reduce_fn=lambda _, b: b)
            x = nn.sigmoid(x)
        return nn.Dense(self.num_classes, kernel_init=init, name="classifier")(x)
