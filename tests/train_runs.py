"""`vlbridge train` as tests run it: the real command (torchrun and its gloo processes) on the smoke
profile, saving into a store of the test's own; waiting for a checkpoint; killing a whole run."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def own_cache(tmp_path_factory) -> Path:
    """A cache whose store is the caller's own, beside the session's smoke stand-ins (built here, once
    for every module, if no test has built them yet)."""
    from vlbridge import backbones
    from vlbridge.paths import cache_root

    backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")
    folder = tmp_path_factory.mktemp("cache")
    (folder / "backbones").symlink_to(cache_root() / "backbones", target_is_directory=True)
    return folder


def vlbridge_train(model: str, out: Path | None, cache: Path, *args: str, wait: bool = True):
    """`vlbridge train MODEL -p smoke --out OUT ARGS...` (out None: its default run folder, in the
    cache): its output (it must succeed), or with wait=False the running command, its output piped."""
    where = [] if out is None else ["--out", str(out)]
    command = [sys.executable, "-m", "vlbridge", "train", model, "-p", "smoke", *where, *args]
    env = os.environ | {"VLBRIDGE_CACHE": str(cache), "VLBRIDGE_PROGRESS": "0"}
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def wait_for(path: Path, running: subprocess.Popen, seconds: float = 300) -> None:
    """Until `path` exists, the run ends, or `seconds` pass."""
    deadline = time.time() + seconds
    while not path.exists() and running.poll() is None and time.time() < deadline:
        time.sleep(0.01)


def kill_all(running: subprocess.Popen) -> None:
    """SIGKILL to the command, torchrun and every worker at once, as a lost node is (torchrun and each
    worker run in sessions of their own: no process group holds them all); returns when all are gone,
    so no orphan writes on into the run folder while a resumed run reads it."""
    tree = process_tree(running.pid)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    running.wait()
    for pid in tree[1:]:
        while running_still(pid):
            time.sleep(0.01)


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (Linux /proc)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:  # the task ended meanwhile
            continue
        for child in children:
            found += process_tree(int(child))
    return found


def running_still(pid: int) -> bool:
    try:
        return "(zombie)" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
