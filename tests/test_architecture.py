"""The library's arrows run one way: a module imports only from lower layers or from its own package,
read from the source with `ast` (lazy imports inside functions count too)."""
import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib" / "vlbridge"

# Lowest first. A module may import from a lower layer, or from its own package (folder).
LAYERS = [
    {"contracts", "repro", "paths", "world", "distributed"},  # foundations; the world imports nothing outside world/
    {"resume", "fsdp"},  # a training run's checkpoints; a frozen LM sharded over ranks (on distributed)
    {"data", "training", "bridge", "checkpoint"},  # files in; optimisation; the splice into the LM; saving
    {"backbones", "features"},  # frozen encoders and LMs; what a bridge is shown of an image
    {"audio_encoder", "eval", "critics"},  # a trained encoder; every metric; the critics
    {"methods"},  # FROMAGe, ClipCap, ESPER, ILLUME
    {"probes", "plots", "critic_panel", "testsets"},  # what chapters use besides the methods; the papers' test sets
    {"book"},  # the book's plumbing: config, runs, the CLI, chapters' sessions, the store, the README
    {"__main__", "train"},  # `python -m vlbridge`, `torchrun -m vlbridge.train`
]
LAYER = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """'vlbridge.methods.fromage' -> 'methods'."""
    return module.split(".")[1]


def modules() -> dict[str, Path]:
    found = {}
    for path in LIB.rglob("*.py"):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """The vlbridge modules `module` imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("vlbridge")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("vlbridge"):
                # `from . import world` names a module; `from .x import name` names an attribute of x
                found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
    return {m for m in found if m != "vlbridge"}


MODULES = modules()


def test_every_module_belongs_to_a_layer():
    units = {unit_of(m) for m in MODULES if m != "vlbridge"}
    assert units <= set(LAYER), f"put these in a layer of LAYERS: {sorted(units - set(LAYER))}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "vlbridge"))
def test_imports_run_downwards(module):
    unit = unit_of(module)
    upward = []
    for target in sorted(imports_of(module, MODULES[module])):
        other = unit_of(target)
        if other == unit:
            continue
        if unit == "world" or LAYER[other] >= LAYER[unit]:
            upward.append(f"{target} ({other}, layer {LAYER[other]})")
    assert not upward, f"{module} ({unit}, layer {LAYER[unit]}) imports upwards or sideways: {', '.join(upward)}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check itself can fail: eval importing a method is caught."""
    bad = tmp_path / "style.py"
    bad.write_text("from ..methods.prefix import STOP\n")
    assert imports_of("vlbridge.eval.style", bad) == {"vlbridge.methods.prefix"}
