r"""Section 3.3's mechanism per layer: each kernel's relative gradient, norm and angular update over the first
training steps of a config, on its real training batches.

  python scripts/gradient_profile.py --config=configs/bn_x30.py:imagenette [--config.key=value ...] \
      [--steps=100] [--output=gradient_profile/bn_x30] [--compare=gradient_profile/inception,...]

Trains the config's network from its initialisation (`--config.seed`) for --steps steps exactly as training
does (the same step, schedule, dropout and batches: `configs/...:synthetic` needs no data) and gives, for every
convolution kernel and the classifier, in network order (bn_inception/gradient_stats.py):

- ||dL/dW|| / ||W|| at initialisation (the first batch);
- ||W_t|| / ||W_0||, the kernel's norm, over the steps;
- ||W_t+1 - W_t|| / ||W_t||, the angular update of each step.

Prints a table per layer (at initialisation, and the norm growth and mean angular update over the steps)
and per stage, and writes OUTPUT/profile.json (every figure of every layer and step) and OUTPUT/profile.png:
the three figures against the layer's depth, with the profiles of earlier runs of this command (--compare)
on the same axes. Training logs the same figures per stage as TensorBoard scalars (train/grad_to_weight/*,
train/weight_norm/*, train/angular_update/*).
"""

import functools
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bn_inception import config_checks, console, gradient_stats, synthetic_data, train  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flag_as_required("config")
flags.DEFINE_integer("steps", 100, "Training steps to follow (K).", lower_bound=1)
flags.DEFINE_string("output", None, "Folder for profile.json and profile.png (default: gradient_profile/ABLATION).")
flags.DEFINE_list("compare", [], "Folders of earlier profiles to draw on the same axes.")


def profile(config, num_steps: int, batches) -> dict:
    """The per-layer figures of `num_steps` training steps of `config` from its initialisation: {"layers": names
    in network order, "stages", "grad_to_weight", "weight_norm", "angular_update": [step][layer] lists (weight
    norms before each step and after the last), "loss": per step}."""
    built = train.setup(config, config.global_batch_size * 1000, bn_axis_name=None)
    paths = gradient_stats.network_order(built.model, config.image_size)
    step = functools.partial(
        train.train_step, model=built.model, tx=built.tx, schedule=built.schedule, dropout_key=train.dropout_key(config),
        polyak_decay=config.polyak_decay, axis_name=None)

    @jax.jit
    def profile_step(state, batch):
        rng = train.step_rng(train.dropout_key(config), state.step, None)
        _, grads = train.loss_and_grads(state.params, state.batch_stats, batch, model=built.model, rng=rng)
        new_state, metrics = step(state, batch)
        return new_state, metrics["loss"], gradient_stats.layer_figures(state.params, new_state.params, grads, paths)

    state = built.initial_state()
    figures = {"grad_to_weight": [], "weight_norm": [], "angular_update": []}
    losses = []
    for _ in range(num_steps):
        state, loss, layers = profile_step(state, next(batches))
        for name, values in layers.items():
            figures[name].append(np.asarray(values).tolist())
        losses.append(float(loss))
    final = jax.jit(functools.partial(gradient_stats.layer_figures, paths=paths))(state.params, state.params, state.params)
    figures["weight_norm"].append(np.asarray(final["weight_norm"]).tolist())
    return {"ablation": config.ablation, "seed": config.seed, "steps": num_steps,
            "layers": [gradient_stats.layer_name(p) for p in paths], "stages": [gradient_stats.stage_of(p) for p in paths],
            "loss": losses} | figures


