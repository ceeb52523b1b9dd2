"""The manual stays true: every command in README.md's and docs/'s code names a file that exists and flags and
config keys its command accepts, and every relative link and image is there. Nothing is trained: each
command's accepted flags come from its own --help, each config key from loading the config it names."""

import functools
import importlib
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from tests.test_train import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"```(?:bash|sh)?\n(.*?)```", re.S)
INLINE = re.compile(r"`((?:python|bash) [^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# A flag as its command's --help defines it: "  --name ..." (argparse) or "  --[no]name: ..." (absl).
DEFINED = re.compile(r"^\s+(?:-\w, )?--(\[no\])?([\w.-]+)", re.M)
PLACEHOLDER = re.compile(r"[<>]|\.\.\.|^[A-Z_]+$")


def commands(text: str) -> list[str]:
    """The `python ...` and `bash ...` commands of a page: in its code blocks (continued lines joined, comments
    and prompts left out, `&&` and `;` chains split) and in its inline code."""
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*", "", line)
            for part in re.split(r"&&|;|\|", line):
                found.append(part.strip())
    found += INLINE.findall(text)
    out = []
    for command in found:
        words = command.split()
        while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value before the command
            words = words[1:]
        if words and words[0] in ("python", "python3", "bash"):
            out.append(" ".join(words))
    return out


def target(command: str) -> tuple[str, list[str]] | None:
    """(the file a command runs, its arguments), or None for what is not this project's (pip, venv, pytest)."""
    words = shlex.split(command.replace("[", " ").replace("]", " "))
    if words[0] == "bash":
        return words[1], words[2:]
    if words[1] == "-m":
        module = words[2]
        if not module.startswith("bn_inception"):
            return None
        return module.replace(".", "/") + ".py", words[3:]
    if words[1] == "-c":
        return None
    return words[1], words[2:]


# Commands that need a package the project does not install (the PyTorch comparison): their flags are read
# from their argparse calls instead of their --help.
OPTIONAL = {"scripts/dev/benchmark_pytorch.py"}


@functools.lru_cache(maxsize=None)
def accepted_flags(script: str) -> frozenset[str]:
    """The flags `script` defines, read from its --help."""
    if script.endswith(".sh"):
        return frozenset()
    if script in OPTIONAL:
        return frozenset(re.findall(r'add_argument\(\s*"--([\w.]+)"', (REPO / script).read_text())) | {"help"}
    module = script[:-3].replace("/", ".")
    argv = ["-m", module] if script.startswith("bn_inception/") else [script]
    result = subprocess.run([sys.executable, *argv, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{script} --help: {result.stderr[-2000:]}"
    flags = set()
    for no, name in DEFINED.findall(result.stdout):
        flags |= {name, f"no{name}"} if no else {name}
    return frozenset(flags | {"help"})


def config_has(config_arg: str | None, key: str) -> bool:
    """Whether the config `--config=FILE[:ARGS]` names (the shared default without one) has `key`."""
    path, _, args = (config_arg or "configs/default.py").partition(":")
    if PLACEHOLDER.search(path) or not (REPO / path).exists():
        path = "configs/default.py"
    config = importlib.import_module(path[:-3].replace("/", ".")).get_config(args if "..." not in args else "")
    node = config
    for part in key.split("."):
        if part not in node:
            return False
        node = node[part]
    return True


def all_commands():
    return [(page.relative_to(REPO).as_posix(), command) for page in PAGES for command in commands(page.read_text())]


def test_the_pages_hold_commands_to_check():
    found = all_commands()
    assert len(found) > 40
    assert any("bn_inception.main" in c for _, c in found) and any("scripts/evaluate.py" in c for _, c in found)


@pytest.mark.parametrize("page,command", all_commands())
def test_each_command_names_a_file_and_flags_that_exist(page, command):
    parsed = target(command)
    if parsed is None:
        return
    script, args = parsed
    assert (REPO / script).exists(), f"{page}: `{command}` runs {script}, which does not exist"
    flags = accepted_flags(script)
    config_arg = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
    for arg in args:
        if not arg.startswith("--") or arg == "--":
            continue
        name = arg[2:].split("=", 1)[0]
        if PLACEHOLDER.search(name):
            continue
        if name.startswith("config.") and "config" in flags:
            key = name[len("config."):]
            if not PLACEHOLDER.search(key) and key != "key":
                assert config_has(config_arg, key), f"{page}: `{command}`: no config key {key!r}"
        else:
            assert name in flags, f"{page}: `{command}`: {script} has no flag --{name} (it has {sorted(flags)})"


def anchors(page: pathlib.Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_image_exists(page):
    prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", page.read_text(), flags=re.S))  # no code
    for link in LINK.findall(prose):
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {link}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: link to {link}: no such heading in {linked.name}"


def test_the_check_sees_a_renamed_flag_file_and_key():
    # What a rename would leave behind: each must fail the checks above.
    assert target("python scripts/evaluate.py --workdir=x")[0] == "scripts/evaluate.py"
    assert not (REPO / "scripts/evaluate_old.py").exists()
    assert "crops" in accepted_flags("scripts/evaluate.py") and "crop" not in accepted_flags("scripts/evaluate.py")
    assert "workdir" in accepted_flags("bn_inception/main.py") and "print_config" in accepted_flags("bn_inception/main.py")
    assert accepted_flags("scripts/dev/benchmark_pytorch.py") >= {"batch_size", "image_size", "steps", "threads"}
    assert config_has("configs/bn_x30.py:imagenette", "model.precision")
    assert not config_has("configs/bn_x30.py:imagenette", "model.precison")
    assert commands("```bash\nA=1 python x.py \\\n  --y=2  # note\n```\nand `bash s.sh --z`") == [
        "python x.py --y=2", "bash s.sh --z"]
