"""Photometric distortions: the colour matrix against an independent YIQ computation, and invariants."""

import numpy as np
import pytest
import tensorflow as tf

from bn_inception import preprocessing

RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


@pytest.mark.parametrize("saturation, hue", [(1.0, 0.0), (0.0, 0.0), (1.3, 0.1), (0.7, -0.25), (1.0, 0.5)])
def test_color_matrix_rotates_and_scales_chroma_in_yiq(saturation, hue):
    t = 2 * np.pi * hue
    chroma = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]]) * [[1], [saturation], [saturation]]
    expected = np.linalg.solve(RGB_TO_YIQ, chroma @ RGB_TO_YIQ)
    np.testing.assert_allclose(preprocessing.color_matrix(saturation, hue).numpy(), expected, atol=1e-6)


def test_distortions_keep_greys_grey_stay_in_range_and_vary_by_seed():
    grey = tf.constant(np.linspace(0, 255, 16 * 16).reshape(16, 16, 1).repeat(3, axis=2), tf.float32)
    colour = tf.constant(np.random.default_rng(0).uniform(0, 255, (16, 16, 3)), tf.float32)
    strength = preprocessing.DISTORTIONS["googlenet"]
    outputs = []
    for seed in range(5):
        g = preprocessing._distort_and_scale(grey, strength, tf.constant([seed, 1], tf.int64)).numpy()
        np.testing.assert_allclose(g[..., 0], g[..., 1], atol=1e-5)  # brightness, contrast, saturation, hue
        np.testing.assert_allclose(g[..., 0], g[..., 2], atol=1e-5)  # all map greys to greys
        c = preprocessing._distort_and_scale(colour, strength, tf.constant([seed, 1], tf.int64)).numpy()
        assert c.min() >= -1.0 and c.max() <= 1.0
        outputs.append(c)
    assert len({o.tobytes() for o in outputs}) == 5
    plain = preprocessing._distort_and_scale(colour, preprocessing.DISTORTIONS["none"], tf.constant([0, 1], tf.int64))
    np.testing.assert_allclose(plain.numpy(), colour.numpy() / 127.5 - 1.0, atol=1e-6)
