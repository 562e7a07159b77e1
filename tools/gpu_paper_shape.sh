#!/usr/bin/env bash
# On a CUDA machine: benchmarks/paper_shape.py at paper size (a random-init OPT-6.7B and CLIP ViT-L/14 in
# bf16): the FROMAGe step against its floor at micro-batches of 60 sequences (the default, which the goals
# judge), 45 and 90, and without micro-batches; ESPER's rollout; ILLUME's sampling. Writes the log and
# the GPU's utilisation every 5 s to $OUT (default /tmp/vlbridge-paper-shape).
# Usage, from the repository root: OUT=/dir tools/gpu_paper_shape.sh [MICRO_BATCH ...]   (PY: the python)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}; out=${OUT:-/tmp/vlbridge-paper-shape}; mkdir -p "$out"
export VLBRIDGE_CACHE=${VLBRIDGE_CACHE:-$(mktemp -d)} VLBRIDGE_PROGRESS=0 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi dmon -s u -d 5 > "$out/dmon.log" 2>&1 &
dmon=$!
start=$(date +%s)
"$PY" -m benchmarks.paper_shape --size paper --micro-batch ${*:-60 45 90 none} 2>&1 | tee "$out/paper_shape.log"
status=${PIPESTATUS[0]}
kill "$dmon" 2>/dev/null
echo "paper_shape exited $status after $(( $(date +%s) - start )) s" | tee -a "$out/paper_shape.log"
exit "$status"
