"""BN-x5 (section 4.2.1): BN-Baseline with the 4.2.1 changes and 5x the initial learning rate."""

import ml_collections

from configs import accelerated, default


def get_config(arg_string: str | None = None) -> ml_collections.ConfigDict:
    """Initial learning rate 0.0075 (paper, Figure 3 table)."""
    c = accelerated.accelerate(default.get_config(arg_string), base_learning_rate=0.0075)
    c.ablation = "bn_x5"
    # Paper: BN-x5 reaches 73.0% top-1 ; it passes Inception's 72.2% at 2.1e6 steps of 32 (~52 epochs).
    # Choice: 100 epochs.
    if c.num_train_steps == 0:
        c.num_epochs = 100.0
    return c
