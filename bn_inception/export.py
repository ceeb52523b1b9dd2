"""A trained network as a self-contained inference artifact: a TensorFlow SavedModel written by jax2tf.

The artifact is the folded network (`folding.py`) behind one signature, `serving_default`: uint8 NHWC
images, as the evaluation pipeline gives them (shorter side resized, central crop), to class
probabilities. Its parameters are TensorFlow variables and its computation StableHLO inside the
SavedModel, so it loads with TensorFlow alone (`tf.saved_model.load`, TF Serving): no JAX, no project code.
`inference.json` beside it records the signature, the input size and preprocessing, and the class list.
"""

from __future__ import annotations

import datetime
import json
import pathlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bn_inception import photometric

SIGNATURE = "serving_default"
INFO_FILE = "inference.json"


def serving_function(model: nn.Module) -> Callable[[Any, jax.Array], jax.Array]:
    """(variables, uint8 images (N, S, S, 3)) -> float32 class probabilities (N, num_classes)."""

    def serve(variables: Any, images: jax.Array) -> jax.Array:
        logits = model.apply(variables, photometric.to_unit_range(images), train=False)
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    return serve


def write_savedmodel(model: nn.Module, variables: dict[str, Any], image_size: int, directory: pathlib.Path) -> None:
    """Writes the SavedModel of `serving_function(model)` with `variables` to `directory` (batch size free)."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    converted = jax2tf.convert(
        serving_function(model), polymorphic_shapes=[None, f"(b, {image_size}, {image_size}, 3)"], with_gradient=False
    )
    module = tf.Module()
    module.variables_tree = tf.nest.map_structure(
        lambda v: tf.Variable(np.asarray(v), trainable=False), jax.tree.map(np.asarray, variables)
    )

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name="images")])
    def serving_default(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": converted(module.variables_tree, images)}

    module.serving_default = serving_default
    tf.saved_model.save(module, str(directory), signatures={SIGNATURE: serving_default})


def read_class_names(path: pathlib.Path) -> dict[str, str]:
    """Human-readable names from a text file of `<id> <name>` lines (e.g. ImageNet's LOC_synset_mapping.txt)."""
    names = {}
    for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: {line!r}; expected '<class id> <name>' (e.g. 'n01440764 tench, Tinca tinca').")
        names[parts[0]] = parts[1]
    return names


def artifact_info(
    config: ml_collections.ConfigDict,
    class_ids: list[str] | None,
    class_names: dict[str, str],
    source: dict[str, Any],
    num_parameters: int,
) -> dict[str, Any]:
    """The description written beside the SavedModel as inference.json."""
    import tensorflow as tf

    size = config.image_size
    ids = class_ids or [str(k) for k in range(config.num_classes)]
    return {
        "format": "TensorFlow SavedModel (written by jax2tf); load with tf.saved_model.load or TF Serving",
        "signature": SIGNATURE,
        "input": {
            "name": "images", "dtype": "uint8", "shape": [None, size, size, 3], "layout": "NHWC, RGB, 0-255",
            "preprocessing": (f"decode, resize the shorter side to {config.eval_resize} px (bilinear), then the central "
                              f"{size}x{size} crop: what `scripts/evaluate.py --crops=1` feeds the network"),
        },
        "output": {"name": "probabilities", "dtype": "float32", "shape": [None, config.num_classes],
                   "meaning": "softmax class probabilities; column k is classes[k]"},
        "classes": [{"index": k, "id": c, "name": class_names.get(c, "")} for k, c in enumerate(ids)],
        "network": {"folded": "BN folded into the convolutions (paper section 3.1)", "parameters": num_parameters,
                    "dataset": config.data_dir or config.dataset, "num_classes": config.num_classes, "image_size": size},
        "source": source,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"jax": jax.__version__, "tensorflow": tf.__version__},
        "usage": (f"probabilities = tf.saved_model.load(DIR).signatures['{SIGNATURE}']"
                  "(images=tf.constant(uint8_batch))['probabilities']"),
    }


def size_on_disk(directory: pathlib.Path) -> int:
    """Bytes of every file under `directory` (an exported SavedModel)."""
    return sum(p.stat().st_size for p in pathlib.Path(directory).rglob("*") if p.is_file())


def write_info(directory: pathlib.Path, info: dict[str, Any]) -> None:
    """Writes `info` to DIR/inference.json."""
    (directory / INFO_FILE).write_text(json.dumps(info, indent=1))
