"""The network's input on the accelerator: uint8 pixels -> float32 in [-1, 1], with photometric distortions.

The host (`preprocessing.train_image`) crops, mirrors and resizes each image and sends it as uint8
together with four numbers drawn from the image's seed:

    brightness  offset added to every channel, as a fraction of the full range 255
    saturation  factor on the chroma (1: unchanged, 0: grey)
    hue         rotation of the chroma, in turns (0: unchanged)
    contrast    factor on each pixel's distance from the image's per-channel mean (1: unchanged)

Here they are applied in TF-slim's order, brightness, saturation, hue, contrast, as one affine map of
each RGB vector. On the host the same distortions took 0.3-0.4 ms an image on one core (docs/performance.md, "Input
speed"); on an accelerator they are a few element-wise operations, and uint8 batches are a quarter of
the bytes of float32 ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

PARAMETERS = ("brightness", "saturation", "hue", "contrast")
IDENTITY = (0.0, 1.0, 0.0, 1.0)  # the parameters that leave an image unchanged

# Photometric distortions: GoogLeNet's ranges (as in TF-slim's inception preprocessing; saturation and hue
# are applied in YIQ, see `distort`), and the "reduced" ones of section 4.2.1 (the paper gives
# no numbers: halving every range is our choice). Each parameter is drawn uniformly from its identity
# value plus or minus the range (brightness in fractions of 255, hue in turns), on the host, by
# `preprocessing.train_image`.
DISTORTIONS = {
    "googlenet": {"brightness": 32.0 / 255.0, "saturation": 0.5, "hue": 0.2, "contrast": 0.5},
    "reduced": {"brightness": 16.0 / 255.0, "saturation": 0.25, "hue": 0.1, "contrast": 0.25},
    "none": {"brightness": 0.0, "saturation": 0.0, "hue": 0.0, "contrast": 0.0},
}

# RGB -> YIQ (NTSC): Y is the luma, (I, Q) the chroma plane that hue rotates and saturation scales.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
# In RGB, the YIQ map diag(1, s cos t, s cos t) + s sin t (E_QI - E_IQ) is LUMA + s cos t CHROMA + s sin t TURN.
_LUMA = _YIQ_TO_RGB @ np.diag([1.0, 0.0, 0.0]) @ _RGB_TO_YIQ
_CHROMA = _YIQ_TO_RGB @ np.diag([0.0, 1.0, 1.0]) @ _RGB_TO_YIQ
_TURN = _YIQ_TO_RGB @ np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]) @ _RGB_TO_YIQ


def color_matrix(saturation: jax.Array, hue: jax.Array) -> jax.Array:
    """The 3x3 maps of RGB column vectors that scale chroma by `saturation` and turn its hue by `hue` of
    a full turn (in YIQ: luma kept, chroma rotated and scaled; greys stay grey). Shape `saturation.shape + (3, 3)`."""
    saturation = jnp.asarray(saturation, jnp.float32)[..., None, None]
    angle = (2.0 * np.pi) * jnp.asarray(hue, jnp.float32)[..., None, None]
    return (jnp.asarray(_LUMA, jnp.float32) + saturation * jnp.cos(angle) * jnp.asarray(_CHROMA, jnp.float32)
            + saturation * jnp.sin(angle) * jnp.asarray(_TURN, jnp.float32))


def to_unit_range(images: jax.Array) -> jax.Array:
    """[0, 255] pixels (uint8 or float, any leading shape) -> float32 in [-1, 1]."""
    return images.astype(jnp.float32) * (2.0 / 255.0) - 1.0


def distort(images: jax.Array, parameters: jax.Array) -> jax.Array:
    """Brightness, saturation, hue and contrast of each image, then scaled to [-1, 1] and clipped.

    images: (B, H, W, 3) pixels in [0, 255]; parameters: (B, 4) in the order of `PARAMETERS`.
    With M the colour matrix, b the brightness offset, c the contrast factor and m the image's mean RGB
    vector, each pixel x becomes c M x + (1 - c) M m + b: brightness is grey, so M keeps it, and contrast
    blends every pixel with the mean of the image before it (as `tf.image.adjust_contrast` does). TF-slim
    clips to the valid range after each step; this map clips once, at the end.
    """
    x = images.astype(jnp.float32)
    brightness, saturation, hue, contrast = (parameters[:, k].astype(jnp.float32) for k in range(4))
    matrix = color_matrix(saturation, hue)  # (B, 3, 3)
    mean = jnp.mean(x, axis=(1, 2))  # (B, 3)
    scale = 2.0 / 255.0
    linear = (scale * contrast)[:, None, None] * matrix
    offset = scale * ((1.0 - contrast)[:, None] * jnp.einsum("bij,bj->bi", matrix, mean) + 255.0 * brightness[:, None]) - 1.0
    # The 3x3 product written out channel by channel: one fused element-wise pass (2.6x faster on XLA:CPU
    # than a batched matrix product over a contraction of 3).
    channels = [sum(x[..., j] * linear[:, i, j, None, None] for j in range(3)) + offset[:, i, None, None] for i in range(3)]
    return jnp.clip(jnp.stack(channels, axis=-1), -1.0, 1.0)


def model_inputs(batch: dict[str, jax.Array]) -> jax.Array:
    """The network's float32 input from a host batch: `distort` where the batch carries `photometric`
    parameters (training), else `to_unit_range` (evaluation)."""
    if "photometric" in batch:
        return distort(batch["image"], batch["photometric"])
    return to_unit_range(batch["image"])
