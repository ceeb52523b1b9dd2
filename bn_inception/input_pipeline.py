"""Image classification input: tfds datasets, local ImageFolder trees, or synthetic images.

Every source yields encoded JPEGs with a label and an example index; decoding happens after shuffling
and after skipping, so resuming at step s never decodes the images of steps before s. Training data is
organised in epochs of `steps_per_epoch` global batches; epoch e is shuffled with the seed (seed, e) and
augmentation randomness derives from (seed, epoch, example index), so a run sees the same data whether
or not it was interrupted. Each process reads a disjoint share of every epoch.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable, Iterator, Sequence

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from bn_inception import preprocessing

IMAGE_EXTENSIONS = (".jpeg", ".jpg")

# Parallel decoding on every core this process may use (what tf.data's autotuner converges to for a
# decode-bound map), set explicitly because the pipelines run without the autotuner: see `_without_autotuner`.
PARALLEL_CALLS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class Source:
    """One split: `epoch(e, shuffle)` gives this process's (jpeg bytes, label, index) examples of epoch e."""

    num_examples: int  # in the whole split, over all processes
    num_classes: int
    class_names: tuple[str, ...]  # label k is class_names[k] (folder names, or tfds' label names)
    epoch: Callable[[int, bool], tf.data.Dataset]
    describe: Callable[[int], str]  # example index -> a name a person can find (its file, for folders)


