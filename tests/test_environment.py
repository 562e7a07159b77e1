"""One list of dependencies: environment.yml is a thin shim over pyproject.toml."""
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_project_with_the_same_torch_pins():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    pins = {d for d in pyproject["project"]["dependencies"] if d.startswith(("torch==", "torchvision=="))}
    assert pins == {"torch==2.14.1", "torchvision==0.29.1"}
    assert pins <= set(pip)
    assert "-e .[book,test]" in pip
    # Nothing else: every other dependency comes from pyproject through the editable install.
    assert set(pip) == pins | {"-e .[book,test]"}


def test_pyproject_declares_the_console_script_and_extras():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["vlbridge"] == "vlbridge.cli:main"
    assert {"book", "test", "dev"} <= set(pyproject["project"]["optional-dependencies"])
