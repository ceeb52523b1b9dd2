"""BN-x30 (section 4.2.1): BN-Baseline with the 4.2.1 changes and 30x the initial learning rate."""

import ml_collections

from configs import accelerated, default


def get_config(arg_string: str | None = None) -> ml_collections.ConfigDict:
    """Initial learning rate 0.045 (paper, Figure 3 table)."""
    c = accelerated.accelerate(default.get_config(arg_string), base_learning_rate=0.045)
    c.ablation = "bn_x30"
    # Paper: 74.8% top-1 at about 6e6 steps of 32 (~150 epochs).
    if c.num_train_steps == 0:
        c.num_epochs = 150.0
    return c
