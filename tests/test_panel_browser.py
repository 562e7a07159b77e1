"""The human critic, clicked in a real browser: JupyterLab from this venv, driven by headless Chromium
through Playwright as a person would drive it: read the item, click choices, reload the page, restart
the kernel, resume, and open a second tab on the same log.

Marked `browser` (`make unit` skips it; `make test` runs it). Needs Debian's `chromium`
(`apt-get install chromium`; .ci/run installs it: Playwright's own browser download is not reachable
here) and the `playwright` package (the `test` extra). tools/panel_screenshot.py runs the same flow to
make chapter 05's figures/critic_panel.png.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from vlbridge.critics import DecisionLog, RecordedCritic, world_items

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MARK = "VLBRIDGE_BROWSER_TEST"  # every process this test starts inherits it: that is how leftovers are found
TIMEOUT_MS = 90_000  # a kernel start on a busy 2-core machine can take tens of seconds
ITEMS = world_items(0, 6)
# Plain strings, no model: the gold rationale, another item's, and one false of every scene.
CANDIDATES = {it.item_id: [it.explanation, ITEMS[(i + 1) % len(ITEMS)].explanation, "there is a big red triangle"]
              for i, it in enumerate(ITEMS)}
# What the person keeps (indices into the candidates) for the first five items, in the order clicked.
CHOICES = [[0], [], [1], [0], [0, 2]]
PANEL_CELL = """\
import json, os
from vlbridge import world
from vlbridge.critic_panel import CriticPanel
from vlbridge.critics import DecisionLog, world_items