def tables(result: dict) -> str:
    """Per layer, then per stage: ||W_0||, ||dL/dW||/||W|| at initialisation, ||W_K||/||W_0||, and the mean
    angular update over the K steps."""
    ratio0, norms = np.array(result["grad_to_weight"][0]), np.array(result["weight_norm"])
    angular = np.array(result["angular_update"])
    growth, mean_angular = norms[-1] / norms[0], angular.mean(axis=0)
    k = result["steps"]
    header = f"{'#':>3}  {'stage':<10} {'layer':<30} {'||W_0||':>9} {'||g||/||W|| at init':>20} {f'||W_{k}||/||W_0||':>16} {f'mean angular update, steps 1-{k}':>32}"
    lines = [header]
    for i, name in enumerate(result["layers"]):
        lines.append(f"{i:>3}  {result['stages'][i]:<10} {name:<30} {norms[0][i]:>9.3f} {ratio0[i]:>20.3e} "
                     f"{growth[i]:>16.3f} {mean_angular[i]:>32.3e}")
    lines += ["", f"{'stage':<10} {'layers':>6} {'median ||g||/||W|| at init':>27} {f'median ||W_{k}||/||W_0||':>23} "
              f"{'median mean angular update':>27}"]
    stages = np.array(result["stages"])
    for stage in gradient_stats.STAGES:
        mine = stages == stage
        if mine.any():
            lines.append(f"{stage:<10} {int(mine.sum()):>6} {np.median(ratio0[mine]):>27.3e} "
                         f"{np.median(growth[mine]):>23.3f} {np.median(mean_angular[mine]):>27.3e}")
    return "\n".join(lines)


def plot(results: list[dict], path: pathlib.Path) -> None:
    """profile.png: the three figures against the layer's depth (network order), one line per profile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for result in results:
        label = f"{result['ablation']} seed {result['seed']}"
        norms = np.array(result["weight_norm"])
        depth = np.arange(len(result["layers"]))
        axes[0].plot(depth, result["grad_to_weight"][0], marker=".", label=label)
        axes[1].plot(depth, norms[-1] / norms[0], marker=".", label=label)
        axes[2].plot(depth, np.array(result["angular_update"]).mean(axis=0), marker=".", label=label)
    k = results[0]["steps"]
    titles = ("relative gradient at initialisation", f"kernel norm growth over {k} steps",
              f"mean angular update, steps 1-{k}")
    ylabels = ("||dL/dW|| / ||W||", f"||W_{k}|| / ||W_0||", "||W_t+1 - W_t|| / ||W_t||")
    stages = results[0]["stages"]
    for ax, title, ylabel in zip(axes, titles, ylabels):
        ax.set(xlabel="layer (network order: stem, 3x, 4x, 5x, classifier)", ylabel=ylabel, title=title, yscale="log")
        for i in range(1, len(stages)):
            if stages[i] != stages[i - 1]:
                ax.axvline(i - 0.5, color="grey", linewidth=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _check() -> None:
    """Flag errors found before anything is computed: earlier profiles that are not there."""
    missing = [d for d in FLAGS.compare if not (pathlib.Path(d) / "profile.json").exists()]
    if missing:
        raise ValueError(f"--compare={','.join(missing)}: no profile.json there (expected the --output of an "
                         "earlier run of this command)")


def main(argv: list[str]) -> None:
    """Checks the config, reads the batches, profiles, prints the tables and writes the JSON and plot."""
    config = FLAGS.config
    config_checks.validate(config)
    if config.synthetic_data:
        batches = synthetic_data.synthetic_batches(config.image_size, config.num_classes, config.global_batch_size,
                                                   config.seed)
    else:
        console.quiet_tensorflow_import(sys.argv)
        batches = train.config_train_batches(config)
    output = pathlib.Path(FLAGS.output or f"gradient_profile/{config.ablation}")
    console.say(f"{config.ablation}: profiling {FLAGS.steps} training steps of {config.global_batch_size} from "
                f"initialisation (seed {config.seed}).")
    result = profile(config, FLAGS.steps, batches)
    print(tables(result))
    output.mkdir(parents=True, exist_ok=True)
    (output / "profile.json").write_text(json.dumps(result))
    earlier = [json.loads((pathlib.Path(d) / "profile.json").read_text()) for d in FLAGS.compare]
    plot([result] + earlier, output / "profile.png")
    console.say(f"Written: {output / 'profile.json'}, {output / 'profile.png'}")


if __name__ == "__main__":
    console.run(main, __doc__, check=_check)
