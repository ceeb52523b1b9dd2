#!/usr/bin/env bash
# The README's accelerator figures, on the first device of a host with a GPU or TPU:
#   bash scripts/dev/accelerator_figures.sh OUTDIR [NAME ...]
# Measurements (all of them by default, in this order; NAMEs pick some):
#   imagenette_inception, imagenette_bn_x30  the reduced-scale Figure 3 protocol's training step
#       (`:imagenette`, float32, batch 64) and evaluation: what the protocol costs on an accelerator;
#   full_bf16_b256  full-size BN-Inception (224px, bfloat16 compute), global batch 256 in groups of 32:
#       images/s, MFU, evaluation, memory and BN's overhead;
#   check_device    one training step against the CPU reference (scripts/dev/check_device.py);
#   profile_full_bf16_b256, profile_imagenette_inception  where those steps' time goes on a GPU: kernels
#       per step, busy against wall time, time by kind of kernel (scripts/dev/profile_step.py);
#   full_bf16_b128, full_bf16_b256_whole, full_f32_b256  batch 128; whole-batch statistics; float32.
# Synthetic data only (no TensorFlow needed). Each measurement has its own time limit; their output goes
# to OUTDIR/measurements.log, each benchmark's JSON to OUTDIR/NAME.json and a table to OUTDIR/summary.txt.
# PYTHON picks the interpreter.
set -u
out=${1:?usage: bash scripts/dev/accelerator_figures.sh OUTDIR [NAME ...]}
shift
names=("$@")
# One line per measurement, in running order: NAME SECONDS SCRIPT ARGS (benchmark.py and profile_step.py get
# --output=OUTDIR/NAME.json).
full="--config=configs/bn_x30.py:synthetic --config.dtype=bfloat16 --steps=50 --warmup_steps=5"
measurements=(
  "imagenette_inception 100 scripts/benchmark.py --config=configs/inception.py:imagenette,synthetic --steps=300 --warmup_steps=30 --bn_overhead=false"
  "imagenette_bn_x30 100 scripts/benchmark.py --config=configs/bn_x30.py:imagenette,synthetic --steps=300 --warmup_steps=30 --bn_overhead=false"
  "full_bf16_b256 150 scripts/benchmark.py $full --config.global_batch_size=256"
  "check_device 100 scripts/dev/check_device.py --config=configs/bn_x30.py:imagenette,synthetic"
  "profile_full_bf16_b256 120 scripts/dev/profile_step.py --config=configs/bn_x30.py:synthetic --config.dtype=bfloat16 --config.global_batch_size=256"
  "profile_imagenette_inception 80 scripts/dev/profile_step.py --config=configs/inception.py:imagenette,synthetic"
  "full_bf16_b128 80 scripts/benchmark.py $full --config.global_batch_size=128 --bn_overhead=false"
  "full_bf16_b256_whole 80 scripts/benchmark.py $full --config.global_batch_size=256 --config.bn_group_size=0 --bn_overhead=false"
  "full_f32_b256 80 scripts/benchmark.py $full --config.dtype=float32 --config.global_batch_size=256 --bn_overhead=false"
)
known=" $(printf '%s ' "${measurements[@]%% *}")"
for name in "${names[@]}"; do
  if [[ "$known" != *" $name "* ]]; then
    echo "Unknown measurement '$name'; expected some of:$known" >&2
    exit 2
  fi
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
cd "$(dirname "$0")/.."

"$py" -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, jax.devices())' 2>&1 | tail -1

for measurement in "${measurements[@]}"; do
  read -r name limit script args <<<"$measurement"
  if ((${#names[@]})) && [[ " ${names[*]} " != *" $name "* ]]; then continue; fi
  output=()
  [[ $script == scripts/benchmark.py || $script == scripts/dev/profile_step.py ]] && output=(--output="$out/$name.json")
  echo "=== $name: $script $args" >>"$out/measurements.log"
  start=$SECONDS
  # $args is split into words on purpose: it holds only flags without spaces.
  timeout "$limit" "$py" "$script" $args "${output[@]}" >"$out/current.log" 2>&1
  status=$?
  cat "$out/current.log" >>"$out/measurements.log"
  echo "[$name] exit $status after $((SECONDS - start)) s"
  [[ $script == scripts/dev/profile_step.py ]] && grep -v "^JSON:" "$out/current.log"
  if [[ $name == check_device ]]; then
    grep -E "^(bn_x30, 64px|reference:|device, |same training|DIFFERENT training)" "$out/measurements.log"
  fi
done
rm -f "$out/current.log"

"$py" - "$out" <<'EOF' | tee "$out/summary.txt"
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    if "train" not in r:  # a profile (printed above)
        continue
    t, e = r["train"], r["eval"]
    mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    bn = f"{100 * r['bn_overhead']:.0f}%" if "bn_overhead" in r else "-"
    mem = r["memory"]["device_peak_bytes"]
    print(f"{path.stem:<22} {r['device_kind']:<14} {r['image_size']:>4}px b{r['global_batch_size']:<4} {r['dtype']:<9}"
          f" step {1e3 * t['step_seconds']:7.2f} ms  train {t['images_per_second_per_device']:9,.0f} img/s"
          f"  {t['flops_per_image'] / 1e9:5.2f} GFLOP/img  MFU {mfu:>6}  eval {e['images_per_second_per_device']:9,.0f} img/s"
          f"  BN overhead {bn:>4}  compile {t['compile_seconds']:5.1f} s  peak {'n/a' if mem is None else f'{mem / 2**30:.1f} GiB'}")
EOF
