"""Event files read without TensorFlow, against what TensorFlow's own writers put in them."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bn_inception import events
from tests.test_train import REPO


def _write(run_dir, steps):
    """Scalars as TensorFlow 2 writes them (tensors with the scalars plugin), one event per step and tag."""
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for step in steps:
            tf.summary.scalar("train/loss", 1.0 / (step + 1), step=step)
            tf.summary.scalar("eval/top1_accuracy", np.float32(step / 100), step=step)
    writer.close()
    (path,) = run_dir.glob("events.out.tfevents.*")
    return path


def _tensorflow_records(path):
    return [record.numpy() for record in tf.data.TFRecordDataset(str(path))]


def test_scalars_and_records_equal_what_tensorflow_reads(tmp_path):
    path = _write(tmp_path, range(0, 60, 10))
    assert list(events._records(path)) == _tensorflow_records(path)
    scalars = events.read_scalars(tmp_path)
    assert scalars["train/loss"] == [(s, pytest.approx(1.0 / (s + 1))) for s in range(0, 60, 10)]
    assert scalars["eval/top1_accuracy"] == [(s, pytest.approx(s / 100)) for s in range(0, 60, 10)]


def test_a_record_cut_short_ends_the_file_and_a_changed_byte_is_an_error(tmp_path):
    path = _write(tmp_path, range(3))
    records = _tensorflow_records(path)
    whole = path.read_bytes()
    # A run still writing its last record: the file ends inside it (in its CRC, its data, its header).
    for cut in (3, 10, len(records[-1]) + 14):
        path.write_bytes(whole[:-cut])
        assert list(events._records(path)) == records[:-1]
    # A byte changed inside the last record's data: its CRC-32C no longer matches.
    path.write_bytes(whole[:-6] + bytes([whole[-6] ^ 1]) + whole[-5:])
    with pytest.raises(ValueError, match="corrupt event file"):
        list(events._records(path))


def test_crc32c_check_value():
    # CRC-32C of "123456789" is 0xE3069283 (RFC 3720, B.4); TFRecords store it masked:
    # rotate right by 15 bits, add 0xA282EAD8.
    crc = 0xE3069283
    assert events._masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_the_commands_that_only_read_runs_do_not_import_tensorflow():
    code = ("import sys; sys.path[:0] = ['scripts', 'scripts/dev']; import compare_ablations, run_mini_ablation, step_times, "
            "plateau_trend; print(sorted(m for m in ('tensorflow', 'jax') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
