"""BN-Baseline (section 4.2): Inception with BN before every nonlinearity, otherwise GoogLeNet's recipe."""

import ml_collections

from configs import default


def get_config(arg_string: str | None = None) -> ml_collections.ConfigDict:
    """The shared default is the BN-Baseline."""
    return default.get_config(arg_string)
