"""scripts/gradient_profile.py as a user runs it, against a direct jax.grad of a tiny network's loss."""

import json
import subprocess
import sys

import jax
import numpy as np
import optax

from bn_inception import photometric, synthetic_data, train
from configs import bn_x5
from tests.test_train import REPO


def test_the_profile_of_a_tiny_network_matches_a_direct_gradient(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/gradient_profile.py", "--config=configs/bn_x5.py:tiny,synthetic", "--steps=2",
         f"--output={tmp_path}"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert (tmp_path / "profile.png").stat().st_size > 20_000
    assert "||g||/||W|| at init" in result.stdout and result.stdout.splitlines()[-2].startswith("classifier")

    # The same network, batch and dropout key, differentiated directly (no code of the trainer's step).
    config = bn_x5.get_config("tiny,synthetic")
    model = train.create_model(config, None)
    params = model.init(jax.random.key(config.seed), np.zeros((1, config.image_size, config.image_size, 3)),
                        train=False)
    batch = next(synthetic_data.synthetic_batches(config.image_size, config.num_classes, config.global_batch_size,
                                                  config.seed))
    rng = jax.random.fold_in(jax.random.key(config.seed + 1), 0)

    def loss(p):
        logits, _ = model.apply({"params": p, "batch_stats": params["batch_stats"]}, photometric.model_inputs(batch),
                                train=True, mutable=["batch_stats"], rngs={"dropout": rng})
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    grads = jax.grad(loss)(params["params"])
    lr = config.base_learning_rate * config.global_batch_size / 32
    assert len(profile["layers"]) == 31 and profile["layers"][0] == "stem_7x7_depthwise"
    for i, name in enumerate(profile["layers"]):
        path = tuple(name.split("/"))
        path = path + ("kernel",) if path[0] in ("stem_7x7_depthwise", "classifier") else path + ("Conv_0", "kernel")
        w, g = (np.asarray(_leaf(tree, path), np.float64) for tree in (params["params"], grads))
        norm = np.linalg.norm(w)
        np.testing.assert_allclose(profile["weight_norm"][0][i], norm, rtol=1e-5)
        np.testing.assert_allclose(profile["grad_to_weight"][0][i], np.linalg.norm(g) / norm, rtol=1e-3)
        # The first step of SGD with momentum from a zero trace: W_1 - W_0 = -lr (g + weight_decay W_0).
        np.testing.assert_allclose(profile["angular_update"][0][i],
                                   lr * np.linalg.norm(g + config.weight_decay * w) / norm, rtol=1e-3)
    assert len(profile["weight_norm"]) == 3 and len(profile["angular_update"]) == 2


def _leaf(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def test_bad_flags_are_one_line_before_anything_is_computed(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/gradient_profile.py", "--config=configs/bn_x5.py:tiny,synthetic",
         f"--compare={tmp_path / 'nothing'}"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"--compare={tmp_path / 'nothing'}: no profile.json there" in result.stderr
    result = subprocess.run([sys.executable, "scripts/gradient_profile.py", "--config=configs/bn_x5.py:tiny",
                             "--steps=0"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "steps" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_summary_compares_profiles_per_stage_at_a_common_step(tmp_path):
    # Two layers (stem, 5x), 3 steps; cut at 2: norms 1 -> 4 (stem) and 2 -> 2 (5x).
    profile = {"ablation": "bn_x5", "seed": 0, "steps": 3, "layers": ["stem_1x1", "inception_5a/1x1"],
               "stages": ["stem", "5x"], "loss": [1.0, 1.0, 1.0],
               "grad_to_weight": [[2.0, 0.1], [1.0, 0.1], [1.0, 0.1]], "weight_norm": [[1, 2], [2, 2], [4, 2], [8, 2]],
               "angular_update": [[0.4, 0.01], [0.2, 0.01], [0.1, 0.01]]}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "profile.json").write_text(json.dumps(profile))
    result = subprocess.run([sys.executable, "scripts/dev/profile_summary.py", str(tmp_path / "a"), "--steps=2",
                             f"--plot={tmp_path / 'p.png'}"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[1].split()[-4:] == ["stem", "2.000e+00", "4.000", "3.000e-01"]
    assert lines[3].split() == ["stem", "/", "5x", "20.0", "4.00", "30.0"]
    assert (tmp_path / "p.png").stat().st_size > 10_000
    result = subprocess.run([sys.executable, "scripts/dev/profile_summary.py", str(tmp_path / "a"), "--steps=4"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "--steps=4: expected 1 to 3" in result.stderr


def _write_stage_scalars(run_dir, ablation, with_stages):
    from clu import metric_writers

    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"ablation": ablation, "seed": 1}))
    writer = metric_writers.create_default_writer(str(run_dir), asynchronous=False)
    for step in range(50, 301, 50):
        scalars = {"train/loss": 1.0}
        if with_stages:
            scalars |= {"train/angular_update/stem": step * 1e-4, "train/angular_update/5x": 1e-5,
                        "train/weight_norm/stem": 10 + step / 100, "train/weight_norm/5x": 2.0}
        writer.write_scalars(step, scalars)
    writer.close()


def test_stage_scalars_of_whole_runs_are_window_means_per_stage(tmp_path):
    # Logged every 50 steps: the stem's angular update step * 1e-4, the 5x stage's 1e-5; norms 10 + step / 100.
    # A window of 100 before step 100 holds the points of steps 50 and 100: (5e-3 + 1e-2) / 2 = 7.5e-3, a
    # ratio of 750; before 300, steps 250 and 300: 2.75e-2 (2750). Nothing is logged at 400. A run of a commit
    # before the stage scalars is named, not counted.
    _write_stage_scalars(tmp_path / "a", "bn_x5", with_stages=True)
    _write_stage_scalars(tmp_path / "b", "inception", with_stages=False)
    command = [sys.executable, "scripts/dev/stage_scalars.py", str(tmp_path / "a"), str(tmp_path / "b"),
               "--at=100,300,400", "--window=100", f"--plot={tmp_path / 's.png'}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {tuple(line.split()[:4]): line.split()[4:] for line in result.stdout.splitlines()[1:] if "seed" in line}
    # per stage (stem, 3x, 4x, 5x, classifier) the angular update, then stem / 5x, then the five norms
    assert rows[("bn_x5", "seed", "1", "100")] == ["7.50e-03", "-", "-", "1.00e-05", "-", "750.0",
                                                   "10.75", "-", "-", "2.00", "-"]
    assert rows[("bn_x5", "seed", "1", "300")][:6] == ["2.75e-02", "-", "-", "1.00e-05", "-", "2750.0"]
    assert set(rows[("bn_x5", "seed", "1", "400")]) == {"-"}
    assert set(rows[("inception", "seed", "1", "100")]) == {"-"}
    assert "No stage scalars in inception seed 1 (logged before they existed)." in result.stdout
    assert (tmp_path / "s.png").stat().st_size > 10_000
    result = subprocess.run(command[:2] + [str(tmp_path / "b")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "no stage scalars (train/angular_update/*) in inception seed 1" in result.stderr
