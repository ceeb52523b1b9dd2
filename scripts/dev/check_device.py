r"""Does this host's default device compute the same training step as the CPU reference?

  python scripts/dev/check_device.py --config=configs/bn_x30.py:imagenette,synthetic [--config.key=value ...] \
      [--tolerance=0.01]

Takes one SGD step of the config on a synthetic batch, from the same initial state, three times: on the
default device (a GPU or TPU where there is one) with the lowering the config resolves there (`auto`:
XLA's own on accelerators) at the default matrix precision, the same at full float32 precision
("highest"), and on the CPU with the CPU lowering at full precision: the reference. Prints, for each
device run, the relative difference to the reference of the loss, of the parameters' change
(‖Δθ - Δθ_ref‖ / ‖Δθ_ref‖: the gradient with weight decay) and of the new BN moving statistics; exits 1
when one of them is over `--tolerance` or not finite at highest precision. The default precision is
reported, not checked: there XLA may compute float32 convolutions on reduced-precision matrix units
(TF32 on NVIDIA GPUs; an H200, BN-x30 `:imagenette`: the parameters' change 0.37 away from the
reference, 3.0e-3 at highest precision, 2026-11-26). One step, because later steps amplify rounding: BN-x30 `:imagenette`,
XLA's lowering against the CPU lowering on a CPU, both float32: 1.3e-4 after one step, 0.29 after three.
On a CPU host, `--config.model.lowering=xla` checks XLA's own lowering against the CPU lowering.
"""

import functools
import pathlib
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bn_inception import config_checks, console, synthetic_data, train  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flag_as_required("config")
flags.DEFINE_float("tolerance", 0.01, "Largest relative difference accepted.", lower_bound=0.0)


def relative_difference(a: object, b: object) -> float:
    """‖a - b‖ / ‖b‖ over all leaves of two pytrees of arrays (float64 on the host)."""
    x = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(a)])
    y = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(b)])
    return float(np.linalg.norm(x - y) / max(np.linalg.norm(y), np.finfo(np.float64).tiny))


def run_step(
    config: ml_collections.ConfigDict, lowering: str, device: jax.Device, precision: str,
    state: train.TrainState, batch: dict[str, np.ndarray],
) -> tuple[float, Any, Any]:
    """(loss, parameter change, new BN statistics) of one training step on `device` with `lowering`."""
    config = config.copy_and_resolve_references()
    config.model.lowering = lowering
    config.model.precision = precision
    built = train.setup(config, config.global_batch_size * 1000, None)
    step = jax.jit(functools.partial(
        train.train_step, model=built.model, tx=built.tx, schedule=built.schedule,
        dropout_key=jax.random.key(config.seed), polyak_decay=config.polyak_decay, axis_name=None,
    ))
    current, device_batch = jax.device_put((state, batch), device)
    current, metrics = jax.device_get(step(current, device_batch))
    change = jax.tree.map(lambda new, old: np.asarray(new, np.float64) - np.asarray(old, np.float64), current.params, state.params)
    return float(metrics["loss"]), change, current.batch_stats


def main(argv: list[str]) -> None:
    """Runs the three versions of the step and prints their differences to the CPU reference."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    config_checks.validate(config)
    device, cpu = jax.devices()[0], jax.devices("cpu")[0]
    built = train.setup(config, config.global_batch_size * 1000, None)
    with jax.default_device(cpu):
        state = jax.device_get(built.initial_state())
    batch = next(synthetic_data.synthetic_batches(config.image_size, config.num_classes, config.global_batch_size, config.seed))
    lowering = train.resolved_lowering(config)
    print(f"{config.ablation}, {config.image_size}px, batch {config.global_batch_size}, {config.dtype}, one step; "
          f"device: {device.device_kind} ({device.platform}), lowering {lowering}; reference: CPU, lowering cpu, highest precision")
    ref_loss, ref_change, ref_stats = run_step(config, "cpu", cpu, "highest", state, batch)
    print(f"reference: loss {ref_loss:.6f}")
    worst = 0.0
    for label, precision in (("default precision (not checked)", "default"), ("highest precision", "highest")):
        loss, change, stats = run_step(config, lowering, device, precision, state, batch)
        diffs = (relative_difference(loss, ref_loss), relative_difference(change, ref_change),
                 relative_difference(stats, ref_stats) if ref_stats else 0.0)
        if precision == "highest":
            worst = max(diffs) if all(np.isfinite(diffs)) else float("inf")
        print(f"device, {label}: loss {loss:.6f}; relative difference: "
              f"loss {diffs[0]:.2e}, parameter change {diffs[1]:.2e}, BN statistics {diffs[2]:.2e}")
    verdict = "same training step" if worst <= FLAGS.tolerance else "DIFFERENT training step"
    print(f"{verdict}: largest relative difference at highest precision {worst:.2e} (tolerance {FLAGS.tolerance:g})")
    if worst > FLAGS.tolerance:
        sys.exit(1)


if __name__ == "__main__":
    console.run(main, __doc__)
