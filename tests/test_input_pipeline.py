"""The input pipeline: every example once per epoch, disjoint process shares, bad images named."""

import itertools
import os
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf

from bn_inception import input_pipeline
from tests.fixtures import write_image_folder

DATA = pathlib.Path(__file__).resolve().parent / "data"
CFG = input_pipeline.InputConfig(image_size=32, eval_resize=37, distortion="reduced", seed=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), {"train": 10, "val": 5})


def test_eval_counts_every_example_once_across_processes(folder):
    labels, masks = [], []
    for process in range(2):
        source = input_pipeline.folder_source(str(folder), "val", process, 2, seed=0, block=3)
        for batch in input_pipeline.eval_batches(source, CFG, local_batch=3, process_count=2):
            labels.append(batch["label"])
            masks.append(batch["mask"])
    labels, masks = np.concatenate(labels), np.concatenate(masks)
    assert masks.sum() == 20 and len(masks) == 2 * 4 * 3  # 20 images, 4 steps of 3 on each process
    assert np.bincount(labels[masks == 1]).tolist() == [5, 5, 5, 5]


def test_cached_evaluation_gives_the_same_batches_without_reading_the_images_again(tmp_path):
    root = write_image_folder(tmp_path / "images", {"train": 2, "val": 5})
    source = input_pipeline.folder_source(str(root), "val", 0, 1, seed=0, block=3)
    expected = list(input_pipeline.eval_batches(source, CFG, local_batch=3, process_count=1))
    cached = input_pipeline.eval_dataset(source, CFG, local_batch=3, process_count=1, cache=True)
    uncached = input_pipeline.eval_dataset(source, CFG, local_batch=3, process_count=1)
    for ds in (cached, uncached):  # a first full pass over each
        assert len(list(input_pipeline.iterate_eval(ds, source, 3))) == len(expected) == 7
    (root / "val").rename(root / "gone")  # later passes cannot read a file
    for _ in range(2):
        again = list(input_pipeline.iterate_eval(cached, source, 3))
        assert len(again) == len(expected)
        for got, want in zip(again, expected):
            assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    with pytest.raises(tf.errors.NotFoundError):
        list(input_pipeline.iterate_eval(uncached, source, 3))


def test_training_shares_are_disjoint_and_resume_mid_epoch(folder):
    shares = [input_pipeline.folder_source(str(folder), "train", p, 2, seed=3, block=4) for p in range(2)]
    indices = [{int(i) for _, _, i in share.epoch(1, True).as_numpy_iterator()} for share in shares]
    assert not indices[0] & indices[1] and len(indices[0] | indices[1]) == 40
    full = input_pipeline.train_batches(shares[0], CFG, 4, steps_per_epoch=5, start_step=0)
    first_seven = [next(full) for _ in range(7)]
    assert first_seven[0]["image"].dtype == np.uint8 and first_seven[0]["photometric"].shape == (4, 4)
    resumed = next(input_pipeline.train_batches(shares[0], CFG, 4, steps_per_epoch=5, start_step=5))
    for key in ("image", "photometric", "label"):
        np.testing.assert_array_equal(resumed[key], first_seven[5][key])


def test_pipelines_run_without_the_autotuning_thread(folder):
    # With tf.data's autotuner, destroying an iterator (every epoch boundary, every evaluation) could block
    # for seconds (docs/cpu_performance.md, "Stalls at epoch boundaries"); decoding keeps every core instead.
    source = input_pipeline.folder_source(str(folder), "train", 0, 1, seed=3, block=4)
    train = input_pipeline.train_dataset(source, CFG, 4, steps_per_epoch=5, epoch=1, first_batch=2)
    evaluation = input_pipeline.eval_dataset(source, CFG, local_batch=4, process_count=1, cache=True)
    for ds in (train, evaluation):
        assert ds.options().autotune.enabled is False
    assert input_pipeline.PARALLEL_CALLS == len(os.sched_getaffinity(0))
    got = list(train.as_numpy_iterator())
    want = list(itertools.islice(input_pipeline.train_batches(source, CFG, 4, steps_per_epoch=5, start_step=7), 3))
    assert len(got) == 3  # batches 2, 3, 4 of the epoch
    for g, w in zip(got, want):
        assert all(np.array_equal(g[k], w[k]) for k in ("image", "photometric", "label"))


def test_an_undecodable_image_is_named(folder, tmp_path):
    bad_root = write_image_folder(tmp_path, {"train": 4})
    bad_file = bad_root / "train" / "class_2" / "0001.JPEG"
    bad_file.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    source = input_pipeline.folder_source(str(bad_root), "train", 0, 1, seed=0, block=4)
    with pytest.raises(ValueError, match=f"Cannot decode {bad_file} \\(epoch 0\\): not a valid JPEG"):
        for _ in input_pipeline.train_batches(source, CFG, 4, steps_per_epoch=4, start_step=0):
            pass


