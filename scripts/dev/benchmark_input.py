"""Training-input throughput: host preprocessing per CPU core, the whole pipeline, and the device's part.

  python scripts/dev/benchmark_input.py [--images=../shared/data/imagenet_val_head] [--tfds_data_dir=DIR]
      [--num_images=2000] [--image_size=224] [--device_batch=256] [--output=input_benchmark.json]

Host rows, on the JPEG files of a folder and, with --tfds_data_dir, on a prepared tfds imagenet2012 train
split, each on one tf.data thread: two references (decode the whole JPEG + central crop + resize; decode
only an Inception crop + resize) and our training preprocessing (Inception crop decoding only the crop,
resize, flip, uint8, photometric parameters) in both distortion strengths. Throughput is given per second
of wall time and per second of CPU time used by the process. With --tfds_data_dir, also the whole
training pipeline (`input_pipeline.train_batches`: shuffling, parallel map, batching) on all cores.
Device row: the photometric distortions that training applies on the accelerator (`photometric.distort`).
"""

import json
import pathlib
import resource
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bn_inception import console  # noqa: E402

console.quiet_tensorflow_import(sys.argv)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import flags  # noqa: E402

from bn_inception import input_pipeline, photometric, preprocessing  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("images", "../shared/data/imagenet_val_head", "Folder of JPEG files (searched recursively).")
flags.DEFINE_string("tfds_data_dir", "", "tfds data_dir holding a prepared imagenet2012 (optional).")
flags.DEFINE_integer("num_images", 2000, "Images timed per row (after 100 of warm-up).")
flags.DEFINE_integer("image_size", 224, "Output size of the training crop.")
flags.DEFINE_integer("device_batch", 256, "Batch size of the device row.")
flags.DEFINE_string("output", "input_benchmark.json", "Where to write the JSON results.")


