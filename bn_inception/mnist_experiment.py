"""The MNIST experiment of section 4.1 (Figure 1): the same sigmoid MLP trained with and without BN.

Writes to the workdir: `baseline/` and `bn/` (TensorBoard runs, `result.json` and `provenance.jsonl` each), `figure1.png`
with the paper's three panels, and `summary.txt`. A network whose `result.json` exists is not retrained,
so re-running the command after an interruption finishes the missing one.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import flax
from clu import metric_writers

from bn_inception import console, mnist_data, provenance
from bn_inception.models import MnistMLP

PERCENTILES = (15, 50, 85)  # the paper's Figure 1 (b, c)


def _train_network(config: ml_collections.ConfigDict, data: dict[str, jax.Array], use_bn: bool) -> dict[str, list]:
    """Trains one network; returns its curves: steps, test accuracy, percentiles of the tracked sigmoid input."""
    model = MnistMLP(use_bn=use_bn, init_stddev=config.init_stddev, bn_momentum=config.bn_momentum,
                     bn_epsilon=config.bn_epsilon)
    key = jax.random.key(config.seed)
    variables = model.init(key, data["train_images"][:1], train=False)
    tx = optax.sgd(config.learning_rate)
    opt_state = tx.init(variables["params"])
    num_train = data["train_images"].shape[0]

    def loss_fn(params, batch_stats, images, labels):
        logits, updates = model.apply(
            {"params": params, "batch_stats": batch_stats}, images, train=True, mutable=["batch_stats"]
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, updates.get("batch_stats", {})

    def step(carry, step_index):
        params, batch_stats, opt_state = carry
        # Mini-batches of `batch_size` examples drawn uniformly at random (with replacement across steps).
        idx = jax.random.randint(jax.random.fold_in(key, step_index), (config.batch_size,), 0, num_train)
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, data["train_images"][idx], data["train_labels"][idx]
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    @jax.jit
    def train_chunk(carry, first_step):
        return jax.lax.scan(step, carry, first_step + jnp.arange(config.eval_every_steps))

    @jax.jit
    def evaluate(params, batch_stats):
        logits, state = model.apply(
            {"params": params, "batch_stats": batch_stats}, data["test_images"], train=False, mutable=["intermediates"]
        )
        accuracy = jnp.mean(jnp.argmax(logits, -1) == data["test_labels"])
        tracked = state["intermediates"]["last_hidden_input"][:, config.tracked_unit]
        return accuracy, jnp.percentile(tracked, jnp.array(PERCENTILES))

    carry = (variables["params"], variables.get("batch_stats", {}), opt_state)
    curves: dict[str, list] = {"step": [], "test_accuracy": [], "loss": [], "percentiles": []}
    for first in range(0, config.num_train_steps, config.eval_every_steps):
        carry, losses = train_chunk(carry, first)
        accuracy, percentiles = evaluate(carry[0], carry[1])
        curves["step"].append(first + config.eval_every_steps)
        curves["test_accuracy"].append(float(accuracy))
        curves["loss"].append(float(jnp.mean(losses)))
        curves["percentiles"].append([float(p) for p in percentiles])
    return curves


def _write_scalars(run_dir: pathlib.Path, curves: dict[str, list], hparams: dict[str, object]) -> None:
    writer = metric_writers.create_default_writer(str(run_dir), just_logging=jax.process_index() > 0)
    writer.write_hparams(hparams)
    for i, step in enumerate(curves["step"]):
        scalars = {"eval/test_accuracy": curves["test_accuracy"][i], "train/loss": curves["loss"][i]}
        scalars |= {f"sigmoid_input/p{p}": v for p, v in zip(PERCENTILES, curves["percentiles"][i])}
        writer.write_scalars(step, scalars)
    writer.close()


def plot_figure1(results: dict[str, dict[str, list]], path: pathlib.Path) -> None:
    """The paper's Figure 1: (a) test accuracy, (b) and (c) percentiles of one last-layer sigmoid input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
    for name, label, style in (("baseline", "Without BN", "--"), ("bn", "With BN", "-")):
        axes[0].plot(results[name]["step"], results[name]["test_accuracy"], style, label=label)
    axes[0].set(title="(a) test accuracy", xlabel="training steps", ylabel="test accuracy")
    axes[0].legend(loc="lower right")
    # (b) and (c) share one y scale, so that the drift without BN and its absence with BN compare directly.
    everything = np.concatenate([np.ravel(results[name]["percentiles"]) for name in ("baseline", "bn")])
    margin = 0.05 * (everything.max() - everything.min() + 1e-9)
    for ax, name, title in ((axes[1], "baseline", "(b) without BN"), (axes[2], "bn", "(c) with BN")):
        percentiles = np.array(results[name]["percentiles"])
        for k, p in enumerate(PERCENTILES):
            ax.plot(results[name]["step"], percentiles[:, k], label=f"{p}th percentile")
        ax.set(title=f"{title}: input to one last-layer sigmoid", xlabel="training steps",
               ylabel="sigmoid input (percentiles over test images)",
               ylim=(everything.min() - margin, everything.max() + margin))
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3)  # below: hides no line
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict[str, list]]:
    """Trains both networks (skipping one already finished in `workdir`) and writes the figure and summary."""
    if config.num_train_steps < 1 or config.eval_every_steps < 1 or config.num_train_steps % config.eval_every_steps:
        raise ValueError(
            f"num_train_steps={config.num_train_steps} must be a positive multiple of eval_every_steps={config.eval_every_steps}."
        )
    if not 0 <= config.tracked_unit < 100:
        raise ValueError(f"tracked_unit={config.tracked_unit} must index one of the 100 last-layer sigmoids (0-99).")
    if config.learning_rate <= 0 or config.batch_size < 1:
        raise ValueError(f"learning_rate={config.learning_rate} and batch_size={config.batch_size} must be positive.")
    data = jax.tree.map(jnp.asarray, mnist_data.load_mnist(config.data_dir))
    out = pathlib.Path(workdir)
    results = {}
    for name, use_bn in (("baseline", False), ("bn", True)):
        result_path = out / name / "result.json"
        if result_path.exists():
            results[name] = json.loads(result_path.read_text())
            continue
        console.say(f"MNIST: training the network {'with' if use_bn else 'without'} BN for {config.num_train_steps} steps.")
        if jax.process_index() == 0:
            (out / name).mkdir(parents=True, exist_ok=True)
        provenance.record(out / name, 0)
        results[name] = _train_network(config, data, use_bn)
        if jax.process_index() == 0:
            flat = flax.traverse_util.flatten_dict(config.to_dict(), sep=".")
            hparams = {k: v for k, v in flat.items() if isinstance(v, (int, float, str, bool))} | {"use_bn": use_bn}
            _write_scalars(out / name, results[name], hparams)
            result_path.write_text(json.dumps(results[name]))
    if jax.process_index() == 0:
        plot_figure1(results, out / "figure1.png")
        lines = [f"{name}: final test accuracy {r['test_accuracy'][-1]:.4f} after {r['step'][-1]} steps; "
                 f"best {max(r['test_accuracy']):.4f}" for name, r in results.items()]
        (out / "summary.txt").write_text("\n".join(lines) + "\n")
        console.say("\n".join(lines) + f"\nFigure 1: {out / 'figure1.png'}; summary: {out / 'summary.txt'}; "
                    f"TensorBoard: tensorboard --logdir {out}")
    return results
