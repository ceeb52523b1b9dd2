"""The section 4.2.1 changes shared by BN-x5, BN-x30, BN-x5-Sigmoid and the ensemble members."""

import ml_collections


def accelerate(c: ml_collections.ConfigDict, base_learning_rate: float) -> ml_collections.ConfigDict:
    """Applies the seven changes of section 4.2.1 to a BN-Baseline config, in place, and returns it."""
    c.base_learning_rate = base_learning_rate  # 4.2.1: increase the learning rate (x5 or x30).
    c.model.dropout_rate = 0.0  # 4.2.1: remove dropout.
    c.weight_decay = 4e-5  # 4.2.1: L2 weight regularisation reduced by a factor of 5 (2e-4 / 5).
    c.lr_decay_epochs = c.lr_decay_epochs / 6.0  # 4.2.1: decay 6 times faster (every 8/6 epochs at full scale).
    c.model.lrn = False  # 4.2.1: remove local response normalisation (already absent with BN).
    # 4.2.1: shuffle examples more thoroughly (within shards). Choice of size: an example buffer mixing many
    # shards; ImageNet's tfds train split has 1,024 shards of about 1,251 encoded JPEGs (~110 KB each), so
    # 32,768 mixes the examples of about 26 shards' worth, at about 3.5 GB of host memory per process. At
    # reduced scale the buffer the protocol's revisions ran with (their --config.data_dir folders are
    # permuted whole each epoch, buffer or not).
    c.shuffle_buffer = 32_768 if c.scale == "full" else max(c.shuffle_buffer, 16_384)
    c.distortion = "reduced"  # 4.2.1: reduce the photometric distortions.
    if c.scale == "imagenette":
        c.num_train_steps //= 4  # the Figure 3 protocol's budget rule (default.py): B / 4.
    return c
