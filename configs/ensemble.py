"""Ensemble members (section 4.2.2, Figure 4): six BN-x30 variants, chosen by `member=0..5`.

The paper: "each network achieved its maximum accuracy after about 6e6 training steps. The ensemble
prediction was based on the arithmetic average of class probabilities... some had increased initial
weights, were trained with dropout (5% or 10% vs 0% for the original), and used non-convolutional,
per-activation Batch Normalization with last hidden layers of the model." The paper does not say which
member had which change: the table below is our choice, covering each change at least twice.
"""

import ml_collections

from configs import bn_x30

# (weight_init_scale multiplier, dropout_rate, per-activation BN blocks): choices, see the docstring.
MEMBERS = (
    (1.0, 0.0, ()),  # 0: BN-x30 as is
    (2.0, 0.0, ()),  # 1: larger initial weights
    (1.0, 0.05, ()),  # 2: dropout 5%
    (1.0, 0.10, ()),  # 3: dropout 10%
    (1.0, 0.05, ("5a", "5b")),  # 4: per-activation BN in the last hidden layers + dropout 5%
    (2.0, 0.10, ("5a", "5b")),  # 5: all three
)


def get_config(arg_string: str | None = None) -> ml_collections.ConfigDict:
    """`member=N` (0-5) picks the variant; further arguments as in configs/default.py."""
    args = bn_x30.default.parse_args(arg_string)
    member = args.get("member", "")
    if not member.isdigit() or int(member) >= len(MEMBERS):
        raise ValueError(f"ensemble.py needs member=0..{len(MEMBERS) - 1}, got member={member!r}.")
    c = bn_x30.get_config(arg_string)
    init_multiplier, dropout, per_activation = MEMBERS[int(member)]
    c.ablation = "ensemble"
    c.ensemble_member = int(member)
    c.seed = int(member)  # choice: each member starts from its own initialisation and data order.
    c.model.weight_init_scale *= init_multiplier
    c.model.dropout_rate = dropout
    c.model.per_activation_bn_blocks = per_activation
    # Paper: each member trained about 6e6 steps of 32 (~150 epochs), as BN-x30.
    return c
