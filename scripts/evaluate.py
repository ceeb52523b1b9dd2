r"""Evaluates trained runs on the validation split: single crop or 144 crops, one network or an ensemble.

  python scripts/evaluate.py --workdir=runs/bn_x30 [--workdir=runs/ensemble_1 ...] --crops=1|144 \
      [--output=results.json] [--recalibrate_batches=K] [--step=N] [--batch_size=B]

The config is read from each run's workdir (config.json); several workdirs form an ensemble that
averages class probabilities. Every validation image counts exactly once whatever the batch size. The
results (top-1/top-5 accuracy and error) are printed, beside the paper's Figure 4 where the data is
ImageNet, and written as JSON to --output (default: WORKDIR/evaluations/<crops, step, recalibration>.json
of the first workdir, so that evaluations do not overwrite each other). On a pod, run the same command on
every host (multi-host flags as for training: `bn_inception/distributed.py`); each host reads its share of
the images, and process 0 writes the JSON and prints the table.
"""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
from absl import flags  # noqa: E402

from bn_inception import console, distributed, files, parallel  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("workdir", None, "Run directory; repeat the flag for an ensemble.")
flags.DEFINE_enum("crops", "1", ["1", "144"], "1: central crop; 144: GoogLeNet's multi-crop scheme.")
flags.DEFINE_string("output", None, "Where to write the JSON results (default: WORKDIR/evaluations/NAME.json).")
flags.DEFINE_integer("batch_size", 64, "Images per evaluation batch (each with `crops` crops).")
flags.DEFINE_integer("recalibrate_batches", 0, "K > 0: Algorithm 2 population statistics from K training batches.")
flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the latest of each run).")

# Paper, Figure 4 (top-1 / top-5 error on the ImageNet validation set).
PAPER_FIGURE_4 = {
    (1, False): ("BN-Inception, single crop", 0.252, 0.0782),
    (144, False): ("BN-Inception, 144 crops", 0.2199, 0.0582),
    (144, True): ("BN-Inception ensemble of 6, 144 crops", 0.201, 0.049),
}


def default_output(results: dict) -> pathlib.Path:
    """WORKDIR/evaluations/crops144_step1500[_recal100][_ensemble6].json, WORKDIR the first member's."""
    checkpoints = results["checkpoints"]
    name = f"crops{results['crops']}_step{'-'.join(str(c['step']) for c in checkpoints)}"
    if results["recalibrate_batches"]:
        name += f"_recal{results['recalibrate_batches']}"
    if len(checkpoints) > 1:
        name += f"_ensemble{len(checkpoints)}"
    return pathlib.Path(checkpoints[0]["workdir"]) / "evaluations" / f"{name}.json"


def report(results: dict) -> str:
    """The printed table: accuracy and error, and the paper's row where it applies (or why not)."""
    members = len(results["checkpoints"])
    what = (f"{'ensemble of ' + str(members) if members > 1 else 'one network'}, {results['crops']} "
            f"crop{'s' * (results['crops'] > 1)}, {results['num_examples']:,} images of {results['dataset']} "
            f"({results['num_classes']} classes, {results['image_size']}px)")
    lines = [f"Evaluated: {what}.", f"{'':44s} {'top-1 acc':>10s} {'top-5 acc':>10s} {'top-1 err':>10s} {'top-5 err':>10s}"]

    def row(name: str, top1_error: float, top5_error: float) -> str:
        return (f"{name:44s} {100 * (1 - top1_error):9.2f}% {100 * (1 - top5_error):9.2f}% "
                f"{100 * top1_error:9.2f}% {100 * top5_error:9.2f}%")

    lines.append(row("this evaluation", results["top1_error"], results["top5_error"]))
    paper = PAPER_FIGURE_4.get((results["crops"], members > 1))
    imagenet = results["dataset"] == "imagenet2012" and results["num_classes"] == 1000
    if not imagenet:
        lines.append("(No paper row: the paper's Figure 4 is ImageNet's 1000 classes at 224px; this is another task.)")
    elif paper is None:
        lines.append("(No paper row: the paper reports ensembles with 144 crops only.)")
    else:
        lines.append(row("paper: " + paper[0], paper[1], paper[2]))
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Loads every run (failing fast on bad workdirs or checkpoints), evaluates, writes and prints."""
    if len(argv) > 1:
        raise ValueError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir:
        raise ValueError("--workdir is required (repeat it for an ensemble).")
    if FLAGS.recalibrate_batches < 0:
        raise ValueError(f"--recalibrate_batches={FLAGS.recalibrate_batches}; expected 0 (off) or a positive number.")
    distributed.initialize_from_flags()
    parallel.check_eval_batch_size(FLAGS.batch_size)
    # TensorFlow (the input pipeline) only now: its 10 s import would otherwise delay --help and flag errors.
    console.quiet_tensorflow_import(sys.argv)
    from bn_inception import evaluation

    members = [evaluation.load_member(w, FLAGS.step) for w in FLAGS.workdir]
    if FLAGS.recalibrate_batches:
        for member in members:
            evaluation.recalibrate(member, FLAGS.recalibrate_batches)
    results = evaluation.evaluate_ensemble(members, int(FLAGS.crops), FLAGS.batch_size)
    results["recalibrate_batches"] = FLAGS.recalibrate_batches
    if jax.process_index() > 0:
        return
    print(report(results))  # first: a workdir that cannot be written loses no evaluation
    output = pathlib.Path(FLAGS.output) if FLAGS.output else default_output(results)
    places = [output] if FLAGS.output else [output, pathlib.Path("evaluations") / output.name]
    for place in places:
        try:
            write_json(place, results)
        except OSError as error:
            print(f"Could not write {place} ({error.strerror or error})"
                  + ("; trying ./evaluations/ instead." if place is not places[-1] else "."), flush=True)
            continue
        print(f"Results written to {place}")
        return
    raise OSError(f"the results (printed above) could not be written to {' nor '.join(map(str, places))}; "
                  "pass --output=FILE somewhere writable")


def write_json(path: pathlib.Path, results: dict) -> None:
    """Writes `results` to `path` whole (a temporary file renamed into place), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomically(path, json.dumps(results, indent=1))


if __name__ == "__main__":
    console.run(main, __doc__)
