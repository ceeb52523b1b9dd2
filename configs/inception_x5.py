"""Learning-rate control (section 3.3): the no-BN Inception at BN-x5's initial learning rate, 0.0075.

Everything else is Inception's (dropout, LRN, weight decay, schedule and budget): with BN-x5 beside it,
it shows whether BN is what lets the network train at this rate. Not a run of the paper.
"""

import ml_collections

from configs import inception


def get_config(arg_string: str | None = None) -> ml_collections.ConfigDict:
    """Inception with base_learning_rate 0.0075 (BN-x5's, paper's Figure 3 table)."""
    return inception.learning_rate_control(arg_string, "inception_x5", base_learning_rate=0.0075)
