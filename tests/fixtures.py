"""Small generated datasets for tests: written to a temporary folder, never committed."""

from __future__ import annotations

import pathlib

import numpy as np
import tensorflow as tf

# One colour per class: a network learns to tell them apart in a few dozen steps.
CLASS_COLOURS = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [220, 220, 40]], np.float32)


def write_image_folder(root: pathlib.Path, per_class: dict[str, int], size: int = 40, seed: int = 0) -> pathlib.Path:
    """Writes `root/<split>/class_<k>/<i>.JPEG` with per_class[split] noisy images of each class colour."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, colour in enumerate(CLASS_COLOURS):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = colour + rng.normal(0, 40, size=(size, size, 3))
                jpeg = tf.io.encode_jpeg(np.clip(pixels, 0, 255).astype(np.uint8)).numpy()
                (folder / f"{i:04d}.JPEG").write_bytes(jpeg)
    return root
