"""Training-preprocessing throughput, in images per second on one CPU core.

  python scripts/benchmark_input.py [--images=../shared/data/imagenet_val_head] [--tfds_data_dir=DIR]
      [--num_images=2000] [--image_size=224] [--output=input_benchmark.json]

Rows: plain decode + central crop + resize (the reference), and our full training preprocessing
(Inception crop decoding only the crop, flip, resize, photometric distortions) in both strengths; on the
JPEG files of a folder and, with --tfds_data_dir, on a prepared tfds imagenet2012 train split.
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import app, flags  # noqa: E402

from bn_inception import preprocessing  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("images", "../shared/data/imagenet_val_head", "Folder of JPEG files (searched recursively).")
flags.DEFINE_string("tfds_data_dir", "", "tfds data_dir holding a prepared imagenet2012 (optional).")
flags.DEFINE_integer("num_images", 2000, "Images timed per row (after 100 of warm-up).")
flags.DEFINE_integer("image_size", 224, "Output size of the training crop.")
flags.DEFINE_string("output", "input_benchmark.json", "Where to write the JSON results.")


def plain(jpeg: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Reference: decode the whole JPEG, central crop, resize."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    return tf.image.resize(tf.image.central_crop(image, 0.875), (FLAGS.image_size, FLAGS.image_size))


def training(strength: str):
    """Our training preprocessing with the given distortion strength."""
    return lambda jpeg, index: preprocessing.train_image(jpeg, FLAGS.image_size, strength, (0, 0, index))


def one_core(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def images_per_second(jpegs: tf.data.Dataset, fn) -> float:
    """Throughput of `fn` over `jpegs` (repeated) on one thread."""
    ds = one_core(jpegs.repeat().enumerate().map(lambda i, jpeg: fn(jpeg, i)))
    iterator = iter(ds)
    for _ in range(100):
        next(iterator)
    start = time.perf_counter()
    for _ in range(FLAGS.num_images):
        next(iterator)
    return FLAGS.num_images / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    """Prints and writes the table."""
    del argv
    files = sorted(str(p) for p in pathlib.Path(FLAGS.images).rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    if not files:
        raise FileNotFoundError(f"No JPEG files under {FLAGS.images}.")
    sources = {f"{FLAGS.images} ({len(files)} files)": tf.data.Dataset.from_tensor_slices(files).map(tf.io.read_file).cache()}
    if FLAGS.tfds_data_dir:
        builder = tfds.builder("imagenet2012", data_dir=FLAGS.tfds_data_dir)
        ds = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
        sources[f"tfds imagenet2012 train ({FLAGS.tfds_data_dir})"] = ds.map(lambda ex: ex["image"])
    rows = []
    for source_name, jpegs in sources.items():
        for name, fn in (("decode + central crop + resize (reference)", plain),
                         ("training: crop, flip, resize, no distortions", training("none")),
                         ("training: googlenet distortions", training("googlenet")),
                         ("training: reduced distortions (4.2.1)", training("reduced"))):
            rows.append({"source": source_name, "pipeline": name, "images_per_second_per_core": images_per_second(jpegs, fn)})
    width = max(len(r["pipeline"]) for r in rows)
    for row in rows:
        print(f"{row['source'][:48]:48s}  {row['pipeline']:{width}s}  {row['images_per_second_per_core']:8.0f} img/s")
    pathlib.Path(FLAGS.output).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    app.run(main)
