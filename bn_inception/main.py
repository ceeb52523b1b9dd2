"""Command line: `python -m bn_inception.main --config=configs/<ablation>.py --workdir=DIR [--config.x=y]`.

Re-running the same command on the same workdir resumes the run.
"""

import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from bn_inception import mnist_experiment, train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, TensorBoard events, config.json.")
flags.DEFINE_bool(
    "distributed", None,
    "Call jax.distributed.initialize(). Default: on when launched on a TPU pod or under SLURM/Open MPI.",
)
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host without a cluster manager).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host without a cluster manager).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-host without a cluster manager).")
flags.DEFINE_integer(
    "heartbeat_timeout_seconds", 100,
    "Multi-host: when a process stops answering for this long, the others stop with an error naming it.",
)
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    """Initialises multi-host JAX when asked or detected, then trains."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.coordinator_address or FLAGS.distributed:
        jax.distributed.initialize(
            FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
            heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds,
        )
    elif FLAGS.distributed is None:
        _initialize_if_on_a_cluster(FLAGS.heartbeat_timeout_seconds)
    logging.info("JAX process %d/%d, %d local devices, %d in all.", jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
    if FLAGS.config.get("experiment") == "mnist":
        mnist_experiment.run(FLAGS.config, FLAGS.workdir)
    else:
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


def _initialize_if_on_a_cluster(heartbeat_timeout_seconds: int) -> None:
    on_cluster = any(v in os.environ for v in ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"))
    if on_cluster:
        jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout_seconds)


if __name__ == "__main__":
    app.run(main)