def folder_source(
    root: str, split: str, process_index: int, process_count: int, seed: int, block: int, limit: int = 0,
    classes: Sequence[str] | None = None, allow_missing_classes: bool = False,
) -> Source:
    """An ImageFolder split `root/split/<class>/<image>`.

    Labels number `classes` (the training split's class list, so that every split labels a class alike),
    or, without it, this split's class folders in sorted order. A class folder that is not in `classes` is
    an error; so is a class of `classes` that the split lacks, unless `allow_missing_classes`. Each epoch's
    order is dealt to the processes in consecutive blocks of `block` examples (the per-process batch), so a
    step's global batch holds the same examples in the same order whatever the number of processes.
    """
    split_dir = pathlib.Path(root) / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"data_dir {root!r} has no split folder {split!r}; expected {split_dir}/<class>/*.JPEG.")
    present = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    classes = list(present if classes is None else classes)
    unknown, missing = sorted(set(present) - set(classes)), sorted(set(classes) - set(present))
    if unknown or (missing and not allow_missing_classes):
        raise ValueError(
            f"{split_dir} has the classes {present}, but the run's classes (its training split's) are {classes}: "
            + (f"{unknown} unknown to training" if unknown else f"{missing} missing (pass "
               "--config.allow_missing_eval_classes=True to evaluate on a subset)") + "."
        )
    paths, labels = [], []
    for label, name in enumerate(classes):
        if name not in present:
            continue
        files = sorted(f for f in (split_dir / name).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        paths += [os.fsencode(f) for f in files]  # bytes: a file name need not be UTF-8
        labels += [label] * len(files)
    if not paths:
        raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {split_dir}/<class>/.")
    paths_arr, labels_arr = np.array(paths), np.array(labels, np.int64)
    if limit:
        paths_arr, labels_arr = paths_arr[:limit], labels_arr[:limit]
    n = len(paths_arr)

    def epoch(e: int, shuffle: bool) -> tf.data.Dataset:
        order = np.random.default_rng([seed, e]).permutation(n) if shuffle else np.arange(n)
        starts = range(process_index * block, n, process_count * block)
        mine = np.concatenate([order[i : i + block] for i in starts] or [np.zeros(0, np.int64)])
        ds = tf.data.Dataset.from_tensor_slices((paths_arr[mine], labels_arr[mine], mine))
        return ds.map(lambda p, y, i: (tf.io.read_file(p), y, i), num_parallel_calls=PARALLEL_CALLS)

    return Source(n, len(classes), tuple(classes), epoch, describe=lambda index: _describe_path(paths_arr[index]))


def _describe_path(raw: bytes) -> str:
    """A file's path for a message; a name that is not UTF-8 as the repr of its bytes, in its folder."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        folder, name = os.path.split(raw)
        return f"{folder.decode('utf-8', 'backslashreplace')}/{name!r} (a file name that is not UTF-8)"


def tfds_source(
    name: str, split: str, data_dir: str | None, process_index: int, process_count: int, seed: int,
    shuffle_buffer: int, limit: int = 0,
) -> Source:
    """A tfds split, read without decoding the images; this process reads `split_for_jax_process`."""
    builder = tfds.builder(name, data_dir=data_dir or None)
    if not builder.is_prepared():
        if name == "imagenet2012":
            root = data_dir or tfds.core.constants.DATA_DIR
            raise FileNotFoundError(
                f"tfds dataset imagenet2012 is not prepared in {root}. Put ILSVRC2012_img_train.tar and "
                f"ILSVRC2012_img_val.tar in {root}/downloads/manual/ and run `python scripts/prepare_imagenet.py "
                f"--manual_dir={root}/downloads/manual --data_dir={root}` (see README.md), or pass "
                "--config.data_dir=FOLDER for an ImageFolder tree."
            )
        builder.download_and_prepare()
    num_examples = builder.info.splits[split].num_examples
    if limit:
        split, num_examples = f"{split}[:{limit}]", min(limit, num_examples)
    share = tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count)

    def epoch(e: int, shuffle: bool) -> tf.data.Dataset:
        ds = builder.as_dataset(
            split=share,
            shuffle_files=shuffle,
            read_config=tfds.ReadConfig(shuffle_seed=_epoch_seed(seed, e), interleave_cycle_length=16),
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        ds = ds.enumerate().map(lambda i, ex: (ex["image"], ex["label"], i * process_count + process_index))
        if shuffle and shuffle_buffer:  # 0: shards in a shuffled order, each read in its own order
            ds = ds.shuffle(shuffle_buffer, seed=_epoch_seed(seed, e), reshuffle_each_iteration=False)
        return ds

    label = builder.info.features["label"]
    return Source(num_examples, label.num_classes, tuple(label.names), epoch,
                  describe=lambda index: f"tfds {name} {split} example {index}")


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.default_rng([seed, epoch]).integers(2**31))


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """What the pipeline needs to know, taken from the experiment config."""

    image_size: int
    eval_resize: int
    distortion: str
    seed: int

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "InputConfig":
        """The experiment config's image size, evaluation resize, distortion strength and seed."""
        return cls(config.image_size, config.eval_resize, config.distortion, config.seed)


def train_batches(
    source: Source, cfg: InputConfig, local_batch: int, steps_per_epoch: int, start_step: int
) -> Iterator[dict[str, np.ndarray]]:
    """This process's training batches from global step `start_step` on, forever, epoch after epoch:
    uint8 images (B, S, S, 3), their photometric parameters (B, 4) for `photometric.distort`, labels."""
    epoch, batch_in_epoch = divmod(start_step, steps_per_epoch)
    while True:
        ds = train_dataset(source, cfg, local_batch, steps_per_epoch, epoch, batch_in_epoch)
        yield from _naming_undecodable(tfds.as_numpy(ds), source, epoch, True, batch_in_epoch * local_batch, local_batch)
        epoch, batch_in_epoch = epoch + 1, 0


def train_dataset(
    source: Source, cfg: InputConfig, local_batch: int, steps_per_epoch: int, epoch: int, first_batch: int = 0
) -> tf.data.Dataset:
    """Epoch `epoch` of `train_batches` from its batch `first_batch` on, as a tf.data pipeline."""
    ds = source.epoch(epoch, True).take(steps_per_epoch * local_batch).skip(first_batch * local_batch)
    ds = ds.map(functools.partial(_train_example, cfg=cfg, epoch=epoch), num_parallel_calls=PARALLEL_CALLS, deterministic=True)
    return _without_autotuner(ds.batch(local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def _without_autotuner(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` without tf.data's autotuning thread (fixed parallelism; prefetch buffers still grow as needed).

    Measured with tensorflow 2.21 (docs/cpu_performance.md, "Stalls at epoch boundaries"): destroying
    an iterator whose autotuning thread is waiting out its optimisation period blocks until the period
    ends. Every epoch boundary destroys one (a new pipeline per epoch, for exact resumption), and so does
    every evaluation (recalibration batches, the evaluation pass): on Imagenette one epoch boundary in six
    stalled training for 5-22 s, 11-13% of an Inception run's wall time.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _train_example(jpeg: tf.Tensor, label: tf.Tensor, index: tf.Tensor, cfg: InputConfig, epoch: int) -> dict[str, tf.Tensor]:
    image, parameters = preprocessing.train_image(jpeg, cfg.image_size, cfg.distortion, (cfg.seed, epoch, index))
    return {"image": image, "photometric": parameters, "label": label}


def _naming_undecodable(
    batches: Iterator[dict[str, np.ndarray]], source: Source, epoch: int, shuffle: bool, first: int, batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Yields `batches`; an image that cannot be decoded stops the run with an error naming it.

    Never skipped silently: skipping would change which examples every later batch holds, and with it
    exact resumption. tfds' imagenet2012 is already cleaned when it is prepared, so a bad image means a
    damaged copy to replace.
    """
    position = first
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError:
            for jpeg, _, index in source.epoch(epoch, shuffle).skip(position).take(batch_size):
                try:
                    tf.io.decode_image(jpeg, channels=3, expand_animations=False)
                except tf.errors.InvalidArgumentError:
                    raise ValueError(
                        f"Cannot decode {source.describe(int(index))} (epoch {epoch}): not a valid JPEG, PNG, GIF "
                        "or BMP image. Replace or remove it."
                    ) from None
            raise
        position += batch_size
        yield batch


def eval_batches(
    source: Source, cfg: InputConfig, local_batch: int, process_count: int, crops: int = 1
) -> Iterator[dict[str, np.ndarray]]:
    """Every example of the split exactly once: padded to equal steps on all processes, `mask` 0 on padding.

    `crops=1`: one central crop per image, uint8 images (B, S, S, 3); `crops=144`: GoogLeNet's 144 crops,
    uint8 images (B, 144, S, S, 3).
    """
    return iterate_eval(eval_dataset(source, cfg, local_batch, process_count, crops), source, local_batch)


def eval_dataset(
    source: Source, cfg: InputConfig, local_batch: int, process_count: int, crops: int = 1, cache: bool = False
) -> tf.data.Dataset:
    """The dataset behind `eval_batches`, for iterating more than once with `iterate_eval`. `cache`: keep the
    preprocessed images in memory after the first full pass, so that later passes decode nothing (the same
    images: preprocessing for evaluation is deterministic)."""
    if crops not in (1, 144):
        raise ValueError(f"crops={crops}; expected 1 or 144.")
    num_steps = -(-source.num_examples // (process_count * local_batch))  # no process holds more

    def preprocess(jpeg: tf.Tensor) -> tf.Tensor:
        if crops == 144:
            return preprocessing.multi_crop_image(jpeg, cfg.image_size)
        return preprocessing.eval_image(jpeg, cfg.image_size, cfg.eval_resize)

    image_shape = ((144,) if crops == 144 else ()) + (cfg.image_size, cfg.image_size, 3)
    ds = source.epoch(0, False).map(
        lambda jpeg, label, index: {
            "image": preprocess(jpeg),
            "label": label,
            "mask": tf.constant(1.0),
        },
        num_parallel_calls=PARALLEL_CALLS,
    )
    if cache:
        ds = ds.cache()
    padding = tf.data.Dataset.from_tensors(
        {"image": tf.zeros(image_shape, tf.uint8), "label": tf.constant(0, tf.int64), "mask": tf.constant(0.0)}
    ).repeat()
    ds = ds.concatenate(padding).take(num_steps * local_batch).batch(local_batch)
    return _without_autotuner(ds.prefetch(tf.data.AUTOTUNE))


def iterate_eval(ds: tf.data.Dataset, source: Source, local_batch: int) -> Iterator[dict[str, np.ndarray]]:
    """One pass over an `eval_dataset` as numpy batches; an undecodable image stops it, named."""
    return _naming_undecodable(tfds.as_numpy(ds), source, 0, False, 0, local_batch)


def make_source(
    config: ml_collections.ConfigDict, split: str, process_index: int, process_count: int, block: int, limit: int = 0,
    classes: Sequence[str] | None = None,
) -> Source:
    """The source a config names: its `data_dir` folder if set, else the tfds dataset `config.dataset`.
    `classes`: the run's class list (its training split's) that a folder split's labels must follow."""
    if config.data_dir:
        if not os.path.isdir(config.data_dir):
            raise FileNotFoundError(f"data_dir {config.data_dir!r} does not exist (expected an ImageFolder root).")
        folder_split = "val" if split == "validation" and not (pathlib.Path(config.data_dir) / split).is_dir() else split
        return folder_source(config.data_dir, folder_split, process_index, process_count, config.seed, block, limit,
                             classes, config.get("allow_missing_eval_classes", False))
    return tfds_source(
        config.dataset, split, config.tfds_data_dir, process_index, process_count, config.seed,
        config.shuffle_buffer, limit,
    )
