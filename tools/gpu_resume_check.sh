#!/usr/bin/env bash
# On a CUDA machine: does `vlbridge train` resume exactly there too? For each model, a whole run with
# checkpoints, then a copy of its run folder cut back to an early checkpoint, resumed; the final
# weights of the two must be byte-identical. Writes to $OUT (default /tmp/vlbridge-gpu-resume).
# Usage, from the repository root: OUT=/dir tools/gpu_resume_check.sh [MODEL ...]   (PY: the python)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}; out=${OUT:-/tmp/vlbridge-gpu-resume}; mkdir -p "$out"
export VLBRIDGE_CACHE=${VLBRIDGE_CACHE:-$(mktemp -d)} VLBRIDGE_PROGRESS=0
failures=0
for model in ${*:-fromage esper_grpo}; do
  whole=$out/$model-whole cut=$out/$model-cut
  start=$(date +%s)
  "$PY" -m vlbridge train "$model" -p smoke --set device=cuda --checkpoint-every 2 --out "$whole" > "$out/$model-whole.log" 2>&1 \
    || { echo "$model: the whole run failed (see $model-whole.log)"; failures=$((failures + 1)); continue; }
  first=$(ls -d "$whole"/step-* | head -1)
  mkdir -p "$cut" && cp -r "$first" "$cut/"
  weights=$(sed -n 's/.*"entry": "\(.*\)".*/\1/p' "$whole/train.json")/bridge.safetensors
  cp "$weights" "$out/$model-whole.safetensors"
  "$PY" -m vlbridge train "$model" -p smoke --set device=cuda --checkpoint-every 2 --out "$cut" --resume > "$out/$model-cut.log" 2>&1 \
    || { echo "$model: the resumed run failed (see $model-cut.log)"; failures=$((failures + 1)); continue; }
  if cmp -s "$weights" "$out/$model-whole.safetensors"; then verdict="identical"; else verdict="DIFFERENT"; failures=$((failures + 1)); fi
  echo "$model on cuda: resumed from $(basename "$first") -> final weights $verdict to the whole run's ($(( $(date +%s) - start )) s)"
  grep -h "resuming from\|trained" "$out/$model-cut.log" | sed 's/^/  /'
done
exit $failures
