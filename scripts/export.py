r"""Exports a trained run as the paper's inference network (BN folded into the convolutions) in a SavedModel.

  python scripts/export.py --workdir=RUN --output=DIR [--step=N] [--recalibrate_batches=K] \
      [--format=savedmodel] [--class_names=LOC_synset_mapping.txt] [--overwrite]

DIR is a TensorFlow SavedModel that loads without this project (TensorFlow alone, or TF Serving), with
DIR/inference.json beside it: the signature (uint8 images (N, S, S, 3) as the evaluation pipeline crops
them -> float32 class probabilities), input size and preprocessing, class list, and where it came from.
BN is folded with the statistics evaluation would use: the moving averages, or with
--recalibrate_batches=K Algorithm 2's population statistics from K training batches (Polyak-averaged
weights where the run kept them). ONNX is not offered: tf2onnx cannot convert jax2tf's XlaCallModule op,
and jax2onnx conflicts with our pinned orbax-checkpoint (docs/reference.md, "Inference and export").
"""

import pathlib
import shutil
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import flags  # noqa: E402

from bn_inception import console  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The training run to export.")
flags.DEFINE_string("output", None, "Directory to write the SavedModel to (refused if it exists, unless --overwrite).")
flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the latest).")
flags.DEFINE_integer("recalibrate_batches", 0, "K > 0: fold Algorithm 2 population statistics from K training batches.")
flags.DEFINE_enum("format", "savedmodel", ["savedmodel"], "Artifact format.")
flags.DEFINE_string("class_names", None, "Optional '<class id> <name>' lines (e.g. ImageNet's LOC_synset_mapping.txt).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output (only once the new export has succeeded).")


def main(argv: list[str]) -> None:
    """Checks every input, loads and folds the network, writes the SavedModel beside a partial name, then moves it."""
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir or not FLAGS.output:
        raise ValueError("--workdir and --output are required.")
    output = pathlib.Path(FLAGS.output)
    if output.exists() and not FLAGS.overwrite:
        raise FileExistsError(f"--output={output} exists; choose another directory or pass --overwrite to replace it.")
    if FLAGS.recalibrate_batches < 0:
        raise ValueError(f"--recalibrate_batches={FLAGS.recalibrate_batches}; expected 0 (off) or a positive number.")
    # TensorFlow (the input pipeline, the SavedModel) only now: its 10 s import would otherwise delay flag errors.
    console.quiet_tensorflow_import(sys.argv)
    from bn_inception import checkpointing, evaluation, export, folding

    names = export.read_class_names(pathlib.Path(FLAGS.class_names)) if FLAGS.class_names else {}
    config = checkpointing.load_workdir_config(pathlib.Path(FLAGS.workdir))
    folding.check_supported(config)

    began = time.time()
    member = evaluation.load_member(FLAGS.workdir, FLAGS.step)
    if FLAGS.recalibrate_batches:
        evaluation.recalibrate(member, FLAGS.recalibrate_batches)
    folded = folding.fold_batch_norm(member.variables, config)
    # Plain XLA operations (the CPU lowerings only change gradients) in float32, whatever trained it.
    model = member.model.clone(folded=True, lowering="xla", dtype=jnp.float32)
    folding.check_folded_shapes(model, folded, config.image_size)
    bn_layers = sum(path[-2:] == (folding.BN, "scale") for path in flax.traverse_util.flatten_dict(member.variables["params"]))
    num_parameters = sum(int(v.size) for v in jax.tree.leaves(folded))
    source = {
        "workdir": str(pathlib.Path(FLAGS.workdir).resolve()), "step": member.step, "ablation": config.get("ablation", ""),
        "bn_layers_folded": bn_layers,
        "bn_statistics": (f"Algorithm 2 from {FLAGS.recalibrate_batches} training batches" if FLAGS.recalibrate_batches
                          else "moving averages" if bn_layers else "none (network without BN)"),
        "weights": "Polyak averages" if config.polyak_decay else "trained weights",
    }
    partial = output.parent / f".{output.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        export.write_savedmodel(model, folded, config.image_size, partial)
        export.write_info(partial, export.artifact_info(config, member.class_names, names, source, num_parameters))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    console.say(
        f"Exported {FLAGS.workdir} step {member.step} ({bn_layers} BN layers folded, {source['bn_statistics']}; "
        f"{num_parameters:,} parameters) to {output} in {console.duration(time.time() - began)}: SavedModel "
        f"{export.size_on_disk(output) / 2**20:.1f} MiB, signature '{export.SIGNATURE}': images uint8 (N, {config.image_size}, "
        f"{config.image_size}, 3) -> probabilities float32 (N, {config.num_classes}); see {output / export.INFO_FILE}."
    )


if __name__ == "__main__":
    console.run(main, __doc__)
