"""Photometric distortions on the device: against a step-by-step float64 reference, TensorFlow's own
brightness and contrast ops, and invariants."""

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from bn_inception import photometric

RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def chroma_map(saturation, hue):
    """Saturation and hue as a map of YIQ vectors: luma kept, (I, Q) rotated by `hue` turns and scaled."""
    t = 2 * np.pi * hue
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]]) * [[1], [saturation], [saturation]]


def reference(image, brightness, saturation, hue, contrast):
    """TF-slim's order, one step at a time in float64 (no intermediate clipping), then [-1, 1]."""
    x = image.astype(np.float64) + 255.0 * brightness
    yiq = x @ RGB_TO_YIQ.T
    x = (yiq @ chroma_map(saturation, hue).T) @ np.linalg.inv(RGB_TO_YIQ).T
    mean = x.mean(axis=(0, 1))
    x = contrast * (x - mean) + mean
    return np.clip(x / 127.5 - 1.0, -1.0, 1.0)


@pytest.mark.parametrize("saturation, hue", [(1.0, 0.0), (0.0, 0.0), (1.3, 0.1), (0.7, -0.25), (1.0, 0.5)])
def test_color_matrix_rotates_and_scales_chroma_in_yiq(saturation, hue):
    expected = np.linalg.solve(RGB_TO_YIQ, chroma_map(saturation, hue) @ RGB_TO_YIQ)
    np.testing.assert_allclose(photometric.color_matrix(saturation, hue), expected, atol=1e-6)


def test_distort_equals_the_step_by_step_reference():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 9, 7, 3), dtype=np.uint8)
    parameters = np.stack([rng.uniform(-0.13, 0.13, 6), rng.uniform(0.5, 1.5, 6), rng.uniform(-0.2, 0.2, 6),
                           rng.uniform(0.5, 1.5, 6)], axis=1).astype(np.float32)
    parameters[0] = photometric.IDENTITY
    out = np.asarray(photometric.distort(jnp.asarray(images), jnp.asarray(parameters)))
    for image, p, o in zip(images, parameters.astype(np.float64), out):
        np.testing.assert_allclose(o, reference(image, *p), atol=2e-5)
    np.testing.assert_allclose(out[0], images[0] / 127.5 - 1.0, atol=1e-6)  # identity
    assert out.dtype == np.float32 and out.min() >= -1.0 and out.max() <= 1.0


def test_brightness_and_contrast_match_tensorflow():
    rng = np.random.default_rng(1)
    images = rng.integers(40, 200, size=(3, 8, 8, 3), dtype=np.uint8)
    parameters = np.array([[0.1, 1.0, 0.0, 1.4], [-0.05, 1.0, 0.0, 0.6], [0.0, 1.0, 0.0, 1.0]], np.float32)
    out = np.asarray(photometric.distort(jnp.asarray(images), jnp.asarray(parameters)))
    for image, (b, _, _, c), o in zip(images, parameters, out):
        expected = tf.image.adjust_contrast(tf.image.adjust_brightness(image / 255.0, b), c).numpy() * 2 - 1
        np.testing.assert_allclose(o, np.clip(expected, -1, 1), atol=1e-5)


def test_greys_stay_grey_and_model_inputs_distorts_only_training_batches():
    grey = np.broadcast_to(np.linspace(0, 255, 16 * 16).reshape(1, 16, 16, 1), (4, 16, 16, 3)).astype(np.uint8)
    rng = np.random.default_rng(2)
    parameters = np.stack([rng.uniform(-0.1, 0.1, 4), rng.uniform(0.5, 1.5, 4), rng.uniform(-0.2, 0.2, 4),
                           rng.uniform(0.5, 1.5, 4)], axis=1).astype(np.float32)
    out = np.asarray(photometric.model_inputs({"image": grey, "photometric": parameters}))
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-5)
    assert not np.allclose(out, grey / 127.5 - 1.0, atol=1e-2)
    np.testing.assert_allclose(photometric.model_inputs({"image": grey}), grey / 127.5 - 1.0, atol=1e-6)
