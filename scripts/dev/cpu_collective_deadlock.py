"""Reproduces XLA:CPU's deadlock of in-process devices that aborted CI runs (docs/development.md).

  python scripts/dev/cpu_collective_deadlock.py --programs=50 [--paced] [--seconds=60]

On 8 simulated CPU devices, dispatches rounds of `--programs` small jitted programs, every other one with an
all-reduce, then waits for the round. Over 32 programs in flight (XLA:CPU's admission limit per device) it
deadlocks: XLA warns after 5 s that the all-reduce "may be stuck", and aborts the process (SIGABRT) after
`--abort_seconds`; attach `gdb -p PID -batch -ex "thread apply all bt"` or `py-spy dump --native --pid PID`
meanwhile. With `--paced` the same rounds go through `parallel.DispatchPacer`, the fix. Prints the rounds done.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=50, help="programs dispatched per round (deadlocks over 32)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run rounds")
    parser.add_argument("--paced", action="store_true", help="dispatch through parallel.DispatchPacer")
    parser.add_argument("--abort_seconds", type=int, default=60, help="XLA's stuck-collective abort")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (
        "--xla_force_host_platform_device_count=8 --xla_cpu_collective_call_warn_stuck_timeout_seconds=5 "
        f"--xla_cpu_collective_call_terminate_timeout_seconds={args.abort_seconds}"
    )
    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from bn_inception import parallel

    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    all_reduce = jax.jit(lambda x: jnp.sum(jnp.sin(x) @ jnp.cos(x).T), out_shardings=replicated)
    local = jax.jit(lambda x: x * 2, out_shardings=batch)
    rng = np.random.default_rng(0)
    began, rounds = time.monotonic(), 0
    while time.monotonic() - began < args.seconds:
        pacer = parallel.DispatchPacer() if args.paced else None
        outputs = []
        for k in range(args.programs):
            x = jax.device_put(rng.random((64, 256), np.float32), batch)
            outputs.append(all_reduce(x) if k % 2 else local(x))
            if pacer:
                pacer.dispatched(outputs[-1])
        jax.block_until_ready(outputs)
        rounds += 1
    print(f"{rounds} rounds of {args.programs} programs in {args.seconds:g} s ({'paced' if args.paced else 'not paced'})")


if __name__ == "__main__":
    main()
