#!/usr/bin/env bash
# The GPU acceptance sequence in one command, for a session that has a CUDA GPU:
#   env    what the machine has: nvidia-smi, python, torch, every installed version (pip-freeze.txt)
#   smoke  the smoke book on cuda twice; every metrics.json (and scoreboard.json) of the two runs
#          must be equal, ignoring timings (keys containing "seconds" or ending in "_s")
#   gpu    the gpu book into results/gpu from an empty VLBRIDGE_CACHE, chapter by chapter, timed
# Usage, from the repository root (the default is all three steps):
#   OUT=/some/dir tools/gpu_acceptance.sh [env] [smoke] [gpu]
#   ../shared/gpu/run.sh WHEELDIR bash tools/gpu_acceptance.sh smoke      (offline wheels beside the machine's torch)
#   PY=/path/to/python   the python with a CUDA torch and vlbridge importable (default python3; never .venv)
# Everything lands in $OUT as it happens (acceptance.log, summary.txt, dmon.log, durations-*.tsv,
# results-gpu.tgz after each chapter), so a run cut off by a time limit still leaves its evidence.
# Exit status: the number of failed checks (0: all passed).
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
export PY=${PY:-python3}
out=${OUT:-/tmp/vlbridge-gpu-acceptance}
mkdir -p "$out"; out=$(cd "$out" && pwd)
work=$(mktemp -d)
steps=${*:-env smoke gpu}
failures=0
exec > >(tee -a "$out/acceptance.log") 2>&1

note() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$out/summary.txt"; }
vlbridge() { "$PY" -m vlbridge "$@"; }

if command -v nvidia-smi >/dev/null; then
  nvidia-smi dmon -s u -d 5 > "$out/dmon.log" 2>&1 &   # is the GPU busy? (SM % every 5 s)
  dmon=$!
  trap 'kill $dmon 2>/dev/null; rm -rf "$work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
note "start: steps '$steps', python $PY, repo $PWD, output $out"

# Per-chapter durations of a results/<profile> folder, from the run.json files the runner writes.
durations() {
  "$PY" - "$1" > "$2" <<'EOF'
import json, sys
from pathlib import Path
print("chapter\tduration_s\tdevice\ttorch\tgit_sha")
for path in sorted(Path(sys.argv[1]).glob("*/run.json")):
    r = json.loads(path.read_text())
    print(f"{r['chapter']}\t{r['duration_s']}\t{r['device']}\t{r['versions'].get('torch')}\t{r['git_sha'][:10]}")
EOF
}

if [[ " $steps " == *" env "* ]]; then
  command -v nvidia-smi >/dev/null && nvidia-smi > "$out/nvidia-smi.txt" 2>&1
  "$PY" -m pip list --format=freeze > "$out/pip-freeze.txt" 2>&1
  "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda,
             "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' \
    | tee "$out/torch.txt" || { note "FAIL env: no working torch under $PY"; failures=$((failures + 1)); }
  "$PY" -c 'from vlbridge.book.runner import _versions; print(_versions())' | tee -a "$out/torch.txt"
fi

if [[ " $steps " == *" smoke "* ]]; then
  # Run A pretrains the stand-in backbones into an empty cache; run B loads them from it. Chapters 3-5
  # train and save their models again either way, so equal metrics say both that the book repeats
  # exactly on this GPU and that a cached backbone gives what a freshly pretrained one gave, which is
  # what a reader's second run does (and it pretrains the backbones once instead of twice).
  export VLBRIDGE_CACHE=$work/cache-smoke
  for run in a b; do
    start=$SECONDS
    time vlbridge run all --profile smoke --set device=cuda --out "$work/smoke-$run"
    note "smoke run $run: exit $? in $((SECONDS - start)) s"
    durations "$work/smoke-$run/smoke" "$out/durations-smoke-$run.tsv"
    tar czf "$out/smoke-$run.tgz" -C "$work" "smoke-$run"
  done
  if "$PY" - "$work/smoke-a/smoke" "$work/smoke-b/smoke" <<'EOF'
import json, sys
from pathlib import Path

def timeless(value):
    """The value without timings: keys containing 'seconds' or ending in '_s', at any depth."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if "seconds" not in k and not k.endswith("_s")}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value

def differences(a, b, where=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from differences(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{where}[{i}]")
    elif a != b:
        yield f"{where}: {a!r} != {b!r}"

a, b = map(Path, sys.argv[1:])
files = sorted({p.relative_to(a) for p in [*a.glob("*/metrics.json"), *a.glob("scoreboard.json")]}
               | {p.relative_to(b) for p in [*b.glob("*/metrics.json"), *b.glob("scoreboard.json")]})
bad = 0
for name in files:
    if not (a / name).is_file() or not (b / name).is_file():
        print(f"{name}: only in one run"); bad += 1; continue
    found = list(differences(timeless(json.loads((a / name).read_text())), timeless(json.loads((b / name).read_text()))))
    print(f"{name}: {'equal' if not found else f'{len(found)} differences'}")
    for line in found[:20]:
        print("   ", line)
    bad += bool(found)
print(f"{len(files)} files compared, {bad} differ")
sys.exit(1 if bad or not files else 0)
EOF
  then note "smoke repeat: every metrics.json equal"
  else note "FAIL smoke repeat: metrics differ between the two runs (above)"; failures=$((failures + 1))
  fi
fi

if [[ " $steps " == *" gpu "* ]]; then
  # Chapter by chapter (what `run all` does), so the tarball and the durations are written after each;
  # a failed chapter does not stop the next, so one session sees every chapter that fails.
  export VLBRIDGE_CACHE=$work/cache-gpu
  start=$SECONDS
  for chapter in $(vlbridge list | sed -n 's/^  \([0-9][0-9]_[a-z_]*\)$/\1/p'); do
    chapter_start=$SECONDS
    if command -v make >/dev/null; then
      time make gpu GPU_PYTHON="$PY" GPU_CHAPTERS="$chapter"
    else
      time vlbridge run "$chapter" --profile gpu
    fi
    status=$?
    note "gpu $chapter: exit $status in $((SECONDS - chapter_start)) s"
    [ $status -eq 0 ] || failures=$((failures + 1))
    durations results/gpu "$out/durations-gpu.tsv"
    tar czf "$out/results-gpu.tgz.part" results/gpu results/.failed-gpu-* 2>/dev/null
    mv "$out/results-gpu.tgz.part" "$out/results-gpu.tgz"
  done
  note "gpu book: $((SECONDS - start)) s in all"
fi

note "done: $failures failed"
exit "$failures"
