"""Inception-style image preprocessing in TensorFlow: one encoded JPEG in, one float image in [-1, 1] out.

Training: a random crop covering 8%-100% of the image with aspect ratio 3/4-4/3 (only the crop is
decoded), resize, random mirror, photometric distortions. Evaluation: shorter side to `eval_resize`,
central square crop. All randomness is stateless and derived from (seed, epoch, example index).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Photometric distortions: GoogLeNet's ranges (as in TF-slim's inception preprocessing; saturation and hue
# applied as one YIQ colour matrix, see `_distort_and_scale`), and the "reduced" ones of section 4.2.1 (the
# paper gives no numbers: halving every range is our choice).
DISTORTIONS = {
    "googlenet": {"brightness": 32.0 / 255.0, "saturation": 0.5, "hue": 0.2, "contrast": 0.5},
    "reduced": {"brightness": 16.0 / 255.0, "saturation": 0.25, "hue": 0.1, "contrast": 0.25},
    "none": {"brightness": 0.0, "saturation": 0.0, "hue": 0.0, "contrast": 0.0},
}


def _seed(parts: tuple) -> tf.Tensor:
    seed = tf.constant([0, 0], tf.int64)
    for part in parts:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(part, tf.int64))
    return seed


def train_image(jpeg: tf.Tensor, size: int, distortion: str, seed_parts: tuple) -> tf.Tensor:
    """Random-crop, resize, flip and distort one training JPEG; float32 (size, size, 3) in [-1, 1]."""
    if distortion not in DISTORTIONS:
        raise ValueError(f"distortion={distortion!r}; expected one of {sorted(DISTORTIONS)}.")
    crop_seed, flip_seed, color_seed = tf.unstack(tf.random.experimental.stateless_split(_seed(seed_parts), 3))
    shape = tf.image.extract_jpeg_shape(jpeg)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=(1, 1, 4)),
        seed=crop_seed,
        min_object_covered=0.1,
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])
    image = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image, (size, size), antialias=False)  # float32 in [0, 255]
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return _distort_and_scale(image, DISTORTIONS[distortion], color_seed)


# RGB -> YIQ (NTSC): Y is the luma, (I, Q) the chroma plane that hue rotates and saturation scales.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
# In RGB, the YIQ map diag(1, s cos t, s cos t) + s sin t (E_QI - E_IQ) is LUMA + s cos t CHROMA + s sin t TURN.
_LUMA = tf.constant(_YIQ_TO_RGB @ np.diag([1.0, 0.0, 0.0]) @ _RGB_TO_YIQ, tf.float32)
_CHROMA = tf.constant(_YIQ_TO_RGB @ np.diag([0.0, 1.0, 1.0]) @ _RGB_TO_YIQ, tf.float32)
_TURN = tf.constant(_YIQ_TO_RGB @ np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]) @ _RGB_TO_YIQ, tf.float32)


def color_matrix(saturation: tf.Tensor, hue: tf.Tensor) -> tf.Tensor:
    """The 3x3 map of RGB column vectors that scales chroma by `saturation` and turns its hue by
    `hue` of a full turn (in YIQ: luma kept, chroma rotated and scaled; greys stay grey)."""
    angle = (2.0 * np.pi) * tf.cast(hue, tf.float32)
    return _LUMA + (saturation * tf.cos(angle)) * _CHROMA + (saturation * tf.sin(angle)) * _TURN


def _distort_and_scale(image: tf.Tensor, strength: dict[str, float], seed: tf.Tensor) -> tf.Tensor:
    """[0, 255] pixels -> brightness, saturation, hue and contrast in TF-slim's order -> [-1, 1], clipped.

    All four are affine maps of the RGB vector, so they are applied as one: y = c M x + (1 - c) M m + b,
    where M is `color_matrix` (saturation and hue in YIQ instead of TF-slim's two RGB<->HSV round trips,
    which cost more than the rest of the preprocessing), b the brightness offset (greys stay grey under
    M, so it commutes with M), c the contrast factor and m the image's per-channel mean (contrast blends
    every pixel with it, as `tf.image.adjust_contrast` does). The same kinds of jitter with the same
    ranges, in few TensorFlow ops (per-op overhead dominates at 224x224).
    """
    if not any(strength.values()):
        return image * (2.0 / 255.0) - 1.0
    ranges = tf.constant([255.0 * strength["brightness"], strength["saturation"], strength["hue"], strength["contrast"]])
    brightness, saturation, hue, contrast = tf.unstack(tf.random.stateless_uniform([4], seed, -1.0, 1.0) * ranges)
    contrast = 1.0 + contrast
    matrix = (2.0 / 255.0) * color_matrix(1.0 + saturation, hue)
    offset = (1.0 - contrast) * tf.linalg.matvec(matrix, tf.reduce_mean(image, axis=[0, 1])) + (2.0 / 255.0) * brightness - 1.0
    image = tf.tensordot(image, tf.transpose(contrast * matrix), axes=1) + offset
    return tf.clip_by_value(image, -1.0, 1.0)


def resize_shorter_side(image: tf.Tensor, shorter: int) -> tf.Tensor:
    """Aspect-preserving resize so that the shorter side is `shorter` pixels."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    scale = tf.cast(shorter, tf.float32) / tf.cast(tf.minimum(h, w), tf.float32)
    new_h = tf.cast(tf.round(tf.cast(h, tf.float32) * scale), tf.int32)
    new_w = tf.cast(tf.round(tf.cast(w, tf.float32) * scale), tf.int32)
    return tf.image.resize(image, (tf.maximum(new_h, shorter), tf.maximum(new_w, shorter)))


