"""One list of dependencies: pyproject.toml holds ranges (the package installs beside a machine's own
torch), constraints/cpu-reference.txt the exact versions of the reference CPU book, and
environment.yml is a thin shim over both."""
import json
import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = "constraints/cpu-reference.txt"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# The offline GPU machine (../shared/gpu/README.md): Python 3.12.3 with a CUDA build of torch and
# torchvision preinstalled. pip must keep them, so they have to be inside pyproject's ranges.
GPU_MACHINE = {"torch": "2.11.0+cu130", "torchvision": "0.26.0+cu130"}
GPU_PYTHON = "3.12.3"
# What ../shared/gpu/pack.sh packs for that machine (../shared/gpu/wheels.txt), for the packages this
# project names; the test reads the file itself where it is beside the repository, as in CI.
PACKED_WHEELS = REPO.parent / "shared" / "gpu" / "wheels.txt"
PACKED_COPY = ["ipykernel==7.4.0", "ipywidgets==8.1.9", "jupytext==1.19.6", "nbval==0.11.0",
               "open_clip_torch==3.3.0", "papermill==2.7.0", "peft==0.21.2", "tokenizers==0.23.3",
               "transformers==5.23.0"]


def ranges() -> dict[str, SpecifierSet]:
    """pyproject's requirement for every package it names, extras included."""
    project = PYPROJECT["project"]
    lines = [*project["dependencies"], *(d for deps in project["optional-dependencies"].values() for d in deps)]
    return {canonicalize_name(r.name): r.specifier for r in map(Requirement, lines)}


def exact_pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line)
            assert match, f"not an exact pin: {line!r}"
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def reference_pins() -> dict[str, str]:
    return exact_pins((REPO / CONSTRAINTS).read_text().splitlines())


def test_environment_yml_installs_the_project_with_the_reference_constraints():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    # Nothing else: every dependency comes from pyproject, every version from the constraints file.
    assert pip == [f"-c {CONSTRAINTS}", "-e .[book,test]"]
    makefile = (REPO / "Makefile").read_text()
    assert f"CONSTRAINTS := {CONSTRAINTS}" in makefile and "pip install -c $(CONSTRAINTS) -e" in makefile
    assert "sys.version_info[:2] == (3, 11)" in makefile  # the committed results come from Python 3.11


def test_every_reference_pin_is_inside_pyproject_ranges():
    """So `make install` (pip install -c constraints -e .) has a solution; and the reference pins
    the torch stack it was made with."""
    allowed = ranges()
    pins = reference_pins()
    assert {"torch", "torchvision", "numpy", "transformers", "tokenizers", "open-clip-torch"} <= set(pins)
    for name, version in pins.items():
        assert name in allowed, f"{CONSTRAINTS} pins {name}, which pyproject.toml does not name"
        assert allowed[name].contains(version), f"{name}=={version} is outside pyproject's {allowed[name]}"


def test_the_committed_results_were_made_with_the_reference_pins():
    pins = reference_pins()
    records = sorted((REPO / "results").glob("*/[0-9][0-9]_*/run.json"))
    assert records
    for path in records:
        versions = json.loads(path.read_text())["versions"]
        assert versions["python"].startswith("3.11."), path
        for name, version in versions.items():
            if canonicalize_name(name) in pins:
                assert version == pins[canonicalize_name(name)], f"{path}: {name} {version}, {CONSTRAINTS} pins it"


def test_python_3_11_to_3_13_are_supported():
    python = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert all(python.contains(v) for v in ("3.11.0", GPU_PYTHON, "3.13.0"))
    assert not python.contains("3.10.12") and not python.contains("3.14.0")


@pytest.mark.parametrize("name, version", [
    *GPU_MACHINE.items(),
    # numpy, matplotlib, pillow, safetensors, pyyaml, tqdm are preinstalled there too, versions not
    # recorded (tools/gpu_acceptance.sh now writes them down): the ranges keep any numpy 2, any
    # matplotlib >= 3.8, any pillow >= 10, and the safetensors transformers 5.23 itself needs.
    ("numpy", "2.0.0"), ("numpy", "2.4.6"), ("matplotlib", "3.8.0"), ("pillow", "10.4.0"), ("safetensors", "0.8.0"),
])
def test_a_gpu_machines_own_packages_are_kept(name, version):
    assert ranges()[name].contains(version), f"pip install -e . would replace {name} {version}"


def test_the_wheels_packed_for_the_gpu_machine_satisfy_the_ranges():
    lines = PACKED_WHEELS.read_text().splitlines() if PACKED_WHEELS.is_file() else PACKED_COPY
    packed = exact_pins(lines)
    allowed = ranges()
    named = {name: version for name, version in packed.items() if name in allowed}
    assert {"transformers", "open-clip-torch", "tokenizers", "jupytext", "papermill"} <= set(named)
    for name, version in named.items():
        assert allowed[name].contains(version), f"packed {name}=={version} is outside pyproject's {allowed[name]}"


def test_pyproject_declares_the_console_script_and_extras():
    assert PYPROJECT["project"]["scripts"]["vlbridge"] == "vlbridge.book.cli:main"
    assert {"book", "test", "dev"} <= set(PYPROJECT["project"]["optional-dependencies"])


def test_run_json_records_every_pinned_version():
    from vlbridge.book.runner import VERSIONED_PACKAGES

    assert set(reference_pins()) <= {canonicalize_name(n) for n in VERSIONED_PACKAGES}


@pytest.mark.parametrize("given, seen", [(None, "1000"), ("300000", "300000")])
def test_importing_vlbridge_shortens_the_spin_of_waiting_threads_unless_the_user_chose(given, seen):
    """libgomp reads GOMP_SPINCOUNT once, when torch loads it: vlbridge must set it on import, before
    torch (benchmarks/contention.py measures why); a user's own setting wins."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"} | ({"GOMP_SPINCOUNT": given} if given else {})
    out = subprocess.run([sys.executable, "-c", "import os, sys, vlbridge; "
                          "print(os.environ['GOMP_SPINCOUNT'], 'torch' in sys.modules)"],
                         env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == [seen, "False"]
