"""Command line: `python -m bn_inception.main --config=configs/<ablation>.py --workdir=DIR [--config.x=y]`.

Re-running the same command on the same workdir resumes the run. Multi-host flags: `distributed.py`;
console flags: `console.py`.
"""

import ast
import json
import pathlib
import sys

from bn_inception import preemption

preemption.install()  # first: a SIGTERM during the slow imports and compilation below also ends cleanly

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bn_inception import console, distributed  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, TensorBoard events, config.json.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.DEFINE_bool("print_config", False, "Print the resolved config (every key and its value) and exit.")

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
USAGE = """\
Trains one of the paper's networks, or resumes it: re-run the same command on the same workdir.

  python -m bn_inception.main --config=configs/<config>.py[:ARGS] --workdir=DIR [--config.key=value ...]

Configs (configs/):
{configs}

Config arguments after the file name (comma-separated): `imagenette` (the reduced-scale Figure 3
protocol: 10 ImageNet classes, 64px, width 1/4, for a CPU), `tiny` (32px, 1/8 width, 20 steps: smoke
tests), `synthetic` (random images: compute benchmarks), `member=N` (ensemble.py: member 0..5).
  e.g. --config=configs/bn_x30.py:imagenette --config.data_dir=../shared/data/imagenette

--print_config prints every key of the resolved config with its value and exits; any key can be set with
--config.key=value. Multi-host (pods): run the same command on every host; --coordinator_address,
--num_processes and --process_id where no cluster manager (TPU, SLURM, Open MPI) tells JAX. The console
shows progress, evaluations, checkpoints and a summary; --verbose adds the libraries' logs and tracebacks.
"""


def _config_lines() -> str:
    """One line per config file: its name and the first line of its docstring."""
    lines = []
    for path in sorted(CONFIGS.glob("*.py")):
        if path.name in ("__init__.py", "default.py", "accelerated.py"):
            continue
        doc = (ast.get_docstring(ast.parse(path.read_text())) or "").splitlines()
        lines.append(f"  {path.stem:18s} {doc[0] if doc else ''}")
    return "\n".join(lines)


def _check_config_file() -> None:
    """A --config file that does not exist is named, with the configs there are (before loading anything)."""
    if not FLAGS["config"].present:
        return
    path = pathlib.Path(config_flags.get_config_filename(FLAGS["config"]).partition(":")[0])
    if not path.is_file():
        known = ", ".join(p.name for p in sorted(CONFIGS.glob("*.py")) if p.name not in ("__init__.py", "accelerated.py"))
        raise ValueError(f"--config={path}: no such file (configs/ has {known}).")
    FLAGS.config  # noqa: B018  (loads it: errors in the file or in --config.key=value overrides surface here)


def main(argv: list[str]) -> None:
    """Initialises multi-host JAX when asked or detected, then trains."""
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS["config"].value is None and not FLAGS["config"].present:
        raise ValueError("--config is required, e.g. --config=configs/bn_x30.py:imagenette (--help lists the configs).")
    if FLAGS.print_config:
        print(json.dumps(FLAGS.config.to_dict(), indent=1, sort_keys=True, default=str))
        return
    if not FLAGS.workdir:
        raise ValueError("--workdir is required: the run directory for checkpoints, events and config.json.")
    # TensorFlow (the input pipeline) only now: its 10 s import would otherwise delay --help and flag errors.
    console.quiet_tensorflow_import(sys.argv)
    from bn_inception import mnist_experiment, train

    distributed.initialize_from_flags()
    if FLAGS.config.get("experiment") == "mnist":
        mnist_experiment.run(FLAGS.config, FLAGS.workdir)
    else:
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    preemption.exit_if_work_abandoned()  # a compilation a stop gave up on: not waited for


if __name__ == "__main__":
    console.run(main, USAGE.format(configs=_config_lines()), check=_check_config_file)
