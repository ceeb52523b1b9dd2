"""Host preprocessing: uint8 crops, and photometric parameters from (seed, epoch, index) within the ranges."""

import numpy as np
import pytest
import tensorflow as tf

from bn_inception import photometric, preprocessing


@pytest.fixture(scope="module")
def jpeg():
    pixels = np.random.default_rng(0).integers(0, 256, size=(120, 90, 3), dtype=np.uint8)
    return tf.io.encode_jpeg(pixels)


@pytest.mark.parametrize("distortion", ["googlenet", "reduced", "none"])
def test_training_image_is_uint8_with_parameters_in_range(jpeg, distortion):
    strength = photometric.DISTORTIONS[distortion]
    ranges = np.array([strength[name] for name in photometric.PARAMETERS])
    parameters = []
    for index in range(20):
        image, p = preprocessing.train_image(jpeg, 32, distortion, (0, 1, index))
        assert image.dtype == tf.uint8 and image.shape == (32, 32, 3)
        again = preprocessing.train_image(jpeg, 32, distortion, (0, 1, index))
        np.testing.assert_array_equal(image, again[0])  # the same (seed, epoch, index): the same example
        np.testing.assert_array_equal(p, again[1])
        parameters.append(p.numpy())
    deviation = np.abs(np.array(parameters) - photometric.IDENTITY)
    assert np.all(deviation <= ranges + 1e-7)
    if distortion == "none":
        assert np.all(deviation == 0)
    else:
        assert np.all(deviation.max(axis=0) > 0.5 * ranges)  # each parameter uses its range
        assert len({p.tobytes() for p in parameters}) == 20


def test_eval_image_is_the_rounded_central_crop(jpeg):
    image = preprocessing.eval_image(jpeg, 64, 80)
    decoded = tf.cast(tf.io.decode_jpeg(jpeg, channels=3), tf.float32)
    resized = tf.image.resize(decoded, (107, 80)).numpy()  # 120x90 -> shorter side 80
    top, left = (107 - 64) // 2, (80 - 64) // 2
    expected = np.floor(resized[top : top + 64, left : left + 64] + 0.5)
    assert image.dtype == tf.uint8
    np.testing.assert_array_equal(image.numpy(), expected.astype(np.uint8))


def test_training_images_are_mirrored_about_half_the_time():
    ramp = np.broadcast_to(np.linspace(0, 255, 160)[None, :, None], (100, 160, 3)).astype(np.uint8)
    jpeg = tf.io.encode_jpeg(ramp, quality=100)
    mirrored = 0
    for index in range(60):
        image = preprocessing.train_image(jpeg, 16, "none", (3, 0, index))[0].numpy().astype(int)
        assert abs(image[:, 0].mean() - image[:, -1].mean()) > 5  # every crop keeps some of the ramp
        mirrored += image[:, 0].mean() > image[:, -1].mean()
    assert 15 <= mirrored <= 45
