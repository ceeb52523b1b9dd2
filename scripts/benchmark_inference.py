r"""Inference speed of the BN network against the folded one (paper section 3.1), and of the exported SavedModel.

  python scripts/benchmark_inference.py [--config=configs/bn_x30.py] [--batch_sizes=1,64] [--seconds=10] \
      [--output=benchmark_inference.json]

The network of the config (full size by default, 224px, 1000 classes) with random weights and BN
statistics: speed does not depend on the values. For each batch size: images/s of the BN network at
inference (`train=False`, moving averages), of the folded network, both compiled by XLA on this host's
first device, and of the SavedModel that `scripts/export.py` would write, called through TensorFlow;
each timed for about --seconds after a warm-up call. Also the sizes: parameters and BN statistics as
float32, and the SavedModel directory on disk.
"""

import datetime
import os
import json
import pathlib
import platform
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bn_inception import console  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bn_inception import folding  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", str(pathlib.Path(__file__).resolve().parents[1] / "configs/bn_x30.py"),
                                "Network configuration file.", lock_config=True)
flags.DEFINE_list("batch_sizes", ["1", "64"], "Batch sizes to time.")
flags.DEFINE_float("seconds", 10.0, "Approximate timing per measurement, after one warm-up call.")
flags.DEFINE_string("output", "benchmark_inference.json", "Where to write the JSON results.")


def images_per_second(call, batch: np.ndarray, seconds: float) -> float:
    """Images/s of `call(batch)` (blocking on its result), over whole calls lasting about `seconds`."""
    call(batch)
    calls, began = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - began < seconds:
        call(batch)
        calls += 1
    return calls * len(batch) / (time.perf_counter() - began)


def main(argv: list[str]) -> None:
    """Builds both networks and the SavedModel, times each batch size, prints a table and writes JSON."""
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    if any(b < 1 for b in batch_sizes):
        raise ValueError(f"--batch_sizes={FLAGS.batch_sizes}; expected positive integers.")
    config = FLAGS.config
    folding.check_supported(config)
    # TensorFlow (input pipeline, SavedModel) only now: its 10 s import would otherwise delay flag errors.
    console.quiet_tensorflow_import(sys.argv)
    import tensorflow as tf

    from bn_inception import export, train

    size = config.image_size
    model = train.create_model(config, None).clone(lowering="xla", dtype=jnp.float32)
    variables = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
    rng = np.random.default_rng(0)
    if "batch_stats" in variables:
        variables["batch_stats"] = jax.tree.map(lambda v: jnp.asarray(rng.uniform(0.5, 1.5, v.shape), jnp.float32),
                                                variables["batch_stats"])
    folded_model = model.clone(folded=True)
    folded = folding.fold_batch_norm(variables, config)
    bn_fn = jax.jit(lambda images: export.serving_function(model)(variables, images))
    folded_fn = jax.jit(lambda images: export.serving_function(folded_model)(folded, images))

    with tempfile.TemporaryDirectory() as tmp:
        console.say("Writing the SavedModel ...")
        export.write_savedmodel(folded_model, folded, size, pathlib.Path(tmp))
        savedmodel_bytes = export.size_on_disk(pathlib.Path(tmp))
        serve = tf.saved_model.load(tmp).signatures[export.SIGNATURE]
        rows = []
        for b in batch_sizes:
            batch = rng.integers(0, 256, (b, size, size, 3), dtype=np.uint8)
            row = {"batch_size": b}
            for name, call in (("bn", lambda x: bn_fn(x).block_until_ready()),
                               ("folded", lambda x: folded_fn(x).block_until_ready()),
                               ("savedmodel_tf", lambda x: serve(images=tf.constant(x))["probabilities"].numpy())):
                row[name] = images_per_second(call, batch, FLAGS.seconds)
                console.say(f"batch {b}: {name} {row[name]:,.1f} images/s")
            rows.append(row)

    count = lambda tree: sum(int(v.size) for v in jax.tree.leaves(tree))  # noqa: E731
    results = {
        "date": datetime.date.today().isoformat(), "host": platform.node(), "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(), "image_size": size, "num_classes": config.num_classes,
        "parameters_bn": count(variables["params"]), "batch_stats_bn": count(variables.get("batch_stats", {})),
        "parameters_folded": count(folded), "savedmodel_bytes": savedmodel_bytes, "rows": rows,
        "jax": jax.__version__, "tensorflow": tf.__version__,
    }
    pathlib.Path(FLAGS.output).write_text(json.dumps(results, indent=1))
    print(f"{'batch':>6s} {'BN net (XLA)':>14s} {'folded (XLA)':>14s} {'SavedModel (TF)':>16s}   images/s, {size}px, "
          f"{results['device']}")
    for r in rows:
        print(f"{r['batch_size']:6d} {r['bn']:14,.1f} {r['folded']:14,.1f} {r['savedmodel_tf']:16,.1f}")
    print(f"Parameters: BN network {results['parameters_bn']:,} + {results['batch_stats_bn']:,} BN statistics, folded "
          f"{results['parameters_folded']:,}; SavedModel {savedmodel_bytes / 2**20:.1f} MiB. Written to {FLAGS.output}")


if __name__ == "__main__":
    console.run(main, __doc__)