items = world_items(0, {count})
candidates = json.loads(open({candidates!r}).read())
panel = CriticPanel(items, candidates, DecisionLog({log!r}), round=0, image_fn=lambda it: world.render(it.scene, 128))
print("kernel", os.getpid())
panel.widget
"""


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path  # the server's output, printed when a test fails


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _marked(marker: str) -> list:
    import psutil  # ipykernel's dependency, so always here with the book extra

    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.pid != os.getpid() and process.environ().get(MARK) == marker:
                found.append(process)
    return found


@contextlib.contextmanager
def no_processes_left(wait_s: float = 20):
    """Marks every process started inside (through the environment it inherits: the server, its
    kernels, Playwright's driver, Chromium) and on the way out kills any still running; when the body
    succeeded, a leftover is also a failure."""
    marker = secrets.token_hex(8)
    before = os.environ.get(MARK)
    os.environ[MARK] = marker
    try:
        yield
    finally:
        if before is None:
            del os.environ[MARK]
        else:
            os.environ[MARK] = before
        deadline = time.monotonic() + wait_s  # a stopped server shuts its kernels down in the background
        while (left := _marked(marker)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for process in left:
            with contextlib.suppress(Exception):
                process.kill()
    if left:
        raise AssertionError(f"left running: {[' '.join(p.cmdline()[:3]) for p in left if p.is_running()]}")


@contextlib.contextmanager
def jupyter_lab(folder: Path):
    """JupyterLab from this venv on a free localhost port with a token, in its own session, with its
    config, data, runtime and IPython dirs under `folder`: nothing of the user's settings gets in."""
    root, home = folder / "root", folder / "jupyter"
    for name in ("config", "data", "runtime", "ipython"):
        (home / name).mkdir(parents=True, exist_ok=True)
    root.mkdir(exist_ok=True)
    # No "get Jupyter news?" toast over the panel.
    settings = home / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = os.environ | {"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
                        "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
                        "MPLCONFIGDIR": str(home / "mpl"),
                        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    port, token = free_port(), secrets.token_hex(16)
    log = folder / "jupyter.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--ServerApp.terminals_enabled=False",
             "--LabApp.extension_manager=readonly",  # offline: no index to ask
             *(["--allow-root"] if os.geteuid() == 0 else [])],  # CI runs as root
            env=env, cwd=root, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log)
    try:
        _wait_until_up(lab, server)
        yield lab
    finally:
        server.terminate()  # SIGTERM: the server shuts its kernels down, then exits
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _wait_until_up(lab: Lab, server: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(f"{lab.url}/api/status", headers={"Authorization": f"token {lab.token}"})
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{lab.log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        if time.monotonic() > deadline:
            raise TimeoutError(f"JupyterLab did not answer in {timeout_s} s:\n{lab.log.read_text()[-3000:]}")
        time.sleep(0.3)


@contextlib.contextmanager
def chromium():
    """A headless Chromium page context: Debian's browser, driven by Playwright."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 1000}, device_scale_factor=2)
            context.set_default_timeout(TIMEOUT_MS)
            yield context
        finally:
            browser.close()


def write_notebook(path: Path, log: Path, candidates: Path) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PANEL_CELL.format(
        count=len(ITEMS), candidates=str(candidates), log=str(log)))])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(notebook, path)


def open_notebook(page, lab: Lab, workspace: str, name: str):
    """Opens a notebook in its own JupyterLab workspace (so the two tabs don't restore each other's
    documents) and returns the locator of its panel."""
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{name}?token={lab.token}")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    return page.locator(".vlbridge-critic-panel")


def run_cell(page) -> None:
    """Runs the first cell once the kernel is ready (JupyterLab drops a run asked of a starting kernel)."""
    from playwright.sync_api import expect

    expect(page.locator(".jp-StatusBar-Widget", has_text="| Idle")).to_be_visible()
    page.locator(".jp-Cell .jp-InputArea-editor").first.click()
    page.keyboard.press("Shift+Enter")


def kernel_pid(page, other_than: str = "") -> str:
    """The pid the cell printed, once it is not `other_than` (the output of a run before a restart)."""
    from playwright.sync_api import expect

    pattern = re.compile(rf"kernel (?!{other_than}\b)\d+" if other_than else r"kernel \d+")
    output = page.locator(".jp-OutputArea-output").filter(has_text=pattern)
    expect(output).to_be_visible()
    return re.search(r"kernel (\d+)", output.inner_text())[1]


def judge(panel, judged: int, kept: list[int], screenshot: Path | None = None) -> None:
    """Reads the pending item on screen, ticks the candidates to keep and clicks; waits for the count."""
    from playwright.sync_api import expect

    item = ITEMS[judged]
    expect(panel.get_by_text(f"{judged} of {len(ITEMS)} judged (round 0)")).to_be_visible()
    expect(panel).to_contain_text(f"Q: {item.question}")
    expect(panel).to_contain_text(f"A: {item.answer}")
    boxes = [panel.get_by_role("checkbox", name=text, exact=True) for text in CANDIDATES[item.item_id]]
    for box in boxes:
        expect(box).to_be_visible()
        expect(box).not_to_be_checked()
    for index in kept:
        boxes[index].check()
    if screenshot is not None:
        panel.screenshot(path=screenshot)
    panel.get_by_role("button", name="Keep checked" if kept else "Reject all").click()
    expect(panel.get_by_text(f"{judged + 1} of {len(ITEMS)} judged (round 0)")).to_be_visible()


def judge_like_a_person(context, lab: Lab, shots: Path) -> Path:
    """The whole flow; returns the decision log. Screenshots go to `shots`: critic_panel.png (the
    panel resumed after a restart, a box ticked) and second_tab.png (the second panel's message)."""
    from playwright.sync_api import expect

    log, candidates = lab.root / "decisions.jsonl", lab.root / "candidates.json"
    candidates.write_text(json.dumps(CANDIDATES))
    write_notebook(lab.root / "panel.ipynb", log, candidates)
    write_notebook(lab.root / "second.ipynb", log, candidates)

    page = context.new_page()
    panel = open_notebook(page, lab, "first", "panel.ipynb")
    run_cell(page)
    first_kernel = kernel_pid(page)
    for judged in range(3):
        judge(panel, judged, CHOICES[judged])

    # Reload: the saved notebook's panel comes back from the running kernel, where it was.
    page.keyboard.press("Control+s")
    expect(page.locator(".jp-mod-dirty")).to_have_count(0)
    page.reload()
    panel = open_notebook(page, lab, "first", "panel.ipynb")
    expect(panel.get_by_text(f"3 of {len(ITEMS)} judged")).to_be_visible()

    # Restart the kernel from the menu and run the cell again: a new process resumes at item 3.
    page.get_by_role("menuitem", name="Kernel").click()
    page.get_by_role("menuitem", name=re.compile("^Restart Kernel…")).first.click()
    restart = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    expect(restart).to_have_text("Restart")
    restart.click()
    expect(page.locator(".jp-Dialog")).to_have_count(0)
    run_cell(page)
    kernel_pid(page, other_than=first_kernel)
    judge(panel, 3, CHOICES[3], screenshot=shots / "critic_panel.png")
    judge(panel, 4, CHOICES[4])

    # A second tab: another notebook, so another kernel, on the same log. It must not write.
    second = context.new_page()
    other = open_notebook(second, lab, "second", "second.ipynb")
    run_cell(second)
    kernel_pid(second)
    expect(other).to_contain_text("is open for writing by")
    expect(other).to_contain_text(str(log))
    expect(other.get_by_role("button")).to_have_count(0)
    other.screenshot(path=shots / "second_tab.png")
    return log


@pytest.fixture
def lab(tmp_path):
    with no_processes_left(), jupyter_lab(tmp_path) as running:
        yield running


@pytest.fixture
def browser(lab):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    pytest.importorskip("playwright", reason="the test extra's playwright")
    with chromium() as context:
        yield context


def test_a_person_judges_in_jupyterlab_through_a_reload_a_restart_and_a_second_tab(lab, browser, tmp_path):
    started = time.monotonic()
    try:
        log = judge_like_a_person(browser, lab, tmp_path)
    except BaseException:
        for page in browser.pages:  # what the person saw when it failed
            with contextlib.suppress(Exception):
                page.screenshot(path=tmp_path / f"failure-{browser.pages.index(page)}.png")
        print(f"screenshots in {tmp_path}; JupyterLab's log:\n{lab.log.read_text()[-4000:]}")
        raise
    print(f"panel screenshot: {tmp_path / 'critic_panel.png'} ({time.monotonic() - started:.1f} s in the browser)")

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["item_id"], r["round"], r["kept"], r["critic"]) for r in lines] == [
        (it.item_id, 0, kept, "person") for it, kept in zip(ITEMS, CHOICES)]
    replay = RecordedCritic(DecisionLog(log), 0)
    assert [replay.judge(it, CANDIDATES[it.item_id]) for it in ITEMS[:5]] == [
        [i in kept for i in range(3)] for kept in CHOICES]
    assert DecisionLog(log).pending(ITEMS, 0) == ITEMS[5:]
