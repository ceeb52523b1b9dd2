"""How long a run takes to stop after SIGTERM (or Ctrl-C), in each phase it can be in.

  python scripts/dev/stop_latency.py --config=configs/bn_x30.py:imagenette --data_dir=../shared/data/imagenette \
      [--phases=startup,compile,train,evaluation] [--signal=TERM] [--json=FILE] [--keep=DIR] \
      [-- --config.key=value ...]

Starts `python -m bn_inception.main` once per phase, each in a new workdir under a temporary folder, and
sends the signal: `startup` 1 s after launch (inside the imports); `compile` 1 s after the start line (the
first batch and the training step's compilation); `train` at the first progress line; `evaluation` at the
progress line of the first evaluation step, printed just before the evaluation begins (the run is made to
log at that step; its stop flag is read before the line, so the evaluation starts and meets the signal). It reports the seconds
from the signal to the process's exit, its exit status, and the line it ended with. Preemption gives about
30 s; issue 36 asks for a few seconds in every phase. The flags after `--` go to every run. The workdirs
are deleted at the end, unless --keep names a folder for them (DIR/<phase>).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
PHASES = ("startup", "compile", "train", "evaluation")
EVAL_STEP = 20  # the evaluation phase's run evaluates (and logs) at this step


def _trigger(phase: str, line: str) -> bool:
    """Whether the run's stdout `line` starts the wait before the signal of `phase`."""
    if phase == "compile":
        return ": starting, " in line or ": resuming at step " in line
    if phase == "train":
        return line.startswith("step ") and "%): loss " in line
    if phase == "evaluation":
        return line.startswith(f"step {EVAL_STEP}/")
    return False


def measure(phase: str, config: str, data_dir: str | None, extra: list[str], workdir: pathlib.Path,
            signum: int = signal.SIGTERM) -> dict[str, object]:
    """Runs one training process, sends `signum` in `phase`, and returns {phase, signal_after_s, exit_after_s,
    returncode, last_line, stdout, stderr}."""
    command = [sys.executable, "-m", "bn_inception.main", f"--config={config}", f"--workdir={workdir}",
               *([f"--config.data_dir={data_dir}"] if data_dir else []), *extra]
    if phase == "evaluation":
        command += [f"--config.eval_every_steps={EVAL_STEP}", f"--config.log_every_steps={EVAL_STEP}",
                    f"--config.checkpoint_every_steps={EVAL_STEP}"]
    began = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in process.stdout:
            stdout.append(line)
            if _trigger(phase, line):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if phase == "startup":
        time.sleep(1.0)
    else:
        while not seen.wait(0.05):
            if process.poll() is not None:
                raise RuntimeError(f"{phase}: the run ended before the phase began:\n{''.join(stdout)}{process.stderr.read()[-3000:]}")
        if phase == "compile":
            time.sleep(1.0)
    sent = time.monotonic()
    process.send_signal(signum)
    stderr = process.stderr.read()
    process.wait()
    ended = time.monotonic()
    reader.join(timeout=10)
    return {"phase": phase, "signal_after_s": round(sent - began, 2), "exit_after_s": round(ended - sent, 2),
            "returncode": process.returncode, "last_line": stdout[-1].rstrip() if stdout else "",
            "stdout": "".join(stdout), "stderr": stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--data_dir")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--signal", default="TERM", choices=("TERM", "INT"))
    parser.add_argument("--json", help="also write the measurements (with each run's output) to this file")
    parser.add_argument("--keep", help="a folder to leave the workdirs in, DIR/<phase> (default: deleted)")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    phases = args.phases.split(",")
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        parser.error(f"--phases: unknown {unknown}; expected some of {','.join(PHASES)}")
    signum = signal.SIGTERM if args.signal == "TERM" else signal.SIGINT
    results = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = pathlib.Path(args.keep or temporary)
        for phase in phases:
            result = measure(phase, args.config, args.data_dir, extra, folder / phase, signum)
            results.append(result)
            print(f"{phase:<11} signal at {result['signal_after_s']:6.1f} s, exited {result['exit_after_s']:5.1f} s "
                  f"later, status {result['returncode']}: {result['last_line']}", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
