"""Whether two runs computed the same thing: their checkpoints at one step, array by array, and their logged
scalars up to it, bitwise.

  python scripts/dev/compare_checkpoints.py RUN_A RUN_B --step=150

Shows that two code versions train identically (e.g. a protocol pinned to a new commit against the commit its
earlier runs ran: run the same config and seed from both for a few hundred steps). Prints the number of
arrays of the saved state (parameters, BN statistics, optimiser state, step) that are bitwise equal, the
first few that differ with their largest difference, and per TensorBoard tag whether the values up to the
step are equal (wall-clock tags left out, and tags that only one run logs listed apart). Exit status 0 when everything is equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from bn_inception import events  # noqa: E402

TIMING = ("steps_per_sec", "uptime")


def saved_arrays(workdir: pathlib.Path, step: int) -> dict[str, np.ndarray]:
    """{name: array} of the checkpoint of `workdir` at `step`."""
    import jax
    import orbax.checkpoint as ocp

    state = ocp.StandardCheckpointer().restore((workdir / "checkpoints" / str(step) / "default").absolute())
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(state)}


def compare(a: pathlib.Path, b: pathlib.Path, step: int) -> tuple[list[str], bool]:
    """(report lines, whether everything is bitwise equal)."""
    arrays_a, arrays_b = saved_arrays(a, step), saved_arrays(b, step)
    names = sorted(set(arrays_a) | set(arrays_b))
    different = [n for n in names if n not in arrays_a or n not in arrays_b
                 or arrays_a[n].shape != arrays_b[n].shape or not np.array_equal(arrays_a[n], arrays_b[n])]
    lines = [f"checkpoint {step}: {len(names) - len(different)} of {len(names)} arrays bitwise equal"]
    for name in different[:5]:
        x, y = arrays_a.get(name), arrays_b.get(name)
        detail = ("absent from one" if x is None or y is None else f"shapes {x.shape} and {y.shape}" if x.shape != y.shape
                  else f"largest difference {np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))):.3g}")
        lines.append(f"  differs: {name} ({detail})")
    scalars_a, scalars_b = events.read_scalars(a), events.read_scalars(b)
    equal_scalars = True
    only = sorted((set(scalars_a) ^ set(scalars_b)) - set(TIMING))
    if only:  # logged by one code version only (a new diagnostic): nothing to compare
        lines.append(f"logged by one run only: {', '.join(only)}")
    for tag in sorted(set(scalars_a) & set(scalars_b)):
        if tag in TIMING:
            continue
        xs = [(s, v) for s, v in scalars_a.get(tag, []) if s <= step]
        ys = [(s, v) for s, v in scalars_b.get(tag, []) if s <= step]
        same = xs == ys
        equal_scalars &= same
        lines.append(f"{tag}: {'equal' if same else 'DIFFERENT'} ({len(xs)} and {len(ys)} values up to step {step})")
    return lines, not different and equal_scalars


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs=2, type=pathlib.Path, help="the two workdirs")
    parser.add_argument("--step", type=int, required=True, help="a step both saved a checkpoint at")
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / "checkpoints" / str(args.step)).is_dir():
            parser.error(f"{run}: no checkpoint at step {args.step} (expected {run / 'checkpoints' / str(args.step)})")
    lines, same = compare(*args.runs, args.step)
    print("\n".join(lines))
    print("Bitwise the same." if same else "Not the same.")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
