"""Inception-style image preprocessing in TensorFlow, on the host: one encoded JPEG in, uint8 pixels out.

Training: a random crop covering 8%-100% of the image with aspect ratio 3/4-4/3 (only the crop is
decoded), resize, random mirror, and the parameters of the photometric distortions, which
`photometric.py` applies on the accelerator. Evaluation: shorter side to `eval_resize`, central square
crop, or GoogLeNet's 144 crops. All randomness is stateless and derived from (seed, epoch, example index).
"""

from __future__ import annotations

import tensorflow as tf

from bn_inception import photometric

def _seed(parts: tuple) -> tf.Tensor:
    seed = tf.constant([0, 0], tf.int64)
    for part in parts:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(part, tf.int64))
    return seed


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Float pixels in [0, 255] (bilinear resizes of uint8 images stay there) -> uint8, rounded half up."""
    return tf.cast(image + 0.5, tf.uint8)


def crop_window(image_shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The Inception crop of an image of `image_shape` (height, width, channels): [top, left, height, width]
    covering 8%-100% of the area, aspect ratio 3/4-4/3."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=(1, 1, 4)),
        seed=seed,
        min_object_covered=0.1,
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def decode_crop(encoded: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The Inception crop of one encoded image, decoded to uint8 RGB. A JPEG (CMYK and greyscale ones too)
    decodes only its crop; any other format TensorFlow reads (PNG, GIF, BMP: ILSVRC2012's train set holds a
    PNG under a .JPEG name) is decoded whole and then cropped by the same rule."""

    def jpeg() -> tf.Tensor:
        return tf.io.decode_and_crop_jpeg(encoded, crop_window(tf.image.extract_jpeg_shape(encoded), seed), channels=3)

    def other() -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        window = crop_window(tf.shape(image), seed)
        return tf.slice(image, tf.stack([window[0], window[1], 0]), tf.stack([window[2], window[3], 3]))

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def train_image(jpeg: tf.Tensor, size: int, distortion: str, seed_parts: tuple) -> tuple[tf.Tensor, tf.Tensor]:
    """Random-crop, resize and mirror one training JPEG: uint8 (size, size, 3), and its (4,) float32
    photometric parameters (`photometric.PARAMETERS`: identity plus or minus the distortion's ranges).

    Few TensorFlow ops on purpose: at 224x224 their fixed cost per op matters (one random draw gives the
    mirror coin and the four parameters).
    """
    if distortion not in photometric.DISTORTIONS:
        raise ValueError(f"distortion={distortion!r}; expected one of {sorted(photometric.DISTORTIONS)}.")
    crop_seed, flip_and_color_seed = tf.unstack(tf.random.experimental.stateless_split(_seed(seed_parts), 2))
    image = decode_crop(jpeg, crop_seed)
    image = to_uint8(tf.image.resize(image, (size, size), antialias=False))
    strength = photometric.DISTORTIONS[distortion]
    ranges = tf.constant([1.0] + [strength[name] for name in photometric.PARAMETERS], tf.float32)
    draws = tf.random.stateless_uniform([5], flip_and_color_seed, -1.0, 1.0) * ranges
    image = tf.cond(draws[0] < 0.0, lambda: tf.reverse(image, axis=[1]), lambda: image)
    return image, tf.constant(photometric.IDENTITY, tf.float32) + draws[1:]


def resize_shorter_side(image: tf.Tensor, shorter: int) -> tf.Tensor:
    """Aspect-preserving resize so that the shorter side is `shorter` pixels."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    scale = tf.cast(shorter, tf.float32) / tf.cast(tf.minimum(h, w), tf.float32)
    new_h = tf.cast(tf.round(tf.cast(h, tf.float32) * scale), tf.int32)
    new_w = tf.cast(tf.round(tf.cast(w, tf.float32) * scale), tf.int32)
    return tf.image.resize(image, (tf.maximum(new_h, shorter), tf.maximum(new_w, shorter)))


def eval_image(jpeg: tf.Tensor, size: int, resize: int) -> tf.Tensor:
    """Single crop: shorter side to `resize`, central `size` crop; uint8 (size, size, 3)."""
    image = tf.cast(tf.io.decode_jpeg(jpeg, channels=3), tf.float32)
    image = resize_shorter_side(image, resize)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    top, left = (h - size) // 2, (w - size) // 2
    image = image[top : top + size, left : left + size]
    return to_uint8(tf.ensure_shape(image, (size, size, 3)))


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
    """144 crops of one JPEG: uint8 (144, size, size, 3)."""
    image = tf.cast(tf.io.decode_jpeg(jpeg, channels=3), tf.float32)
    return to_uint8(multi_crop(image, size))
