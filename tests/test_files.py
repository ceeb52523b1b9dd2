"""A run's small files on a full disk: written whole or not at all, and the error names the file (issue 36, item 5).

/dev/full gives a real ENOSPC: a temporary file linked to it fails as a file on a full disk does.
"""

import errno
import pathlib

import pytest

from bn_inception import files, train
from tests.test_train import tiny_config

pytestmark = pytest.mark.skipif(not pathlib.Path("/dev/full").exists(), reason="needs /dev/full (Linux)")


def test_a_write_on_a_full_disk_keeps_the_old_file_and_names_it(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    (tmp_path / "config.json.tmp").symlink_to("/dev/full")
    with pytest.raises(OSError) as error:
        files.write_atomically(path, "new" * 10_000)
    assert error.value.errno == errno.ENOSPC
    assert str(error.value).startswith(f"[Errno 28] no space left on the device of {path} (")
    assert str(error.value).endswith(" free there)")
    assert path.read_text() == "old" and not (tmp_path / "config.json.tmp").exists()


def test_an_append_on_a_full_disk_leaves_no_partial_line(tmp_path, monkeypatch):
    path = tmp_path / "provenance.jsonl"
    path.write_text('{"step": 0}\n')

    class HalfWritten:  # writes half of what it is given, then finds the disk full, as a real write can
        def __init__(self, name, mode):
            self.file = open(name, mode)

        def __enter__(self):
            return self

        def write(self, text):
            self.file.write(text[: len(text) // 2])
            self.file.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(files, "open", HalfWritten, raising=False)
    with pytest.raises(OSError, match="no space left on the device of .*provenance.jsonl"):
        files.append(path, '{"step": 100}\n')
    assert path.read_text() == '{"step": 0}\n'


def test_a_full_disk_at_the_start_of_a_run_names_the_file_and_leaves_no_temporary(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json.tmp").symlink_to("/dev/full")
    with pytest.raises(OSError, match=f"no space left on the device of {workdir / 'config.json'} "):
        train.train_and_evaluate(tiny_config(tmp_path / "no_data", synthetic_data=True, num_train_steps=2), str(workdir))
    assert [p for p in workdir.rglob("*") if not p.is_dir()] == []  # no config.json(.tmp), no lock left