def central(jpeg: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Reference: decode the whole JPEG, central crop, resize."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    return tf.image.resize(tf.image.central_crop(image, 0.875), (FLAGS.image_size, FLAGS.image_size))


def inception_crop(jpeg: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """Reference: decode only a random Inception crop (the training crop's distribution), resize."""
    window = preprocessing.crop_window(tf.image.extract_jpeg_shape(jpeg), tf.stack([tf.constant(0, tf.int64), index]))
    image = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
    return tf.image.resize(image, (FLAGS.image_size, FLAGS.image_size), antialias=False)


def training(strength: str):
    """Our host training preprocessing with the given distortion strength."""
    return lambda jpeg, index: preprocessing.train_image(jpeg, FLAGS.image_size, strength, (0, 0, index))


def one_core(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(iterator, count: int) -> dict[str, float]:
    """Images per wall second and per CPU second of this process over `count` images of `iterator`
    (which yields (number of images, anything))."""
    done, wall, cpu = 0, time.perf_counter(), cpu_seconds()
    while done < count:
        done += next(iterator)[0]
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return {"images_per_second": done / wall, "images_per_cpu_second": done / cpu, "cores_used": cpu / wall}


def host_row(jpegs: tf.data.Dataset, fn) -> dict[str, float]:
    """`fn` over `jpegs` (repeated) on one tf.data thread."""
    iterator = (
        (1, x) for x in one_core(jpegs.repeat().enumerate().map(lambda i, jpeg: fn(jpeg, i))).as_numpy_iterator()
    )
    timed(iterator, 100)
    return timed(iterator, FLAGS.num_images)


def pipeline_row(data_dir: str) -> dict[str, float]:
    """The whole training pipeline (tfds imagenet2012, reduced distortions, batches of up to 64) on all cores."""
    source = input_pipeline.tfds_source("imagenet2012", "train", data_dir, 0, 1, seed=0, shuffle_buffer=1024)
    cfg = input_pipeline.InputConfig(FLAGS.image_size, eval_resize=256, distortion="reduced", seed=0)
    batch = min(64, source.num_examples)
    batches = input_pipeline.train_batches(source, cfg, batch, source.num_examples // batch, start_step=0)
    iterator = ((len(b["label"]), b) for b in batches)
    timed(iterator, 2 * batch)
    return timed(iterator, FLAGS.num_images)


def device_row() -> dict[str, float]:
    """`photometric.distort` of a uint8 batch on the first JAX device, results blocked on."""
    rng = np.random.default_rng(0)
    b, s = FLAGS.device_batch, FLAGS.image_size
    images = jax.device_put(rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8))
    parameters = jax.device_put(np.tile(np.array(photometric.IDENTITY, np.float32), (b, 1)))
    distort = jax.jit(photometric.distort)
    distort(images, parameters).block_until_ready()
    repeats = max(1, FLAGS.num_images // b)
    start = time.perf_counter()
    for _ in range(repeats):
        out = distort(images, parameters)
    out.block_until_ready()
    return {"images_per_second": repeats * b / (time.perf_counter() - start)}


def main(argv: list[str]) -> None:
    """Prints and writes the table."""
    del argv
    for name in ("num_images", "image_size", "device_batch"):
        if getattr(FLAGS, name) < 1:
            raise ValueError(f"--{name}={getattr(FLAGS, name)}; expected a positive number.")
    files = sorted(str(p) for p in pathlib.Path(FLAGS.images).rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    if not files:
        raise FileNotFoundError(f"No JPEG files under {FLAGS.images}.")
    sources = {f"{FLAGS.images} ({len(files)} files)": tf.data.Dataset.from_tensor_slices(files).map(tf.io.read_file).cache()}
    if FLAGS.tfds_data_dir:
        builder = tfds.builder("imagenet2012", data_dir=FLAGS.tfds_data_dir)
        if not builder.is_prepared():
            raise FileNotFoundError(f"--tfds_data_dir={FLAGS.tfds_data_dir} holds no prepared imagenet2012.")
        ds = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
        encoded = list(ds.map(lambda ex: ex["image"]).take(FLAGS.num_images).as_numpy_iterator())
        sources[f"tfds imagenet2012 train ({FLAGS.tfds_data_dir})"] = tf.data.Dataset.from_tensor_slices(encoded)
    rows = []
    for source_name, jpegs in sources.items():
        for name, fn in (("reference: decode whole + central crop + resize", central),
                         ("reference: decode Inception crop only + resize", inception_crop),
                         ("training host part, googlenet distortions", training("googlenet")),
                         ("training host part, reduced distortions (4.2.1)", training("reduced"))):
            rows.append({"source": source_name, "pipeline": name, "threads": "1 tf.data thread"} | host_row(jpegs, fn))
    if FLAGS.tfds_data_dir:
        rows.append({"source": f"tfds imagenet2012 train ({FLAGS.tfds_data_dir})", "threads": "all cores",
                     "pipeline": "training pipeline (train_batches, reduced)"} | pipeline_row(FLAGS.tfds_data_dir))
    device = jax.devices()[0]
    rows.append({"source": f"uint8 batch of {FLAGS.device_batch}", "threads": f"{device.platform}: {device.device_kind}",
                 "pipeline": "device part: photometric.distort"} | device_row())
    width = max(len(r["pipeline"]) for r in rows)
    print(f"{'source':44s}  {'pipeline':{width}s}  {'threads':18s}  {'img/s':>8s}  {'img/CPU-s':>9s}")
    for row in rows:
        per_cpu = f"{row['images_per_cpu_second']:9.0f}" if "images_per_cpu_second" in row else f"{'':9s}"
        print(f"{row['source'][:44]:44s}  {row['pipeline']:{width}s}  {row['threads'][:18]:18s}  "
              f"{row['images_per_second']:8.0f}  {per_cpu}")
    pathlib.Path(FLAGS.output).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    console.run(main, __doc__)
