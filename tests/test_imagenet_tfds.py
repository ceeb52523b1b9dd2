"""tfds' real imagenet2012 builder on a toy copy of the manual files, read back by our pipeline and by the
input benchmark."""

import json
import subprocess
import sys

import numpy as np
import tensorflow_datasets as tfds

from bn_inception import input_pipeline
from configs import bn_x30
from tests.fixtures import write_toy_imagenet_tars
from tests.test_console import LOG_LINE
from tests.test_train import REPO


def test_toy_imagenet_builds_and_reads_back_with_the_right_labels(shared_data, tmp_path):
    validation = write_toy_imagenet_tars(tmp_path / "manual", shared_data)
    missing = subprocess.run([sys.executable, "scripts/prepare_imagenet.py", f"--manual_dir={tmp_path}"],
                             cwd=REPO, capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [  # one line, no traceback
        f"error: FileNotFoundError: {tmp_path} lacks ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar: download them "
        "from image-net.org (ILSVRC2012). (--verbose shows the traceback)"]
    prepared = subprocess.run(
        [sys.executable, "scripts/prepare_imagenet.py", f"--manual_dir={tmp_path / 'manual'}", f"--data_dir={tmp_path / 'tfds'}"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    builder = tfds.builder("imagenet2012", data_dir=str(tmp_path / "tfds"))
    names = builder.info.features["label"].names

    config = bn_x30.get_config()
    config.tfds_data_dir = str(tmp_path / "tfds")
    eval_source = input_pipeline.make_source(config, "validation", 0, 1, block=16)
    assert eval_source.num_examples == 100 and eval_source.num_classes == 1000
    for example in builder.as_dataset(split="validation").as_numpy_iterator():
        k = int(example["file_name"].decode()[len("ILSVRC2012_val_") : -len(".JPEG")])
        assert names[example["label"]] == validation[k]

    train_source = input_pipeline.make_source(config, "train", 0, 1, block=4)
    cfg = input_pipeline.InputConfig(image_size=64, eval_resize=73, distortion="reduced", seed=0)
    batches = input_pipeline.train_batches(train_source, cfg, local_batch=4, steps_per_epoch=3, start_step=0)
    assert input_pipeline.train_dataset(train_source, cfg, 4, 3, epoch=0).options().autotune.enabled is False
    labels = np.concatenate([next(batches)["label"] for _ in range(3)])
    expected = [wnid for wnid in ("n01440764", "n02102040", "n02979186") for _ in range(4)]  # one epoch
    assert sorted(names[label] for label in labels) == expected
    evals = list(input_pipeline.eval_batches(eval_source, cfg, local_batch=16, process_count=1))
    assert sum(b["mask"].sum() for b in evals) == 100 and len(evals) == 7

    benchmark = subprocess.run(
        [sys.executable, "scripts/dev/benchmark_input.py", f"--images={shared_data / 'imagenet_val_head'}",
         f"--tfds_data_dir={tmp_path / 'tfds'}", "--num_images=40", "--image_size=64", "--device_batch=8",
         f"--output={tmp_path / 'input.json'}"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert benchmark.returncode == 0, benchmark.stderr[-3000:]
    rows = json.loads((tmp_path / "input.json").read_text())
    assert [r["threads"] for r in rows].count("1 tf.data thread") == 8 and len(rows) == 10
    assert all(r["images_per_second"] > 0 for r in rows) and "photometric.distort" in benchmark.stdout
    assert not [line for line in (benchmark.stdout + benchmark.stderr).splitlines() if LOG_LINE.match(line)]
