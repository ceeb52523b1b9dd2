"""The paper's inference network (section 3.1): BN folded into the convolutions.

At inference BN uses fixed statistics, so it is a linear transform per feature map,
    y = gamma/sqrt(Var[x]+eps) * x + (beta - gamma E[x]/sqrt(Var[x]+eps)),
and composes with the convolution before it: the kernel's output channel k is scaled by
s_k = gamma_k/sqrt(Var_k+eps), and the convolution gains the bias beta_k - s_k E_k. The folded network
(`BNInception(folded=True)`) has no BN layers and no `batch_stats`.

Where BN normalises per activation (the ensemble members' 5a/5b), s varies with the position while the
kernel is shared by all positions, so it cannot go into the kernel: it stays a fixed per-position affine
map (`models.FoldedBatchNorm`). The separable stem folds like any unit: its BN follows the pointwise conv.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

BN = "BatchNorm_0"
CONV = "Conv_0"
FOLDED_BN = "FoldedBatchNorm_0"


def check_supported(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError for a config whose network `fold_batch_norm` cannot fold (before any work)."""
    if config.get("model_name") != "bn_inception":
        raise ValueError(f"model_name={config.get('model_name')!r}: only BN-Inception networks fold and export "
                         "(expected 'bn_inception').")


def fold_batch_norm(variables: dict[str, Any], config: ml_collections.ConfigDict) -> dict[str, Any]:
    """From a trained network's `{'params', 'batch_stats'}` to the parameters of the folded network.

    `batch_stats` may be the moving averages or Algorithm 2's population statistics
    (`evaluation.recalibrate`), and `params` the trained or the Polyak-averaged weights: whatever the
    BN network would infer with. Returns `{'params': ...}` for `create_model(config).clone(folded=True)`;
    a network without BN comes back unchanged. Computed in float64, stored in the parameters' own dtype.
    """
    check_supported(config)
    params = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]))
    stats = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables.get("batch_stats", {})))
    eps = float(config.model.bn_epsilon)
    folded = {path: np.asarray(v) for path, v in params.items() if BN not in path}
    for path in params:
        if path[-2:] != (BN, "scale"):
            continue
        unit = path[:-2]
        dtype = np.asarray(params[path]).dtype
        gamma = np.asarray(params[unit + (BN, "scale")], np.float64)
        beta = np.asarray(params[unit + (BN, "bias")], np.float64)
        mean = np.asarray(stats[unit + (BN, "mean")], np.float64)
        var = np.asarray(stats[unit + (BN, "var")], np.float64)
        scale = gamma / np.sqrt(var + eps)
        bias = beta - scale * mean
        if gamma.ndim == 1:  # per feature map: into the convolution's output channels
            kernel = np.asarray(params[unit + (CONV, "kernel")], np.float64)
            folded[unit + (CONV, "kernel")] = (kernel * scale).astype(dtype)
            folded[unit + (CONV, "bias")] = bias.astype(dtype)
        else:  # per activation: a fixed affine map per position
            folded[unit + (FOLDED_BN, "scale")] = scale.astype(dtype)
            folded[unit + (FOLDED_BN, "bias")] = bias.astype(dtype)
    folded_params = flax.traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in folded.items()})
    return {"params": folded_params}


def check_folded_shapes(model: Any, folded: dict[str, Any], image_size: int) -> None:
    """Raises ValueError unless `folded` has exactly the parameters (names and shapes) of the folded `model`."""
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)), train=False))
    want = {k: v.shape for k, v in flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract["params"])).items()}
    have = {k: v.shape for k, v in flax.traverse_util.flatten_dict(folded["params"]).items()}
    if want != have:
        missing = sorted("/".join(k) for k in set(want) - set(have))
        extra = sorted("/".join(k) for k in set(have) - set(want))
        wrong = sorted("/".join(k) for k in set(want) & set(have) if want[k] != have[k])
        raise ValueError(f"The folded parameters do not fit the folded network: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}, wrong shapes {wrong[:5]}.")
    if "batch_stats" in abstract:
        raise ValueError("The folded network still has batch_stats: some BN layer was not folded.")
