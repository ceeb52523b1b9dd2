"""Records what the training loop's main thread does: each training step it dispatches, and each time it
fetches a device array to the host: np.asarray and np.array of a jax.Array, and `ArrayImpl._value` and
`.item()` (float(), int(), bool(), jax.device_get, .tolist(), formatting). On a CPU, JAX's transfer
guard lets fetches pass (device memory is host memory), so the tests count them instead.

In-process: `install(monkeypatch.setattr)`. In a subprocess (a pod's processes):
`python tests/host_sync_log.py OUTPUT.json <bn_inception.main flags>` runs the trainer with the log and
writes `steps_followed_by_fetches` to OUTPUT.json.
"""

import atexit
import json
import runpy
import sys
import threading
from collections.abc import Callable
from typing import Any


def install(setattr_: Callable[[Any, str, Any], None]) -> list[str]:
    """Patches JAX's fetch and the trainer's step functions (with `setattr_`); returns the live timeline."""
    import jax
    import numpy as np
    from jax._src import array

    from bn_inception import train

    timeline: list[str] = []

    def note() -> None:
        if threading.current_thread() is threading.main_thread():
            timeline.append("fetch")

    def logged_conversion(convert):
        def converted(x, *args, **kwargs):
            if isinstance(x, jax.Array):
                note()
            return convert(x, *args, **kwargs)
        return converted

    value, item = array.ArrayImpl._value, array.ArrayImpl.item

    def logged_value(self):
        note()
        return value.fget(self)

    def logged_item(self, *args):
        note()
        return item(self, *args)

    step_functions = train.step_functions

    def logged_step_functions(*args, **kwargs):
        p_train, p_eval = step_functions(*args, **kwargs)

        def logged_train(state, batch):
            timeline.append("step")
            return p_train(state, batch)

        logged_train.lower = p_train.lower  # the trainer compiles the step ahead of its first call
        return logged_train, p_eval

    setattr_(array.ArrayImpl, "_value", property(logged_value))
    setattr_(array.ArrayImpl, "item", logged_item)
    setattr_(np, "asarray", logged_conversion(np.asarray))
    setattr_(np, "array", logged_conversion(np.array))
    setattr_(train, "step_functions", logged_step_functions)
    return timeline


def steps_followed_by_fetches(timeline: list[str]) -> list[int]:
    """The steps after whose dispatch, and before the next step's, the host fetched from the devices."""
    steps, result = 0, []
    for event in timeline:
        if event == "step":
            steps += 1
        elif steps and (not result or result[-1] != steps):
            result.append(steps)
    return result


if __name__ == "__main__":
    output, sys.argv = sys.argv[1], [sys.argv[0]] + sys.argv[2:]
    log = install(setattr)
    atexit.register(lambda: open(output, "w").write(json.dumps(steps_followed_by_fetches(log))))
    runpy.run_module("bn_inception.main", run_name="__main__")
