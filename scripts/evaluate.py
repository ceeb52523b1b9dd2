"""Evaluates trained runs on the validation split: single crop or 144 crops, one network or an ensemble.

  python scripts/evaluate.py --workdir=runs/bn_x30 [--workdir=runs/ensemble_1 ...] --crops=1|144 \
      --output=results.json [--recalibrate_batches=K] [--step=N] [--batch_size=B]

The config is read from each run's workdir (config.json); several workdirs form an ensemble that
averages class probabilities. Every validation image counts exactly once whatever the batch size. On a
pod, run the same command on every host (multi-host flags as for training: `bn_inception/distributed.py`);
each host reads its share of the images, and process 0 writes the JSON and prints the table.
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from bn_inception import distributed, evaluation  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("workdir", None, "Run directory; repeat the flag for an ensemble.", required=True)
flags.DEFINE_enum("crops", "1", ["1", "144"], "1: central crop; 144: GoogLeNet's multi-crop scheme.")
flags.DEFINE_string("output", "results.json", "Where to write the JSON results.")
flags.DEFINE_integer("batch_size", 64, "Images per evaluation batch (each with `crops` crops).")
flags.DEFINE_integer("recalibrate_batches", 0, "K > 0: Algorithm 2 population statistics from K training batches.")
flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the latest of each run).")

# Paper, Figure 4 (top-1 / top-5 error on the validation set).
PAPER_FIGURE_4 = {
    (1, False): ("BN-Inception, single crop", 0.252, 0.0782),
    (144, False): ("BN-Inception, 144 crops", 0.2199, 0.0582),
    (144, True): ("BN-Inception ensemble of 6, 144 crops", 0.201, 0.049),
}


def main(argv: list[str]) -> None:
    """Loads every run (failing fast on bad workdirs or checkpoints), evaluates, writes and prints."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    distributed.initialize_from_flags()
    evaluation.check_batch_size(FLAGS.batch_size)
    if FLAGS.recalibrate_batches < 0:
        raise ValueError(f"--recalibrate_batches={FLAGS.recalibrate_batches}; expected 0 (off) or a positive number.")
    members = [evaluation.load_member(w, FLAGS.step) for w in FLAGS.workdir]
    if FLAGS.recalibrate_batches:
        for member in members:
            evaluation.recalibrate(member, FLAGS.recalibrate_batches)
    crops = int(FLAGS.crops)
    results = evaluation.evaluate_ensemble(members, crops, FLAGS.batch_size)
    results["recalibrate_batches"] = FLAGS.recalibrate_batches
    if jax.process_index() > 0:
        return
    pathlib.Path(FLAGS.output).write_text(json.dumps(results, indent=1))
    name, top1, top5 = PAPER_FIGURE_4[(crops, len(members) > 1)]
    print(f"{'':40s} {'top-1 error':>12s} {'top-5 error':>12s}")
    print(f"{'this evaluation (' + str(results['num_examples']) + ' images)':40s} "
          f"{100 * results['top1_error']:11.2f}% {100 * results['top5_error']:11.2f}%")
    print(f"{'paper: ' + name:40s} {100 * top1:11.2f}% {100 * top5:11.2f}%")


if __name__ == "__main__":
    app.run(main)