def eval_image(jpeg: tf.Tensor, size: int, resize: int) -> tf.Tensor:
    """Single crop: shorter side to `resize`, central `size` crop; float32 in [-1, 1]."""
    image = tf.cast(tf.io.decode_jpeg(jpeg, channels=3), tf.float32)
    image = resize_shorter_side(image, resize)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    top, left = (h - size) // 2, (w - size) // 2
    image = image[top : top + size, left : left + size]
    return tf.ensure_shape(image, (size, size, 3)) / 127.5 - 1.0


def multi_crop_scales(size: int) -> tuple[int, ...]:
    """GoogLeNet's shorter sides 256, 288, 320, 352 for 224 crops, scaled to crops of `size`."""
    return tuple(int(round(s * size / 224)) for s in (256, 288, 320, 352))


def multi_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """GoogLeNet's 144 crops of a float image: 4 scales x 3 squares x 6 crops x 2 mirrors -> (144, size, size, 3).

    For each scale the shorter side is resized to it; the left, centre and right squares (top, centre,
    bottom for portrait images) are taken; from each square the 4 corner and the central `size` crops and
    the whole square resized to `size`. The second 72 are the mirrors of the first 72.
    """
    crops = []
    for scale in multi_crop_scales(size):
        resized = resize_shorter_side(image, scale)
        h, w = tf.shape(resized)[0], tf.shape(resized)[1]
        long_side_offsets = [0, (tf.maximum(h, w) - scale) // 2, tf.maximum(h, w) - scale]
        for offset in long_side_offsets:
            top = tf.where(w >= h, 0, offset)
            left = tf.where(w >= h, offset, 0)
            square = resized[top : top + scale, left : left + scale]
            edge = scale - size
            for y, x in ((0, 0), (0, edge), (edge, 0), (edge, edge), (edge // 2, edge // 2)):
                crops.append(square[y : y + size, x : x + size])
            crops.append(tf.image.resize(square, (size, size)))
    crops = tf.stack([tf.ensure_shape(c, (size, size, 3)) for c in crops])
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def multi_crop_image(jpeg: tf.Tensor, size: int) -> tf.Tensor:
    """144 crops of one JPEG, float32 in [-1, 1]: (144, size, size, 3)."""
    image = tf.cast(tf.io.decode_jpeg(jpeg, channels=3), tf.float32)
    return multi_crop(image, size) / 127.5 - 1.0
