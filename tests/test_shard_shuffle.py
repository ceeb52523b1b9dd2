"""Section 4.2.1's "shuffle training examples more thoroughly" (issue 36): the baseline configs read a tfds
split's shards in a shuffled order, each in its own order (no example buffer); the 4.2.1 configs add an
example buffer that mixes them. Checked on a toy tfds dataset of 8 shards whose images carry their id."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bn_inception import input_pipeline
from configs import bn_baseline, bn_x30, inception

N, SHARDS = 240, 8


class ToyShards(tfds.core.GeneratorBasedBuilder):
    """240 8x8 PNGs, the i-th holding i in its first pixel, written in 8 shards."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 3), encoding_format="png"),
            "label": tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(N):
            image = np.zeros((8, 8, 3), np.uint8)
            image[0, 0] = (i % 256, i // 256, 0)
            yield i, {"image": image, "label": i % 2}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder = ToyShards(data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=SHARDS))
    assert len(builder.info.splits["train"].shard_lengths) == SHARDS
    return data_dir


def ids(source, epoch):
    out = []
    for png, _, _ in source.epoch(epoch, True):
        pixel = tf.io.decode_png(png)[0, 0].numpy()
        out.append(int(pixel[0]) + 256 * int(pixel[1]))
    return out


def test_the_baseline_reads_whole_shards_and_the_421_configs_mix_them(toy):
    def source(buffer):
        return input_pipeline.tfds_source("toy_shards", "train", toy, 0, 1, seed=0, shuffle_buffer=buffer)

    # Each shard's examples in its file's order, read from the files themselves.
    builder = tfds.builder("toy_shards", data_dir=toy)
    shards = []
    for path in sorted(pathlib.Path(builder.data_dir).glob("toy_shards-train.tfrecord-*")):
        examples = [builder.info.features.deserialize_example(r) for r in tf.data.TFRecordDataset(str(path))]
        shards.append([int(e["image"][0, 0, 0]) + 256 * int(e["image"][0, 0, 1]) for e in examples])
    assert len(shards) == SHARDS and sorted(sum(shards, [])) == list(range(N))
    files = sum(shards, [])
    shard_of = {i: k for k, shard in enumerate(shards) for i in shard}

    def within_shard_orders(order):
        return [[i for i in order if shard_of[i] == k] for k in range(SHARDS)]

    baseline = [ids(source(0), e) for e in range(2)]
    assert all(sorted(order) == sorted(files) for order in baseline)
    assert baseline[0] != files and baseline[0] != baseline[1]  # the shards' order changes every epoch...
    assert all(within_shard_orders(order) == within_shard_orders(files) for order in baseline)  # ...not within them
    mixed = [ids(source(N), e) for e in range(2)]  # a buffer as large as the data (the 4.2.1 configs: 32,768)
    assert all(sorted(order) == sorted(files) for order in mixed) and mixed[0] != mixed[1]
    kept = sum(a == b for a, b in zip(within_shard_orders(mixed[0]), within_shard_orders(files)))
    assert kept == 0  # every shard's examples come in another order


def test_the_configs_say_which_shuffle_is_the_papers():
    for baseline in (inception, bn_baseline):
        assert baseline.get_config().shuffle_buffer == 0
    assert bn_x30.get_config().shuffle_buffer == 32_768 > 1_251  # many of ImageNet's 1,251-example shards
