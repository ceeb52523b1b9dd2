"""One process per workdir (issue 36, item 1): a second run or protocol runner on a folder in use refuses at
once naming the first; a lock left by a process that died does not block a rerun."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from bn_inception import workdir_lock
from tests.test_train import REPO, _env, _main_command


def test_a_second_holder_is_refused_naming_the_first_and_gets_it_once_released(tmp_path):
    first = workdir_lock.FolderLock(tmp_path / "run").acquire()
    with pytest.raises(workdir_lock.Busy, match=f"in use by process {os.getpid()} on {socket.gethostname()}"):
        workdir_lock.FolderLock(tmp_path / "run").acquire()
    first.release()
    assert not (tmp_path / "run" / "lock").exists()
    second = workdir_lock.FolderLock(tmp_path / "run").acquire()
    assert second.note is None
    second.release()


def _write_lock(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "heartbeat": time.time(),
              "command": ["python", "-m", "bn_inception.main"]} | fields
    (folder / "lock").write_text(json.dumps(record))


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(tmp_path / "a", pid=dead.pid)
    lock = workdir_lock.FolderLock(tmp_path / "a").acquire()
    assert lock.note.startswith(f"{tmp_path / 'a' / 'lock'}: taken over from process {dead.pid} on ")
    assert json.loads((tmp_path / "a" / "lock").read_text())["pid"] == os.getpid()
    lock.release()
    # A reused pid (alive, but started at another time) is not the holder either.
    _write_lock(tmp_path / "b", pid=os.getpid(), pid_start="1")
    workdir_lock.FolderLock(tmp_path / "b").acquire().release()
    # Another host: alive while its heartbeat is recent, taken over once it is older than STALE_SECONDS.
    _write_lock(tmp_path / "c", host="another-host", pid=1)
    with pytest.raises(workdir_lock.Busy, match="in use by process 1 on another-host"):
        workdir_lock.FolderLock(tmp_path / "c").acquire()
    _write_lock(tmp_path / "c", host="another-host", pid=1, heartbeat=time.time() - workdir_lock.STALE_SECONDS - 1)
    assert "taken over from process 1 on another-host" in workdir_lock.FolderLock(tmp_path / "c").acquire().note
    # An unreadable lock (a holder killed while writing it) is taken over too.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "lock").write_text("")
    assert "taken over from an unreadable lock" in workdir_lock.FolderLock(tmp_path / "d").acquire().note


def test_a_refused_acquire_leaves_the_holders_lock_untouched(tmp_path):
    _write_lock(tmp_path / "held")
    with pytest.raises(workdir_lock.Busy):
        workdir_lock.FolderLock(tmp_path / "held").acquire()
    assert (tmp_path / "held" / "lock").exists()  # the holder's lock untouched


def test_a_second_run_on_a_workdir_in_use_refuses_and_the_first_trains_on(image_folder, tmp_path):
    # The case: the same workdir started again, with --config.seed=1 by mistake.
    first = subprocess.Popen(_main_command(tmp_path, image_folder, "--config.num_train_steps=100000",
                                           "--config.log_every_steps=1"),
                             cwd=REPO, env=_env(8), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (tmp_path / "config.json").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()[1][-3000:]
    second = subprocess.run(_main_command(tmp_path, image_folder, "--config.seed=1"), cwd=REPO, env=_env(8),
                            capture_output=True, text=True, timeout=300)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=300)
    assert second.returncode == 1 and len(second.stderr.strip().splitlines()) == 1, second.stderr[-3000:]
    assert f"is in use by process {first.pid} on {socket.gethostname()}" in second.stderr
    assert first.returncode == 0 and "Preempted at step" in out, err[-3000:]
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0
    assert not (tmp_path / "lock").exists()  # released at the end


def test_a_second_protocol_runner_on_a_runs_folder_refuses(tmp_path):
    holder = workdir_lock.FolderLock(tmp_path / "runs").acquire()
    result = subprocess.run([sys.executable, "scripts/run_mini_ablation.py", f"--runs={tmp_path / 'runs'}",
                             "--budget=8", "--only=inception", "--max_seeds=1"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    holder.release()
    assert result.returncode == 1 and f"in use by process {os.getpid()}" in result.stderr
    assert not (tmp_path / "runs" / "inception").exists()
    # --dry_run only reads: it runs beside a runner.
    holder = workdir_lock.FolderLock(tmp_path / "runs").acquire()
    result = subprocess.run([sys.executable, "scripts/run_mini_ablation.py", f"--runs={tmp_path / 'runs'}",
                             "--budget=8", "--dry_run"], cwd=REPO, capture_output=True, text=True, timeout=300)
    holder.release()
    assert result.returncode == 0, result.stderr[-2000:]
