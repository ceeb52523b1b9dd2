"""MNIST from the original IDX files (gzip or not), checked by size and md5, or from tfds `mnist`."""

from __future__ import annotations

import gzip
import hashlib
import pathlib

import numpy as np

# Name -> (md5 of the uncompressed file, its size in bytes), as LeCun et al. distribute them.
MNIST_FILES = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 47_040_016),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 60_008),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 7_840_016),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 10_008),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decodes the bytes of an IDX file (magic 0x0000TTNN: type TT, NN dimensions, big-endian sizes)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{name} is not an IDX file: bad magic number {data[:4].hex()!r}.")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], ">u4"))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{name} holds {len(data)} bytes; its header {shape} needs {expected}: truncated or corrupt.")
    return np.frombuffer(data, dtype, offset=header).reshape(shape)


def write_idx(path: pathlib.Path, array: np.ndarray) -> None:
    """Writes `array` (uint8) as an IDX file; gzip-compressed if `path` ends in .gz."""
    array = np.ascontiguousarray(array, np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def read_checked(data_dir: pathlib.Path, name: str, md5: str, size: int) -> np.ndarray:
    """Reads `name` or `name.gz` from `data_dir`, checking the uncompressed size and md5."""
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.exists():
            data = candidate.read_bytes()
            if candidate.suffix == ".gz":
                data = gzip.decompress(data)
            if len(data) != size:
                raise ValueError(f"{candidate}: {len(data)} bytes uncompressed, expected {size}: truncated or wrong file.")
            digest = hashlib.md5(data).hexdigest()
            if digest != md5:
                raise ValueError(f"{candidate}: md5 {digest} of the uncompressed bytes, expected {md5}: corrupt or wrong file.")
            return parse_idx(data, str(candidate))
    raise FileNotFoundError(f"{data_dir} has neither {name} nor {name}.gz (the four MNIST IDX files are needed).")


def load_mnist(data_dir: str, files: dict[str, tuple[str, int]] = MNIST_FILES) -> dict[str, np.ndarray]:
    """{"train_images", "train_labels", "test_images", "test_labels"}: images float32 in [0, 1], labels int32.

    With `data_dir` = "" the data come from tfds `mnist` (downloaded on first use).
    """
    if not data_dir:
        import tensorflow_datasets as tfds

        train, test = tfds.as_numpy(tfds.load("mnist", split=["train", "test"], batch_size=-1))
        arrays = [train["image"][..., 0], train["label"], test["image"][..., 0], test["label"]]
    else:
        folder = pathlib.Path(data_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"data_dir {data_dir!r} does not exist (expected a folder of MNIST IDX files).")
        arrays = [read_checked(folder, name, md5, size) for name, (md5, size) in files.items()]
    train_images, train_labels, test_images, test_labels = arrays
    return {
        "train_images": np.asarray(train_images, np.float32) / 255.0,
        "train_labels": np.asarray(train_labels, np.int32),
        "test_images": np.asarray(test_images, np.float32) / 255.0,
        "test_labels": np.asarray(test_labels, np.int32),
    }
