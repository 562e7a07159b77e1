"""The book's sources and committed results agree: jupytext round trip, staleness, parameters."""
from pathlib import Path

import jupytext
import nbformat
import pytest

from vlbridge.book import config

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = config.chapters()
COMMITTED = sorted((REPO / "results").glob("*/[0-9][0-9]_*.ipynb"))
# results/gpu is published from a real GPU run only (`make gpu` on a CUDA machine; CI has no GPU), so it
# may be absent; where it exists the tests above and below hold it to the sources like the others.
GPU_RESULTS = REPO / "results" / "gpu"
GPU_NOTEBOOKS = sorted(GPU_RESULTS.glob("[0-9][0-9]_*.ipynb"))


def code_cells(notebook) -> list[str]:
    return [c.source.strip() for c in notebook.cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_percent_source_round_trips_through_jupytext(chapter):
    path = REPO / "book" / f"{chapter}.py"
    text = path.read_text()
    notebook = jupytext.reads(text, fmt="py:percent")
    assert jupytext.writes(notebook, fmt="py:percent") == text


def test_every_profile_has_committed_results_for_every_chapter():
    """smoke and default always (CI checks them with nbval); gpu once published, then whole: it can
    only be made on a GPU, and a partial results/gpu would claim chapters ran there that did not."""
    for profile in ("smoke", "default", *(["gpu"] if GPU_RESULTS.exists() else [])):
        for chapter in CHAPTERS:
            hint = f"run: vlbridge run {chapter} -p {profile}"
            assert (REPO / "results" / profile / f"{chapter}.ipynb").is_file(), hint
            assert (REPO / "results" / profile / chapter / "metrics.json").is_file()
            assert (REPO / "results" / profile / chapter / "run.json").is_file()


@pytest.mark.parametrize("notebook_path", COMMITTED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_committed_results_are_not_stale(notebook_path):
    """The code cells of results/<profile>/NN_slug.ipynb are those of book/NN_slug.py: a chapter
    edited without re-running it fails here."""
    committed = nbformat.read(notebook_path, as_version=4)
    source = jupytext.read(REPO / "book" / f"{notebook_path.stem}.py")
    hint = f"re-run: vlbridge run {notebook_path.stem} -p {notebook_path.parent.name}"
    assert code_cells(committed) == code_cells(source), hint


@pytest.mark.parametrize("notebook_path", COMMITTED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_committed_results_used_the_profile_parameters(notebook_path):
    """The injected parameters are exactly what the profile gives today (so nbval re-runs the
    published configuration, and a changed profile without a re-run fails here)."""
    import ast

    committed = nbformat.read(notebook_path, as_version=4)
    injected = [c for c in committed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    values = {}
    for stmt in ast.parse(injected[0].source).body:
        values[stmt.targets[0].id] = ast.literal_eval(stmt.value)
    assert values == config.merged_parameters(notebook_path.stem, notebook_path.parent.name)


@pytest.mark.parametrize("notebook_path", GPU_NOTEBOOKS, ids=lambda p: p.stem)
def test_gpu_results_ran_on_cuda_and_report_what_the_default_book_reports(notebook_path):
    """results/gpu/NN_slug: made on a GPU, with every metric the default profile's run has (its code
    cells and parameters are checked against the sources by the two tests above, like every profile)."""
    import json

    folder = GPU_RESULTS / notebook_path.stem
    record = json.loads((folder / "run.json").read_text())
    assert record["device"] == "cuda" and record["profile"] == "gpu"
    gpu = json.loads((folder / "metrics.json").read_text())
    default = json.loads((REPO / "results" / "default" / notebook_path.stem / "metrics.json").read_text())
    missing = sorted(set(default) - set(gpu))
    assert not missing, f"results/gpu/{notebook_path.stem}/metrics.json lacks {missing}: re-run it with `make gpu`"
