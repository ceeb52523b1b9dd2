"""Joining the processes of a multi-host job: the flags and start-up shared by the training and
evaluation commands (`bn_inception/main.py`, `scripts/evaluate.py`)."""

import os

import jax
from absl import flags

FLAGS = flags.FLAGS
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

_CLUSTER_VARIABLES = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def initialize_from_flags() -> None:
    """`jax.distributed.initialize` when the flags ask for it, or by default on a TPU pod or under a
    cluster manager (SLURM, Open MPI), which tell JAX the coordinator and the process count."""
    if FLAGS.coordinator_address or FLAGS.distributed:
        jax.distributed.initialize(
            FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
            heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds,
        )
    elif FLAGS.distributed is None and any(v in os.environ for v in _CLUSTER_VARIABLES):
        jax.distributed.initialize(heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds)
