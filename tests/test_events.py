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


def test_a_record_cut_short_ends_the_file_and_a_changed_byte_ends_it_with_a_warning(tmp_path, capsys):
    path = _write(tmp_path, range(3))
    records = _tensorflow_records(path)
    whole = path.read_bytes()
    # A run still writing its last record: the file ends inside it (in its CRC, its data, its header).
    for cut in (3, 10, len(records[-1]) + 14):
        path.write_bytes(whole[:-cut])
        assert list(events._records(path)) == records[:-1]
    # A byte changed inside the last record's data: its CRC-32C no longer matches. The records before it are
    # read, and the damage is named once (issue 36: a damaged event file no longer fails a finished run).
    path.write_bytes(whole[:-6] + bytes([whole[-6] ^ 1]) + whole[-5:])
    assert list(events._records(path)) == records[:-1]
    assert "is damaged (bad record at byte" in capsys.readouterr().err


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


def test_a_damaged_event_file_is_read_up_to_the_damage_and_named(tmp_path, capsys):
    from clu import metric_writers

    writer = metric_writers.create_default_writer(str(tmp_path), asynchronous=False)
    for step in range(1, 11):
        writer.write_scalars(step, {"eval/top1_accuracy": step / 10})
    writer.close()
    path = next(tmp_path.glob("events.out.tfevents.*"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one damaged byte mid-file (a zero byte, a flipped bit)
    path.write_bytes(bytes(data))
    curve = events.read_scalars(tmp_path)["eval/top1_accuracy"]
    assert 1 <= len(curve) < 10 and curve == [(s, pytest.approx(s / 10)) for s in range(1, len(curve) + 1)]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"warning: event file {path} is damaged (bad record" in err
    assert events.damaged(tmp_path) == [f"{path.resolve()}: damaged (" + events.damaged(tmp_path)[0].split(": damaged (")[1]]
    assert events.accuracy_summary(tmp_path).startswith("final eval top-1")  # a finished run's rerun line


def test_a_provenance_line_that_is_not_utf8_is_skipped_and_named(tmp_path, capsys):
    from bn_inception import provenance

    (tmp_path / "provenance.jsonl").write_bytes(b'{"start_step": 0}\n{"start_step": 5, "host": "h\xff"}\n'
                                                b'{"start_step": 9}\n{"start_st')
    assert provenance.read(tmp_path) == [{"start_step": 0}, {"start_step": 9}]
    assert capsys.readouterr().err == f"warning: {tmp_path / 'provenance.jsonl'}: 1 damaged line (not UTF-8) skipped.\n"
