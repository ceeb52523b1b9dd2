"""The MNIST experiment of section 4.1 (Figure 1): 784-100-100-100-10 sigmoid MLP with and without BN.

`--config.data_dir=../shared/data/mnist` reads the four IDX files (gzip or not); "" reads tfds `mnist`.
"""

import ml_collections


def get_config(arg_string: str | None = None) -> ml_collections.ConfigDict:
    """Paper numbers where the paper gives them; the optimiser and initial weights are our choices."""
    c = ml_collections.ConfigDict()
    c.experiment = "mnist"
    c.ablation = "mnist"
    c.data_dir = ""
    c.seed = 0
    c.num_train_steps = 50_000  # paper: 50,000 steps.
    c.batch_size = 60  # paper: mini-batches of 60 examples.
    c.learning_rate = 0.5  # choice (paper gives none): plain SGD, no momentum, no decay.
    c.init_stddev = 0.1  # choice: the paper's "small random Gaussian values" as N(0, 0.1^2).
    c.bn_momentum = 0.99  # choice: moving averages for the test-set curves.
    c.bn_epsilon = 1e-5  # choice (paper gives none).
    c.eval_every_steps = 500  # choice: 100 points per curve.
    c.tracked_unit = 0  # which of the last hidden layer's 100 sigmoids Figure 1 (b, c) follows.
    if arg_string == "short":  # a quick check: a few hundred steps
        c.num_train_steps = 600
        c.eval_every_steps = 100
    elif arg_string:
        raise ValueError(f"Unknown config argument {arg_string!r} for mnist.py; expected 'short' or none.")
    return c
