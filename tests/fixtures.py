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


def write_toy_imagenet_tars(manual_dir: pathlib.Path, shared_data: pathlib.Path, classes: int = 3, per_class: int = 4) -> dict[int, str]:
    """The two manual files of tfds' imagenet2012, in miniature, from real images in ../shared/data.

    Train: a tar of `<wnid>.tar` files (Imagenette classes). Validation: the k-th file of imagenet_val_head
    as `ILSVRC2012_val_%08d.JPEG` % k. Returns {k: wnid} for the validation images.
    """
    import io
    import tarfile

    manual_dir.mkdir(parents=True, exist_ok=True)
    wnids = sorted(p.name for p in (shared_data / "imagenette" / "train").iterdir())[:classes]
    with tarfile.open(manual_dir / "ILSVRC2012_img_train.tar", "w") as outer:
        for wnid in wnids:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as inner:
                for path in sorted((shared_data / "imagenette" / "train" / wnid).iterdir())[:per_class]:
                    inner.add(path, arcname=f"{wnid}_{path.stem}.JPEG")
            info = tarfile.TarInfo(f"{wnid}.tar")
            info.size = buffer.tell()
            buffer.seek(0)
            outer.addfile(info, buffer)
    validation = {}
    with tarfile.open(manual_dir / "ILSVRC2012_img_val.tar", "w") as tar:
        for path in sorted((shared_data / "imagenet_val_head").iterdir()):
            k = int(path.name.split("_")[0])
            validation[k] = path.name.split("_")[1]
            tar.add(path, arcname=f"ILSVRC2012_val_{k:08d}.JPEG")
    return validation