def test_a_file_name_that_is_not_utf8_is_read_and_named_by_its_bytes(tmp_path):
    # Issue 36, item 10: such a name stopped the input with "Unable to convert element to UTF-8", naming no file.
    root = write_image_folder(tmp_path, {"train": 4})
    folder = root / "train" / "class_1"
    os.rename(folder / "0002.JPEG", os.path.join(os.fsencode(folder), b"caf\xe9.JPEG"))  # Latin-1, not UTF-8
    source = input_pipeline.folder_source(str(root), "train", 0, 1, seed=0, block=4)
    batches = list(itertools.islice(input_pipeline.train_batches(source, CFG, 4, steps_per_epoch=4, start_step=0), 4))
    assert sum(len(b["label"]) for b in batches) == 16  # every image read, the renamed one too
    # The same file undecodable: the message names it by the repr of its bytes, in its folder.
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.JPEG"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not a jpeg")
    source = input_pipeline.folder_source(str(root), "train", 0, 1, seed=0, block=4)
    with pytest.raises(ValueError, match=re.escape(f"Cannot decode {folder}/b'caf\\xe9.JPEG' (a file name that is not "
                                                   "UTF-8) (epoch 0)")):
        for _ in input_pipeline.train_batches(source, CFG, 4, steps_per_epoch=4, start_step=0):
            pass


def test_validation_classes_follow_the_training_class_list(tmp_path):
    # train {0, 1, 2, 3}, val without class_1: val's class_2 must keep label 2 (numbered alone it became 1).
    write_image_folder(tmp_path, {"train": 1, "val": 2})
    for name in ("0000.JPEG", "0001.JPEG"):
        (tmp_path / "val" / "class_1" / name).unlink()
    (tmp_path / "val" / "class_1").rmdir()
    train = input_pipeline.folder_source(str(tmp_path), "train", 0, 1, seed=0, block=4)
    assert train.class_names == ("class_0", "class_1", "class_2", "class_3")
    with pytest.raises(ValueError, match=r"has the classes \['class_0', 'class_2', 'class_3'\], but the run's classes .* "
                                         r"\['class_1'\] missing .*allow_missing_eval_classes=True"):
        input_pipeline.folder_source(str(tmp_path), "val", 0, 1, seed=0, block=4, classes=train.class_names)
    val = input_pipeline.folder_source(str(tmp_path), "val", 0, 1, seed=0, block=4, classes=train.class_names,
                                       allow_missing_classes=True)
    labels = np.concatenate([b["label"][b["mask"] == 1] for b in input_pipeline.eval_batches(val, CFG, 4, 1)])
    assert sorted(labels.tolist()) == [0, 0, 2, 2, 3, 3] and val.num_classes == 4
    (tmp_path / "val" / "class_9").mkdir()
    (tmp_path / "val" / "class_0" / "0000.JPEG").rename(tmp_path / "val" / "class_9" / "0000.JPEG")
    with pytest.raises(ValueError, match=r"\['class_9'\] unknown to training"):
        input_pipeline.folder_source(str(tmp_path), "val", 0, 1, seed=0, block=4, classes=train.class_names,
                                     allow_missing_classes=True)


def test_a_png_named_jpeg_and_a_cmyk_jpeg_train_and_evaluate(tmp_path):
    # ILSVRC2012's train set holds one PNG and a few CMYK JPEGs under .JPEG names; both must decode, cropped by
    # the same rule as any JPEG. tests/data/cmyk.jpg is a 30x24 CMYK JPEG (made with Pillow, Adobe markers).
    root = write_image_folder(tmp_path, {"train": 2, "val": 2})
    png = tf.io.encode_png(np.full((30, 40, 3), 128, np.uint8)).numpy()
    assert png[:4] == b"\x89PNG"
    for split in ("train", "val"):
        (root / split / "class_0" / "0000.JPEG").write_bytes(png)
        (root / split / "class_1" / "0000.JPEG").write_bytes((DATA / "cmyk.jpg").read_bytes())
    source = input_pipeline.folder_source(str(root), "train", 0, 1, seed=0, block=4)
    batches = list(itertools.islice(input_pipeline.train_batches(source, CFG, 4, steps_per_epoch=2, start_step=0), 4))
    assert all(b["image"].shape == (4, 32, 32, 3) for b in batches)
    seen = [image for batch in batches for image in batch["image"]]
    assert any(np.all(np.abs(image.astype(int) - 128) <= 1) for image in seen)  # the grey PNG, cropped and resized
    val = input_pipeline.folder_source(str(root), "val", 0, 1, seed=0, block=4)
    masks = [b["mask"] for b in input_pipeline.eval_batches(val, CFG, 4, 1)]
    assert sum(m.sum() for m in masks) == 8
