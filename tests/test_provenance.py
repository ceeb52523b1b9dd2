"""provenance.py: the source fingerprint, the git state, the lines a run appends and the report's sentence."""

import hashlib
import json
import shutil
import subprocess

import jax
import pytest

from bn_inception import provenance


def fake_checkout(root):
    (root / "bn_inception").mkdir(parents=True)
    (root / "configs").mkdir()
    (root / "bn_inception" / "a.py").write_text("x = 1\n")
    (root / "configs" / "b.py").write_text("y = 2\n")
    return root


def test_the_fingerprint_is_the_sha256_of_the_package_and_config_sources(tmp_path):
    root = fake_checkout(tmp_path)
    expected = hashlib.sha256(b"bn_inception/a.py\0x = 1\n\0configs/b.py\0y = 2\n\0").hexdigest()
    assert provenance.source_fingerprint(root) == expected
    (root / "README.md").write_text("docs change nothing\n")
    (root / "bn_inception" / "notes.txt").write_text("neither do other files\n")
    (root / "bn_inception" / "a.py").touch()
    assert provenance.source_fingerprint(root) == expected
    (root / "configs" / "b.py").write_text("y = 3\n")
    assert provenance.source_fingerprint(root) != expected


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_git_state_names_the_commit_and_the_modified_tracked_files(tmp_path):
    assert provenance.git_state(tmp_path) == {"commit": None, "modified": None}  # not a checkout
    root = fake_checkout(tmp_path / "repo")

    def git(*args):
        return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    assert provenance.git_state(root) == {"commit": git("rev-parse", "HEAD"), "modified": []}
    (root / "configs" / "b.py").write_text("y = 3\n")
    (root / "untracked.py").write_text("")
    assert provenance.git_state(root)["modified"] == ["configs/b.py"]


def test_each_start_appends_a_line_and_a_cut_line_is_skipped(tmp_path):
    first = provenance.record(tmp_path, 0)
    with open(tmp_path / provenance.FILE, "a") as f:
        f.write('{"start_step": 150, "sou')  # a process killed while appending
    second = provenance.record(tmp_path, 300)
    lines = provenance.read(tmp_path)
    assert lines == [json.loads(json.dumps(first)), json.loads(json.dumps(second))]
    assert [line["start_step"] for line in lines] == [0, 300]
    assert second["source"] == provenance.source_fingerprint() and second["versions"]["jax"] == jax.__version__
    assert {"tensorflow", "tensorflow-cpu"} & set(second["versions"])  # under one name or the other
    assert None not in second["versions"].values()
    assert second["devices"].startswith(f"{jax.device_count()} x ")
    assert provenance.read(tmp_path / "absent") == []


def line(source, step, commit="c" * 40, modified=()):
    return {"source": source, "start_step": step, "commit": commit, "modified": list(modified)}


def test_the_report_sentence_says_which_runs_ran_which_source():
    same = {"inception seed 0": [line("a" * 64, 0), line("a" * 64, 150)], "bn_x30 seed 0": [line("a" * 64, 0)]}
    assert provenance.sources_note(same) == (f"Code: every recorded start ran the same code, source {'a' * 12} "
                                             f"(commit {'c' * 10}).")
    mixed = {"inception seed 0": [line("a" * 64, 0), line("b" * 64, 150, "d" * 40, ["bn_inception/models.py"])],
             "inception seed 1": []}
    assert provenance.sources_note(mixed) == (
        f"Code: the runs ran 2 different sources: source {'a' * 12} (commit {'c' * 10}) in inception seed 0 from "
        f"step 0; source {'b' * 12} (commit {'d' * 10}, modified bn_inception/models.py) in inception seed 0 from "
        "step 150; 1 of 2 runs have no provenance.jsonl (started before it was recorded).")
