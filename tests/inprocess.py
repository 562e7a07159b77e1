"""Running a chapter's code cells in this process (as papermill would, parameters injected after the
parameters cell), for tests that need to look inside a chapter or change what it imports."""
import jupytext
import matplotlib.pyplot as plt
import torch

from vlbridge.book import config


def run_cells(chapter: str, params: dict) -> dict:
    """Execute a chapter's code cells, the parameters cell followed by `params`; returns its globals."""
    namespace = {"__name__": "__main__"}
    for index, cell in enumerate(jupytext.read(config.chapter_path(chapter)).cells):
        if cell.cell_type != "code":
            continue
        exec(compile(cell.source, f"{chapter}, cell {index}", "exec"), namespace)
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(params)
    plt.close("all")
    return namespace


class torch_settings:
    """Chapters set torch's threads and deterministic mode for the whole process: put them back after."""

    def __enter__(self):
        self.threads, self.deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic)
