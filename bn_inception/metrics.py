"""Sums over batches for evaluation: top-k hits per batch, and sums of trees that stay on the devices until
the caller fetches them once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp

from bn_inception import parallel


def top_k_hits(scores: jax.Array, labels: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """Top-1 and top-5 hits (`top1`, `top5`) and the example count (`count`) over the examples of a batch
    whose mask is 1; `scores` are [batch, classes] logits or probabilities (top-5 is top-all under 5 classes)."""
    top5 = jax.lax.top_k(scores, min(5, scores.shape[-1]))[1]
    return {
        "top1": jnp.sum((top5[:, 0] == labels) * mask),
        "top5": jnp.sum(jnp.any(top5 == labels[:, None], axis=-1) * mask),
        "count": jnp.sum(mask),
    }


@jax.jit
def _add_trees(a: Any, b: Any) -> Any:
    return jax.tree.map(jnp.add, a, b)


def sum_trees(trees: Iterable[Any]) -> tuple[Any, int]:
    """The leaf-by-leaf sum of `trees` (None if there are none) and how many there were. The additions run
    where the leaves live, so device arrays are summed on their devices without a transfer to the host: one
    program per tree (not one per leaf: hundreds for the BN statistics of Algorithm 2), paced on a host of
    several CPU devices (`parallel.DispatchPacer`)."""
    total, count = None, 0
    pacer = parallel.DispatchPacer()
    for tree in trees:
        total = tree if total is None else _add_trees(total, tree)
        pacer.dispatched(total)
        count += 1
    return total, count
