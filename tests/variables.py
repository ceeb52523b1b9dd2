"""Network variables and forward passes for tests, without flax's per-shape compiles."""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import numpy as np

from bn_inception import folding


def random_variables(net: Any, x: Any, seed: int) -> dict[str, Any]:
    """Variables of `net` for inputs like `x`, drawn with numpy in x's dtype (flax's initialisers would compile
    one program per parameter shape): kernels N(0, 1/fan-in), other biases 0 as flax initialises them, and BN
    parameters and statistics far from their initial values, as after training."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(functools.partial(net.init, train=False), jax.random.key(0), x)

    def draw(path, leaf):
        shape, name = leaf.shape, path[-1]
        if name == "kernel":
            value = rng.normal(0, 1 / np.sqrt(np.prod(shape[:-1])), shape)
        elif path[0] == "batch_stats":
            value = rng.normal(0, 0.5, shape) if name == "mean" else rng.uniform(0.2, 3.0, shape)
        elif path[-2] == folding.BN:
            value = rng.uniform(-0.5, 0.5, shape) if name == "bias" else rng.uniform(0.5, 1.5, shape)
        else:
            value = np.zeros(shape)
        return value.astype(x.dtype)

    flat = flax.traverse_util.flatten_dict(shapes)
    return flax.traverse_util.unflatten_dict({path: draw(path, leaf) for path, leaf in flat.items()})


def jit_apply(net: Any, variables: Any, x: Any, train: bool = False) -> Any:
    """`net.apply` compiled as one program (eagerly, every layer's operations would compile one by one)."""
    return jax.jit(functools.partial(net.apply, train=train))(variables, x)
