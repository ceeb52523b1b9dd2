"""Inception-Sigmoid control: no BN, sigmoid units. The paper: "never achieved better than 1/1000 accuracy"."""

import ml_collections

from configs import inception


def get_config(arg_string: str | None = None) -> ml_collections.ConfigDict:
    """The Inception baseline (its learning rate, 0.0015) with sigmoid nonlinearities."""
    c = inception.get_config(arg_string)
    c.ablation = "inception_sigmoid"
    c.model.activation = "sigmoid"  # the control of section 4.2.1.
    c.model.weight_init_scale = 1.0  # choice: LeCun fan-in variance for sigmoid units.
    return c
