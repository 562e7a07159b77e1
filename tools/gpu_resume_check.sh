#!/usr/bin/env bash
# On a CUDA machine: does `vlbridge train` resume exactly there too? For each model, a whole run with
# checkpoints; then a copy of its run folder cut back to the earliest checkpoint of each of its
# checkpoint folders (a model trained from another, and ILLUME's rounds, keep theirs in sub-folders),
# resumed. Every safetensors file of the model's store entry (its weights, and the snapshots it keeps)
# must be byte-identical after the two. Writes to $OUT (default /tmp/vlbridge-gpu-resume).
# Usage, from the repository root: OUT=/dir tools/gpu_resume_check.sh [MODEL ...]   (PY: the python;
# SET="k=v ...": more parameters for every run)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}; out=${OUT:-/tmp/vlbridge-gpu-resume}; DEVICE=${DEVICE:-cuda}; mkdir -p "$out"
export VLBRIDGE_CACHE=${VLBRIDGE_CACHE:-$(mktemp -d)} VLBRIDGE_PROGRESS=0
failures=0

entry_sums() {  # the sha256 of every safetensors file of the store entry a run folder's train.json names
  local entry
  entry=$(sed -n 's/.*"entry": "\([^"]*\)".*/\1/p' "$1/train.json")
  (cd "$entry" && find . -name '*.safetensors' | sort | xargs sha256sum)
}

for model in ${*:-fromage esper_grpo}; do
  whole=$out/$model-whole cut=$out/$model-cut
  start=$(date +%s)
  "$PY" -m vlbridge train "$model" -p smoke --set device="$DEVICE" ${SET:+--set $SET} --checkpoint-every 2 --out "$whole" \
    > "$out/$model-whole.log" 2>&1 || { echo "$model: the whole run failed (see $model-whole.log)"; failures=$((failures + 1)); continue; }
  entry_sums "$whole" > "$out/$model-whole.sha256"
  cp -r "$whole" "$cut" && rm "$cut/train.json"
  # In every folder of checkpoints, keep only the earliest.
  find "$cut" -type d -name 'step-[0-9][0-9][0-9][0-9][0-9][0-9]' -printf '%h\n' | sort -u | while read -r folder; do
    ls -d "$folder"/step-[0-9]* | sort | tail -n +2 | xargs rm -rf
  done
  kept=$(find "$cut" -type d -name 'step-[0-9][0-9][0-9][0-9][0-9][0-9]' | sed "s|$cut/||" | sort | tr '\n' ' ')
  # The prerequisites the whole run saved stay in the store: the resumed run loads them, as a rerun would.
  "$PY" -m vlbridge train "$model" -p smoke --set device="$DEVICE" ${SET:+--set $SET} --checkpoint-every 2 --out "$cut" --resume \
    > "$out/$model-cut.log" 2>&1 || { echo "$model: the resumed run failed (see $model-cut.log)"; failures=$((failures + 1)); continue; }
  entry_sums "$cut" > "$out/$model-cut.sha256"
  files=$(wc -l < "$out/$model-whole.sha256")
  if cmp -s "$out/$model-whole.sha256" "$out/$model-cut.sha256"; then verdict="identical"; else verdict="DIFFERENT"; failures=$((failures + 1)); fi
  echo "$model on $DEVICE: resumed from ${kept}-> its $files weight files $verdict to the whole run's ($(( $(date +%s) - start )) s)"
  grep -h "resuming from\|trained\|loaded" "$out/$model-cut.log" | sed 's/^/  /'
done
exit $failures
