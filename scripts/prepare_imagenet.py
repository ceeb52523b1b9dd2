"""Prepares tfds' imagenet2012 from the manual downloads (the `tfds build` CLI needs apache_beam; this does not).

  python scripts/prepare_imagenet.py --manual_dir=DIR_WITH_THE_TARS [--data_dir=~/tensorflow_datasets]

DIR_WITH_THE_TARS holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (the test tar is optional).
Training runs then read it with --config.tfds_data_dir=DATA_DIR (default: tfds' own default).
"""

import pathlib
import sys

from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bn_inception import console  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("manual_dir", None, "Folder with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar.", required=True)
flags.DEFINE_string("data_dir", None, "Where tfds writes the prepared dataset (default: tfds' default).")

REQUIRED = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


def main(argv: list[str]) -> None:
    """Checks the manual files first, then runs the real tfds builder."""
    del argv
    manual = pathlib.Path(FLAGS.manual_dir).expanduser()
    missing = [name for name in REQUIRED if not (manual / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{manual} lacks {', '.join(missing)}: download them from image-net.org (ILSVRC2012).")
    console.quiet_tensorflow_import(sys.argv)
    import tensorflow_datasets as tfds

    builder = tfds.builder("imagenet2012", data_dir=FLAGS.data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    print(f"Prepared: {builder.data_dir} ({builder.info.splits})")


if __name__ == "__main__":
    console.run(main, __doc__)
