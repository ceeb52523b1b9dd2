"""Pod readiness, read from the compiled program on 8 CPU devices: only the collectives the math needs,
donated state, no device-to-host transfer between sync points, and bfloat16 training end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from bn_inception import benchmarking, events, parallel, preemption, train
from configs import bn_x30
from tests import host_sync_log
from tests.test_train import tiny_config

GLOBAL_BATCH = 256  # 32 per device on 8 devices: one BN group of 32 each


# One xdist worker runs the module (--dist loadgroup): its compiled training steps (a module fixture) are built once.
pytestmark = pytest.mark.xdist_group("pod")


def _abstract_batch(config, sharding=None):
    """The shapes and types of a training batch of `config` (with `sharding`), as the input pipeline gives it."""
    n, size = config.global_batch_size, config.image_size
    return {"image": jax.ShapeDtypeStruct((n, size, size, 3), jnp.uint8, sharding=sharding),
            "label": jax.ShapeDtypeStruct((n,), jnp.int32, sharding=sharding),
            "photometric": jax.ShapeDtypeStruct((n, 4), jnp.float32, sharding=sharding)}


def _compiled_train_step(bn_group_size):
    config = bn_x30.get_config("tiny")
    config.num_classes = 10
    config.global_batch_size = GLOBAL_BATCH
    config.bn_group_size = bn_group_size
    runner = parallel.Runner.create(config)
    built = train.setup(config, GLOBAL_BATCH * 100, runner.axis_name)
    p_train, _ = train.step_functions(built, runner)
    abstract = built.abstract_state()
    replicated, sharded = NamedSharding(runner.mesh, P()), NamedSharding(runner.mesh, P("data"))
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract)
    step = benchmarking.compile_step(p_train, state, _abstract_batch(config, sharded), partitions=runner.program_devices)
    return step, abstract


def _floats(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def compiled_steps():
    return {g: _compiled_train_step(g) for g in (32, 0)}


def test_groups_of_32_need_only_the_gradient_statistics_and_metric_reductions(compiled_steps):
    compiled, abstract = compiled_steps[32]
    assert {kind for kind, _ in compiled.collectives} == {"all-reduce"}
    # The gradients (one float per parameter), the moving averages' group means (mean and variance per BN
    # channel, averaged over every group of the global batch) and two scalar metrics (loss, top-1): no
    # reduction for the normalisation itself, since each group of 32 lies on one device. XLA packs them
    # into 1 all-reduce in this XLA's schedule (3 when the tiny network had all 10 blocks), against 2 or more per
    # BN layer with whole-batch statistics (below).
    params, statistics = _floats(abstract.params), _floats(abstract.batch_stats)
    assert sum(size for _, size in compiled.collectives) == 4 * (params + statistics + 2)
    assert len(compiled.collectives) == 1


def test_whole_batch_statistics_add_the_reductions_of_every_bn_layer(compiled_steps):
    compiled, abstract = compiled_steps[0]
    params, statistics = _floats(abstract.params), _floats(abstract.batch_stats)
    channels = statistics // 2
    layers = len(jax.tree.leaves(abstract.batch_stats)) // 2
    # Per BN channel, 2 forward sums (mean, then the two-pass variance) and 3 backward sums (of dy,
    # dy * xhat, and x - mean through the variance's mean): 5 floats, of which the forward 2 also feed the
    # moving averages. Each layer waits for the one before it, so its forward reductions cannot be packed
    # with another layer's: at least 2 per layer, 100 in this XLA's schedule (the tiny network's 29 BN
    # layers: 3 in the stem, 7 in each of 3a, 5a, 5b and 5 in 3c), each a latency-bound round trip on a pod.
    assert sum(size for _, size in compiled.collectives) == 4 * (params + 5 * channels + 2)
    assert layers == 3 + 3 * 7 + 5 and len(compiled.collectives) >= 2 * layers
    assert len(compiled.collectives) == 100


def test_the_training_step_donates_its_state(compiled_steps):
    compiled, abstract = compiled_steps[32]
    state_bytes = 4 * _floats(abstract)  # float32 leaves, and two int32 counters (step, schedule count)
    # The state's buffers are reused for the new state: the step holds one copy of it plus the activations.
    assert compiled.aliased_bytes == state_bytes
    assert compiled.memory_bytes < 2 * state_bytes + compiled.fn.memory_analysis().temp_size_in_bytes


def test_no_device_to_host_transfer_between_sync_points(image_folder, tmp_path, monkeypatch):
    # Logs, evaluation and checkpoint at 3 and 6: steps 1, 2, 4 and 5 only dispatch, never fetch.
    config = tiny_config(image_folder, num_train_steps=6, log_every_steps=3, eval_every_steps=6, checkpoint_every_steps=6)
    timeline = host_sync_log.install(monkeypatch.setattr)
    train.train_and_evaluate(config, str(tmp_path / "lean"))
    assert timeline.count("step") == 6
    assert host_sync_log.steps_followed_by_fetches(timeline) == [3, 6]
    # ...with section 3.3's stage scalars on (configs/default.py), written at the log steps only.
    assert config.log_stage_scalars
    logged = events.read_scalars(tmp_path / "lean")
    assert [s for s, _ in logged["train/angular_update/3x"]] == [s for s, _ in logged["train/loss"]] == [3, 6]

    # The count sees a per-step fetch (here hidden in the stop check).
    monkeypatch.setattr(preemption, "requested", lambda: bool(np.asarray(jnp.zeros(()))))
    timeline.clear()
    train.train_and_evaluate(config, str(tmp_path / "syncing"))
    assert host_sync_log.steps_followed_by_fetches(timeline) == [1, 2, 3, 4, 5, 6]
    # On 2 processes of 4 devices: tests/test_train.py::test_two_processes_of_four_devices_match_one_process_of_eight.


def test_bfloat16_trains_end_to_end_and_follows_float32(image_folder, tmp_path):
    losses = {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_config(image_folder, dtype=dtype, base_learning_rate=0.0075, num_train_steps=30, log_every_steps=1,
                             eval_every_steps=30, checkpoint_every_steps=30)
        train.train_and_evaluate(config, str(tmp_path / dtype))
        losses[dtype] = np.array([v for _, v in events.read_scalars(tmp_path / dtype)["train/loss"]])
    # The step computes in bfloat16 and keeps parameters, BN statistics and optimiser state float32.
    runner = parallel.Runner.create(config)
    built = train.setup(config, 64 * 4, runner.axis_name)
    p_train, _ = train.step_functions(built, runner)
    batch = _abstract_batch(config)
    new_state, _ = jax.eval_shape(p_train, built.abstract_state(), batch)
    assert {str(x.dtype) for x in jax.tree.leaves(new_state)} == {"float32", "int32"}
    assert "bf16[" in p_train.lower(built.abstract_state(), batch).as_text(dialect="hlo")  # it does compute in bfloat16
    # Tolerances, stated in advance: the first step (same weights, same batch) within 2% of float32's loss;
    # the curve, as means of 5 steps, within 0.25 of float32's (this tiny network's 32-example batches make
    # single steps noisy); and both learn (last 5 steps below half the first 5).
    assert losses["bfloat16"][0] == pytest.approx(losses["float32"][0], rel=0.02)
    means = {dtype: curve.reshape(-1, 5).mean(axis=1) for dtype, curve in losses.items()}
    np.testing.assert_allclose(means["bfloat16"], means["float32"], atol=0.25)
    assert means["bfloat16"][-1] < 0.5 * means["bfloat16"][0] and means["float32"][-1] < 0.5 * means["float32"][0]
