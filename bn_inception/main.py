"""Command line: `python -m bn_inception.main --config=configs/<ablation>.py --workdir=DIR [--config.x=y]`.

Re-running the same command on the same workdir resumes the run. Multi-host flags: `distributed.py`.
"""

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from bn_inception import distributed, mnist_experiment, train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, TensorBoard events, config.json.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    """Initialises multi-host JAX when asked or detected, then trains."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    distributed.initialize_from_flags()
    logging.info("JAX process %d/%d, %d local devices, %d in all.", jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
    if FLAGS.config.get("experiment") == "mnist":
        mnist_experiment.run(FLAGS.config, FLAGS.workdir)
    else:
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
