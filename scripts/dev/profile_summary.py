"""Section 3.3's figures of several `scripts/gradient_profile.py` profiles side by side, per stage, at one step.

  python scripts/dev/profile_summary.py gradient_profile/bn_x30 gradient_profile/bn_x5 ... [--steps=100] \
      [--plot=mechanism.png]

For each profile (its profile.json) and stage (stem, 3x, 4x, 5x, classifier): the median over the stage's
kernels of ||dL/dW|| / ||W|| at initialisation, of ||W_K|| / ||W_0|| and of the mean angular update over
steps 1-K, with K = --steps (at most every profile's own; profiles of different lengths compare at the
shortest), and the ratio of the stem's relative gradient to the 5x stage's (how much larger the gradient
is, relative to the weights, at the input end). --plot draws the three figures per layer (gradient_profile's
plot, cut to K steps).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bn_inception import gradient_stats  # noqa: E402


def cut(profile: dict, steps: int) -> dict:
    """`profile` as if it had followed `steps` steps only."""
    return profile | {"steps": steps, "grad_to_weight": profile["grad_to_weight"][:steps],
                      "angular_update": profile["angular_update"][:steps],
                      "weight_norm": profile["weight_norm"][:steps + 1]}


def stage_rows(profile: dict) -> list[tuple[str, float, float, float]]:
    """(stage, median relative gradient at init, median norm growth, median mean angular update) per stage."""
    stages = np.array(profile["stages"])
    ratio0 = np.array(profile["grad_to_weight"][0])
    norms = np.array(profile["weight_norm"])
    growth, angular = norms[-1] / norms[0], np.array(profile["angular_update"]).mean(axis=0)
    return [(s, float(np.median(ratio0[stages == s])), float(np.median(growth[stages == s])),
             float(np.median(angular[stages == s]))) for s in gradient_stats.STAGES if (stages == s).any()]


def table(profiles: list[dict]) -> str:
    """The per-stage table of every profile, and each one's stem-to-5x ratio of relative gradients."""
    k = profiles[0]["steps"]
    lines = [f"{'profile':<22} {'stage':<10} {'median ||g||/||W|| at init':>26} {f'||W_{k}||/||W_0||':>16} "
             f"{f'mean angular update 1-{k}':>26}"]
    for profile in profiles:
        rows = stage_rows(profile)
        for stage, ratio0, growth, angular in rows:
            lines.append(f"{profile['ablation'] + ' seed ' + str(profile['seed']):<22} {stage:<10} {ratio0:>26.3e} "
                         f"{growth:>16.3f} {angular:>26.3e}")
        by = {r[0]: r for r in rows}
        if "stem" in by and "5x" in by:
            lines.append(f"{'':<22} {'stem / 5x':<10} {by['stem'][1] / by['5x'][1]:>26.1f} "
                         f"{by['stem'][2] / by['5x'][2]:>16.2f} {by['stem'][3] / by['5x'][3]:>26.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="+", type=pathlib.Path, help="folders holding a profile.json")
    parser.add_argument("--steps", type=int, default=0, help="K (default: the shortest profile's)")
    parser.add_argument("--plot", type=pathlib.Path, default=None, help="a PNG of the per-layer figures")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.profiles if not (p / "profile.json").exists()]
    if missing:
        parser.error(f"no profile.json in {', '.join(missing)} (expected gradient_profile.py's --output folders)")
    loaded = [json.loads((p / "profile.json").read_text()) for p in args.profiles]
    shortest = min(p["steps"] for p in loaded)
    if args.steps < 0 or args.steps > shortest:
        parser.error(f"--steps={args.steps}: expected 1 to {shortest} (the shortest profile's steps), or 0")
    k = args.steps or shortest
    profiles = [cut(p, k) for p in loaded]
    print(table(profiles))
    if args.plot:
        import gradient_profile

        gradient_profile.plot(profiles, args.plot)
        print(f"Plot: {args.plot}")


if __name__ == "__main__":
    main()
