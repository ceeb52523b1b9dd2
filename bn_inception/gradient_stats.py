"""Section 3.3's mechanism, measured: the size of each convolution kernel's gradient and update against the
kernel's own size.

BN makes a layer's output invariant to the scale of the kernel before it (section 3.3: BN(aW u) = BN(W u)),
so its gradient shrinks as the kernel grows (d BN(aW u)/d(aW) = 1/a d BN(W u)/dW): what moves a layer is
the angular update ||W_t+1 - W_t|| / ||W_t||, not the learning rate alone. Per kernel (the convolutions'
and the classifier's, in network order) and per stage (stem, 3x, 4x, 5x, classifier) this module gives:

- ||dL/dW|| / ||W||, the relative gradient;
- ||W||, the kernel's norm;
- ||W_t+1 - W_t|| / ||W_t||, the angular update of one step.

`stage_scalars` are what training logs (`train/grad_to_weight/<stage>`, `train/weight_norm/<stage>`,
`train/angular_update/<stage>`); `scripts/gradient_profile.py` prints and plots the per-kernel figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

STAGES = ("stem", "3x", "4x", "5x", "classifier")
# TensorBoard tags of the stage summaries, under train/ (metric: tag prefix).
SCALARS = ("grad_to_weight", "weight_norm", "angular_update")

Path = tuple[str, ...]


def stage_of(path: Path) -> str:
    """The stage of a parameter path: 'classifier', '3x'/'4x'/'5x' for the Inception blocks, else 'stem'."""
    top = path[0]
    if top == "classifier":
        return "classifier"
    if top.startswith("inception_"):
        return top[len("inception_")] + "x"
    return "stem"


def layer_name(path: Path) -> str:
    """A kernel's layer as tables name it: 'inception_3a/double_3x3_b' for ('inception_3a', 'double_3x3_b',
    'Conv_0', 'kernel')."""
    return "/".join(k for k in path[:-1] if k != "Conv_0")


def kernel_paths(params: Any) -> list[Path]:
    """The paths of every kernel (convolutions and the classifier) in `params`, in the tree's key order."""
    return [tuple(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(params)
            if path[-1].key == "kernel"]


def network_order(model: nn.Module, image_size: int) -> list[Path]:
    """The kernel paths of `model` in the order the forward pass applies them (stem, blocks and their
    branches, classifier), found by tracing its initialisation abstractly (nothing is computed)."""
    order: list[Path] = []

    def record(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        module = context.module
        if context.method_name == "__call__" and isinstance(module, (nn.Conv, nn.Dense)):
            path = tuple(module.scope.path) + ("kernel",)
            if path not in order:
                order.append(path)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)), train=False))
    return order


def _get(tree: Any, path: Path) -> jax.Array:
    for key in path:
        tree = tree[key]
    return tree


def _squared(tree: Any, path: Path) -> jax.Array:
    return jnp.sum(jnp.square(_get(tree, path).astype(jnp.float32)))


def layer_figures(old: Any, new: Any, grads: Any, paths: list[Path]) -> dict[str, jax.Array]:
    """Per kernel of `paths` (arrays in that order): `weight_norm` ||W_t||, `grad_to_weight` ||dL/dW|| / ||W_t||
    and `angular_update` ||W_t+1 - W_t|| / ||W_t||, from the parameters before (`old`) and after (`new`) a step
    and the step's gradient."""
    weight = jnp.sqrt(jnp.stack([_squared(old, p) for p in paths]))
    grad = jnp.sqrt(jnp.stack([_squared(grads, p) for p in paths]))
    change = jnp.sqrt(jnp.stack([jnp.sum(jnp.square(_get(new, p) - _get(old, p))) for p in paths]))
    return {"weight_norm": weight, "grad_to_weight": grad / weight, "angular_update": change / weight}


def stage_scalars(old: Any, new: Any, grads: Any) -> dict[str, jax.Array]:
    """The stage summaries training logs, as metrics named '<figure>/<stage>': per stage, the figures of
    `layer_figures` over all its kernels taken as one vector (||W_stage|| = sqrt of the sum of its kernels'
    squared norms; the ratios of the stage's norms). Stages without kernels are left out."""
    paths = kernel_paths(old)
    scalars = {}
    for stage in STAGES:
        mine = [p for p in paths if stage_of(p) == stage]
        if not mine:
            continue
        weight = jnp.sqrt(sum(_squared(old, p) for p in mine))
        grad = jnp.sqrt(sum(_squared(grads, p) for p in mine))
        change = jnp.sqrt(sum(jnp.sum(jnp.square(_get(new, p) - _get(old, p))) for p in mine))
        scalars |= {f"grad_to_weight/{stage}": grad / weight, f"weight_norm/{stage}": weight,
                    f"angular_update/{stage}": change / weight}
    return scalars
