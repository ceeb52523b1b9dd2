"""Synthetic batches for compute benchmarks and tests: numpy only, so that the benchmark's synthetic path
imports no TensorFlow (accelerator images without it can run it)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bn_inception import photometric


def synthetic_batches(image_size: int, num_classes: int, local_batch: int, seed: int, mask: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """One fixed random batch, repeated forever (compute benchmarks: no input cost). Training batches
    (`mask=False`) carry identity photometric parameters, evaluation batches (`mask=True`) a mask."""
    rng = np.random.default_rng(seed)
    batch = {
        "image": rng.integers(0, 256, size=(local_batch, image_size, image_size, 3), dtype=np.uint8),
        "label": rng.integers(num_classes, size=local_batch),
    }
    if mask:
        batch["mask"] = np.ones(local_batch, np.float32)
    else:
        batch["photometric"] = np.tile(np.array(photometric.IDENTITY, np.float32), (local_batch, 1))
    while True:
        yield batch
