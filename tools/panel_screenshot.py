"""Writes chapter 05's figures/critic_panel.png: the critic panel in JupyterLab, in headless Chromium,
made by the same flow tests/test_panel_browser.py clicks through (the panel resumed after a kernel
restart, one rationale ticked), so the book shows what a person sees.

    .venv/bin/python tools/panel_screenshot.py [OUT.png]

Needs Debian's chromium and playwright (the test extra). Run it again after `vlbridge run 05 --profile
default`: publishing a chapter replaces its whole results folder, this figure included.
"""
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import test_panel_browser as browser_test  # noqa: E402  (the helpers live beside the test that checks them)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "results/default/05_feedback/figures/critic_panel.png"
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        with browser_test.no_processes_left(), browser_test.jupyter_lab(folder) as lab, \
                browser_test.chromium() as context:
            browser_test.judge_like_a_person(context, lab, folder)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "critic_panel.png", out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
