"""Inception (section 4.2): the baseline without BN, trained as GoogLeNet was."""

import ml_collections

from configs import default


def get_config(arg_string: str | None = None) -> ml_collections.ConfigDict:
    """BN-Inception's network with no BN: conv biases, GoogLeNet's LRN and dropout 0.4."""
    c = default.get_config(arg_string)
    c.ablation = "inception"
    c.model.use_bn = False  # paper: the baseline has no BN.
    c.model.lrn = True  # GoogLeNet: LRN after the first pool and the stem's 3x3 conv.
    c.model.dropout_rate = 0.4  # GoogLeNet: dropout 0.4 before the classifier.
    c.base_learning_rate = 0.0015  # paper, Figure 3 table.
    c.bn_group_size = 0  # no BN: nothing to group.
    # Paper: Inception reaches 72.2% after 31e6 steps of 32 (~774 epochs).
    c.num_epochs = 774.0 if c.num_train_steps == 0 else 0.0
    return c


def learning_rate_control(arg_string: str | None, ablation: str, base_learning_rate: float) -> ml_collections.ConfigDict:
    """Section 3.3's control: this network, no BN, at a BN config's initial learning rate; all else Inception's."""
    c = get_config(arg_string)
    c.ablation = ablation
    c.base_learning_rate = base_learning_rate
    return c
