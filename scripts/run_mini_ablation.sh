#!/usr/bin/env bash
# All ablations at reduced scale on Imagenette, one after another, then the Figure 2/3 comparison.
#   bash scripts/run_mini_ablation.sh [RUNS_DIR] [extra --config.x=y flags...]
# Each run resumes if interrupted: re-run the same command. Data: ../shared/data/imagenette (or set DATA_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/mini_ablation}
shift || true
data_dir=${DATA_DIR:-../shared/data/imagenette}
ablations=(inception bn_baseline bn_x5 bn_x30 bn_x5_sigmoid inception_sigmoid)
for ablation in "${ablations[@]}"; do
  python -m bn_inception.main --config="configs/${ablation}.py:imagenette" --workdir="${runs}/${ablation}" \
    --config.data_dir="${data_dir}" "$@"
done
python scripts/compare_ablations.py "${ablations[@]/#/${runs}/}" --output="${runs}/report"
