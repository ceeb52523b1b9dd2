#!/usr/bin/env bash
# The README's accelerator figures, on the first device of a host with a GPU or TPU:
#   bash scripts/accelerator_figures.sh OUTDIR [NAME ...]
# Measurements (all of them by default, in this order; NAMEs pick some):
#   imagenette_inception, imagenette_bn_x30  the reduced-scale Figure 3 protocol's training step
#       (`:imagenette`, float32, batch 64) and evaluation: what the protocol costs on an accelerator;
#   full_bf16_b256  full-size BN-Inception (224px, bfloat16 compute), global batch 256 in groups of 32:
#       images/s, MFU, evaluation, memory and BN's overhead;
#   check_device    one training step against the CPU reference (scripts/check_device.py);
#   full_bf16_b128, full_bf16_b256_whole, full_f32_b256  batch 128; whole-batch statistics; float32.
# Synthetic data only (no TensorFlow needed). Each measurement has its own time limit; their output goes
# to OUTDIR/measurements.log, each benchmark's JSON to OUTDIR/NAME.json and a table to OUTDIR/summary.txt.
# PYTHON picks the interpreter.
set -u
out=${1:?usage: bash scripts/accelerator_figures.sh OUTDIR [NAME ...]}
shift
names=("$@")
known=" imagenette_inception imagenette_bn_x30 full_bf16_b256 check_device full_bf16_b128 full_bf16_b256_whole full_f32_b256 "
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

measure() {  # NAME SECONDS SCRIPT ARGS...: one script under a time limit, if NAME is asked for
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  if ((${#names[@]})) && [[ " ${names[*]} " != *" $name "* ]]; then return; fi
  echo "=== $name: $*" >>"$out/measurements.log"
  timeout "$limit" "$py" "$@" >>"$out/measurements.log" 2>&1
  echo "[$name] exit $? after $((SECONDS - start)) s"
}

full=(--config=configs/bn_x30.py:synthetic --config.dtype=bfloat16 --steps=50 --warmup_steps=5)
measure imagenette_inception 100 scripts/benchmark.py --config=configs/inception.py:imagenette,synthetic \
  --steps=300 --warmup_steps=30 --bn_overhead=false --output="$out/imagenette_inception.json"
measure imagenette_bn_x30 100 scripts/benchmark.py --config=configs/bn_x30.py:imagenette,synthetic \
  --steps=300 --warmup_steps=30 --bn_overhead=false --output="$out/imagenette_bn_x30.json"
measure full_bf16_b256 150 scripts/benchmark.py "${full[@]}" --config.global_batch_size=256 \
  --output="$out/full_bf16_b256.json"
measure check_device 100 scripts/check_device.py --config=configs/bn_x30.py:imagenette,synthetic
grep -E "^(bn_x30, 64px|reference:|device, |same training|DIFFERENT training)" "$out/measurements.log"
measure full_bf16_b128 80 scripts/benchmark.py "${full[@]}" --config.global_batch_size=128 \
  --bn_overhead=false --output="$out/full_bf16_b128.json"
measure full_bf16_b256_whole 80 scripts/benchmark.py "${full[@]}" --config.global_batch_size=256 \
  --config.bn_group_size=0 --bn_overhead=false --output="$out/full_bf16_b256_whole.json"
measure full_f32_b256 80 scripts/benchmark.py "${full[@]}" --config.dtype=float32 --config.global_batch_size=256 \
  --bn_overhead=false --output="$out/full_f32_b256.json"

"$py" - "$out" <<'EOF' | tee "$out/summary.txt"
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    t, e = r["train"], r["eval"]
    mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    bn = f"{100 * r['bn_overhead']:.0f}%" if "bn_overhead" in r else "-"
    mem = r["memory"]["device_peak_bytes"]
    print(f"{path.stem:<22} {r['device_kind']:<14} {r['image_size']:>4}px b{r['global_batch_size']:<4} {r['dtype']:<9}"
          f" step {1e3 * t['step_seconds']:7.2f} ms  train {t['images_per_second_per_device']:9,.0f} img/s"
          f"  {t['flops_per_image'] / 1e9:5.2f} GFLOP/img  MFU {mfu:>6}  eval {e['images_per_second_per_device']:9,.0f} img/s"
          f"  BN overhead {bn:>4}  compile {t['compile_seconds']:5.1f} s  peak {'n/a' if mem is None else f'{mem / 2**30:.1f} GiB'}")
EOF
