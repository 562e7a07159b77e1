"""Test set-up for both the unit tests (tests/) and nbval's re-execution of the committed notebooks
(results/<profile>/*.ipynb). Every test runs with results and caches in temporary folders, so no
test writes into results/ or the user's cache — nbval's kernels included, which inherit this
environment."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from vlbridge import kernel_environment  # torch-free: the environment is set before torch loads

REPO = Path(__file__).resolve().parent

# Set before any kernel or torch starts (nbval's kernels inherit this environment).
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="vlbridge-tests-"))
os.environ.setdefault("VLBRIDGE_CACHE", str(_SESSION_TMP / "cache"))
os.environ["VLBRIDGE_RESULTS"] = str(_SESSION_TMP / "results")
os.environ.setdefault("MPLCONFIGDIR", str(_SESSION_TMP / "mpl"))
for _name, _value in kernel_environment(threads=2).items():
    os.environ.setdefault(_name, _value)
os.environ["VLBRIDGE_PROGRESS"] = "0"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models: they gain nothing from a second, and on a busy
    2-core machine a second thread that waits for a core makes every op many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throwaway copy of the book's chapters and profiles, as VLBRIDGE_ROOT, to break at will."""
    for folder in ("book", "params"):
        ignore = shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints")
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=ignore)
    monkeypatch.setenv("VLBRIDGE_ROOT", str(tmp_path))
    return tmp_path


def pytest_collectstart(collector):
    """nbval compares outputs except stderr (library warnings are not results)."""
    if getattr(collector, "fspath", None) is not None and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)
