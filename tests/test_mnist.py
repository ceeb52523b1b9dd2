"""The MNIST experiment: IDX reading with checks, and a short run that yields Figure 1's three panels."""

import gzip
import hashlib
import json

import numpy as np
import pytest

from bn_inception import events, mnist_data, mnist_experiment
from configs import mnist


def _write_small_set(folder, compress):
    rng = np.random.default_rng(0)
    arrays = {"images": rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8), "labels": np.arange(5, dtype=np.uint8)}
    files = {}
    for name, array in arrays.items():
        path = folder / (name + (".gz" if compress else ""))
        mnist_data.write_idx(path, array)
        raw = gzip.decompress(path.read_bytes()) if compress else path.read_bytes()
        files[name] = (hashlib.md5(raw).hexdigest(), len(raw))
    return arrays, files


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_idx_round_trip(tmp_path, compress):
    arrays, files = _write_small_set(tmp_path, compress)
    for name, (md5, size) in files.items():
        np.testing.assert_array_equal(mnist_data.read_checked(tmp_path, name, md5, size), arrays[name])


def test_idx_reader_rejects_truncated_and_corrupt_files(tmp_path):
    _, files = _write_small_set(tmp_path, compress=False)
    md5, size = files["images"]
    data = (tmp_path / "images").read_bytes()
    (tmp_path / "images").write_bytes(data[:-7])
    with pytest.raises(ValueError, match=f"{size - 7} bytes uncompressed, expected {size}"):
        mnist_data.read_checked(tmp_path, "images", md5, size)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        mnist_data.parse_idx(data[:-7], "images")
    (tmp_path / "images").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ValueError, match=f"expected {md5}: corrupt or wrong file"):
        mnist_data.read_checked(tmp_path, "images", md5, size)
    with pytest.raises(FileNotFoundError, match="neither missing nor missing.gz"):
        mnist_data.read_checked(tmp_path, "missing", md5, size)


def test_real_mnist_files_pass_their_checks(shared_data):
    data = mnist_data.load_mnist(str(shared_data / "mnist"))
    assert data["train_images"].shape == (60_000, 28, 28) and data["test_images"].shape == (10_000, 28, 28)
    assert np.bincount(data["test_labels"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_short_run_produces_all_three_panels(shared_data, tmp_path):
    config = mnist.get_config("short")
    config.data_dir = str(shared_data / "mnist")
    results = mnist_experiment.run(config, str(tmp_path))
    for name in ("baseline", "bn"):
        curves = results[name]
        assert curves["step"] == [100, 200, 300, 400, 500, 600]
        percentiles = np.array(curves["percentiles"])
        assert percentiles.shape == (6, 3) and (np.diff(percentiles, axis=1) >= 0).all()
        assert json.loads((tmp_path / name / "result.json").read_text()) == curves
        scalars = events.read_scalars(tmp_path / name)
        assert [s for s, _ in scalars["sigmoid_input/p50"]] == curves["step"]
    # The paper's Figure 1(a): with BN the network is more accurate, and sooner.
    assert results["bn"]["test_accuracy"][-1] > results["baseline"]["test_accuracy"][-1] > 0.5
    assert (tmp_path / "figure1.png").stat().st_size > 10_000
    assert "bn: final test accuracy" in (tmp_path / "summary.txt").read_text()
