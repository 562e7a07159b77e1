#!/usr/bin/env bash
# Does `pip install -e .` keep the torch a machine already has? Makes a fresh venv in a temp folder,
# installs metadata-only stand-ins for what the offline GPU machine has (torch 2.11.0+cu130,
# torchvision 0.26.0+cu130, a numpy 2; no multi-GB CUDA wheels), then asks pip, with the real index,
# what `pip install -e REPO` would install (--dry-run --report) and fails if that replaces any of them.
# Usage: tools/check_install_beside_torch.sh [EXTRAS]      e.g.  tools/check_install_beside_torch.sh book,test
#   PYTHON=/path/to/python3.12 (default python3.12; with pyenv: PYENV_VERSION=3.12.1 or the full path).
#   Needs pip to reach a package index; writes nothing outside its temp folder.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3.12}
extras=${1:+[$1]}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"$python" -m venv "$tmp/venv"
py=$tmp/venv/bin/python
echo "venv: $("$py" --version), $("$py" -m pip --version | cut -d' ' -f1-2)"

# Stand-in wheels: a dist-info and nothing else, with the real packages' names, versions and torch pin.
"$py" - "$tmp/wheels" <<'EOF'
import sys, zipfile
from pathlib import Path

out = Path(sys.argv[1]); out.mkdir()
stubs = {"torch": ("2.11.0+cu130", []), "torchvision": ("0.26.0+cu130", ["torch==2.11.0"]),
         "numpy": ("2.0.0", [])}
for name, (version, requires) in stubs.items():
    info = f"{name}-{version}.dist-info"
    files = {f"{info}/METADATA": "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                                          *(f"Requires-Dist: {r}\n" for r in requires)]),
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(out / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
EOF
"$py" -m pip install -q --no-index --no-deps "$tmp"/wheels/*.whl
echo "preinstalled (stand-ins): $("$py" -m pip list --format=freeze 2>/dev/null | grep -E '^(torch|torchvision|numpy)==' | tr '\n' ' ')"

echo "+ pip install --dry-run --report report.json -e $repo$extras"
"$py" -m pip install -q --dry-run --report "$tmp/report.json" -e "$repo$extras"

"$py" - "$tmp/report.json" <<'EOF'
import json, sys

installs = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
            for i in json.load(open(sys.argv[1]))["install"]}
print(f"would install {len(installs)}:", " ".join(f"{n}=={v}" for n, v in sorted(installs.items())))
replaced = sorted(set(installs) & {"torch", "torchvision", "numpy"})
if replaced:
    sys.exit(f"FAIL: pip install -e . would replace the machine's {', '.join(replaced)}")
print("OK: torch 2.11.0+cu130, torchvision 0.26.0+cu130 and numpy 2.0.0 are kept")
EOF
