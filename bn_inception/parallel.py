"""Where the computation runs: `jit` over a device mesh with the batch sharded, or `pmap`; one host or many.

The trainer hands this module host batches and gets device arrays back; the model knows nothing of it.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import flax.jax_utils
import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P, SingleDeviceSharding

PMAP_AXIS = "batch"


def check_batch_layout(global_batch: int, bn_group_size: int, num_devices: int, num_processes: int) -> None:
    """Raises ValueError unless the global batch splits evenly over processes, devices and BN groups."""
    if global_batch < 1 or global_batch % num_devices or global_batch % num_processes:
        raise ValueError(
            f"global_batch_size={global_batch} must be a positive multiple of the {num_devices} devices "
            f"({num_processes} processes)."
        )
    per_device = global_batch // num_devices
    if bn_group_size and (bn_group_size > per_device or per_device % bn_group_size):
        raise ValueError(
            f"bn_group_size={bn_group_size} must divide each device's share of the batch, {per_device} "
            f"(global_batch_size={global_batch} over {num_devices} devices); use a multiple of "
            f"{bn_group_size * num_devices} or --config.bn_group_size=0 for whole-batch statistics."
        )


def check_eval_batch_size(batch_size: int, name: str = "batch_size") -> None:
    """Raises ValueError unless an evaluation batch of `batch_size` splits evenly over all devices."""
    if batch_size < 1 or batch_size % jax.device_count():
        raise ValueError(f"{name}={batch_size} must be a positive multiple of the {jax.device_count()} devices.")


# XLA:CPU admits at most 32 programs in flight per device, and runs a program of several in-process
# devices (simulated with --xla_force_host_platform_device_count) as one part per device. With more than 32
# dispatched ahead and collectives among them, a device's part of an all-reduce can wait for admission
# behind programs that wait for that all-reduce, while the other devices' parts wait for it in the
# all-reduce: a deadlock, until XLA aborts the process (SIGABRT). Shown with a 10-line script and the
# threads' stacks in docs/development.md. So on such a host the loops that dispatch ahead wait for what
# they dispatched CPU_MAX_AHEAD iterations earlier; on accelerators, and on one CPU device, they never wait.
CPU_MAX_AHEAD = 8


class DispatchPacer:
    """Bounds how far a loop dispatches ahead of XLA:CPU's in-process devices (see `CPU_MAX_AHEAD`)."""

    def __init__(self, max_ahead: int = CPU_MAX_AHEAD):
        devices = jax.local_devices()
        self.max_ahead = max_ahead if devices[0].platform == "cpu" and len(devices) > 1 else 0
        self.pending: collections.deque = collections.deque()

    def dispatched(self, outputs: Any) -> None:
        """Notes the outputs of an iteration just dispatched; on a host of several CPU devices, waits until
        those of `max_ahead` iterations ago are computed (never fetching them). Elsewhere does nothing."""
        if not self.max_ahead:
            return
        self.pending.append(outputs)
        if len(self.pending) > self.max_ahead:
            jax.block_until_ready(self.pending.popleft())


@dataclasses.dataclass(frozen=True)
class Runner:
    """Places batches and state on the devices and compiles steps, in `jit` or `pmap` mode."""

    mode: str
    mesh: Mesh

    @classmethod
    def create(cls, config: ml_collections.ConfigDict) -> "Runner":
        """Validates the batch layout for this config on the visible devices and builds the runner."""
        if config.parallelism not in ("jit", "pmap"):
            raise ValueError(f"parallelism={config.parallelism!r}; expected 'jit' or 'pmap'.")
        check_batch_layout(config.global_batch_size, config.bn_group_size, jax.device_count(), jax.process_count())
        check_eval_batch_size(config.eval_batch_size, "eval_batch_size")
        return cls.over_all_devices(config.parallelism)

    @classmethod
    def over_all_devices(cls, mode: str = "jit") -> "Runner":
        """A runner over every device of every process, with the batch on the mesh axis "data"."""
        return cls(mode, Mesh(np.array(jax.devices()), ("data",)))

    @property
    def axis_name(self) -> str | None:
        """The mapped axis that steps reduce over (pmap only; jit reduces over the global batch itself)."""
        return PMAP_AXIS if self.mode == "pmap" else None

    @property
    def program_devices(self) -> int:
        """How many devices the program that `compile_step` lowers describes: every device's share of the
        global batch under jit, one device's under pmap (what a per-device FLOP count divides by)."""
        return self.mesh.size if self.mode == "jit" else 1

    @property
    def state_sharding(self) -> jax.sharding.Sharding:
        """Where a restored state lands before `put_state`."""
        if self.mode == "pmap":
            return SingleDeviceSharding(jax.local_devices()[0])
        return NamedSharding(self.mesh, P())

    def shard_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's batch -> its part of the global batch (jit) or one slice per local device (pmap)."""
        if self.mode == "pmap":
            n = jax.local_device_count()
            return {k: v.reshape((n, v.shape[0] // n) + v.shape[1:]) for k, v in batch.items()}
        sharding = NamedSharding(self.mesh, P("data"))
        return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}

    def prefetch(self, batches: Iterator[dict[str, np.ndarray]], size: int = 2) -> Iterator[dict[str, jax.Array]]:
        """`shard_batch` of each host batch, `size` batches ahead: the transfer of the next batches to the
        devices overlaps the running step (dispatch is asynchronous). Order and content are unchanged."""
        queue: collections.deque = collections.deque()
        for batch in batches:
            queue.append(self.shard_batch(batch))
            if len(queue) == size:
                yield queue.popleft()
        yield from queue

    def put_state(self, state: Any) -> Any:
        """Replicates a state on every device."""
        if self.mode == "pmap":
            return flax.jax_utils.replicate(state)
        return jax.device_put(state, NamedSharding(self.mesh, P()))

    def get_state(self, state: Any) -> Any:
        """The state as it is saved: one replica."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: x[0], state)
        return state

    def compile_step(self, fn: Callable[..., Any], donate_state: bool = False) -> Callable[..., Any]:
        """Compiles `fn(state, batch)`; outputs are replicated."""
        donate = (0,) if donate_state else ()
        if self.mode == "pmap":
            return jax.pmap(fn, axis_name=PMAP_AXIS, donate_argnums=donate)
        return jax.jit(fn, donate_argnums=donate, out_shardings=NamedSharding(self.mesh, P()))

    def to_host(self, tree: Any) -> Any:
        """Replicated device outputs -> numpy, on every process."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: np.asarray(x[0]), tree)
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)

    def any_process(self, flag: bool) -> bool:
        """True if `flag` is True on any process (all processes must call this together)."""
        if jax.process_count() == 1:
            return flag
        return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))
