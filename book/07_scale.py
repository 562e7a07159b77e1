# %% [markdown]
# # 7. Appendix: training at scale
#
# **Question.** Every chapter trains inside one notebook process. The papers did not: FROMAGe trained
# <cite>18k steps at batch 180 for about a day on a GPU</cite>, ESPER and ILLUME on several GPUs. A run that long
# needs several processes, and it must survive being stopped. Does the data-parallel trainer that
# `vlbridge train` runs (README, "Training at scale") train the same bridge as the notebook, and does
# a stopped run resume exactly?
#
# **Method.** A cell shells out to `vlbridge train fromage --nproc N`: N processes under torchrun
# (gloo on a CPU, NCCL on GPUs), each holding the frozen backbones and the bridge, each computing its
# block of every batch and its share of the loss; the gradients are summed across processes, so the
# global batch is chapter 3's. The parameters are this profile's chapter-3 parameters, with one
# thread per process (the processes share this machine's cores). We read back the run's log and
# compare its loss curves with chapter 3's one-process run. Then a shorter run (`resume_steps`) is
# made twice: once straight through, and once stopped by SIGTERM part-way (what a cluster's scheduler
# sends on pre-emption) and resumed with `--resume`; the two final weights are compared byte for byte.

# %%
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from vlbridge.book import store
from vlbridge.book.chapter import Chapter
from vlbridge.plots import curves

# %% tags=["parameters"]
profile: str = "default"
seed: int = 0
threads: int = 2
device: str = "cpu"
nproc: int = 2  # processes of the data-parallel run (one GPU each on a GPU machine)
resume_steps: int = 24  # steps of the runs that are stopped and resumed (a resume is exact at any length)
stop_after: int = 3  # the checkpoint after which the stopped run is stopped (its --checkpoint-every: 2)

# %%
if not stop_after < resume_steps - 1:
    raise ValueError(f"stop_after must be below resume_steps - 1 ({resume_steps - 1}): the last step saves no "
                     f"checkpoint to stop after; got {stop_after}")
ch = Chapter("07_scale", profile, seed=seed, threads=threads, device=device)
work = Path(tempfile.mkdtemp(prefix="vlbridge-scale-"))


def train(folder: Path, *extra: str, wait: bool = True):
    """`vlbridge train fromage` with this profile, nproc processes of one thread each, into `folder`."""
    command = [sys.executable, "-m", "vlbridge", "train", "fromage", "--profile", profile, "--nproc", str(nproc),
               "--set", "threads=1", "--set", f"device={device}", "--checkpoint-every", "2", "--out", str(folder),
               *extra]
    env = os.environ | {"VLBRIDGE_PROGRESS": "0"}
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"vlbridge train failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return json.loads((folder / "train.json").read_text())


# %% [markdown]
# ## A run on `nproc` processes

# %%
started = time.time()
run = train(work / "whole")
log = run["log"]
one = store.read_record(store.trained("03_grounding", "fromage", profile, device=device, threads=threads))["log"]
print(f"vlbridge train fromage: {run['processes']} processes, {log['steps']} steps "
      f"(took {time.time() - started:.1f} s, start-up included)")
print(f"{'loss':12s} {'1 process, first 10':>20s} {'last 10':>9s}   "
      f"{f'{nproc} processes, first 10':>20s} {'last 10':>9s}")
for name in ("caption", "ret_text", "contrastive"):
    a, b = np.asarray(one[name]), np.asarray(log[name])
    print(f"{name:12s} {a[:10].mean():20.4f} {a[-10:].mean():9.4f}   {b[:10].mean():20.4f} {b[-10:].mean():9.4f}")
first_gap = max(abs(one[k][0] - log[k][0]) for k in ("caption", "ret_text", "contrastive"))
last_gap = max(abs(np.mean(one[k][-10:]) - np.mean(log[k][-10:])) for k in ("caption", "ret_text", "contrastive"))
print(f"largest gap between the runs' losses: at step 0 {first_gap:.1e}; between their last 10 steps' means "
      f"{last_gap:.1e}")
ch.record(processes=run["processes"], steps=log["steps"], first_step_gap=first_gap, last_steps_gap=last_gap,
          final_total_one=float(np.mean(one["total"][-10:])), final_total_many=float(np.mean(log["total"][-10:])))

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
for ax, name in zip(axes, ("caption", "ret_text", "contrastive")):
    curves({"1 process (chapter 3)": one[name], f"{nproc} processes (vlbridge train)": log[name]}, smooth=10,
           title=name, ax=ax)
fig = ch.figure(fig, "losses")
plt.show()

# %% [markdown]
# ## Stopped and resumed
#
# The same command with `resume_steps` steps, run twice: straight through, and stopped by SIGTERM once
# its checkpoint after step `stop_after` is on disk: every process finishes the step it is in, they
# save one checkpoint together and exit. `--resume` then continues from the newest complete checkpoint.

# %%
shorter = ("--set", f"steps={resume_steps}")
straight = train(work / "straight", *shorter)
cut = work / "cut"
running = train(cut, *shorter, wait=False)
marker = cut / f"step-{stop_after:06d}" / "state.json"
while not marker.exists() and running.poll() is None:
    time.sleep(0.01)
os.killpg(running.pid, signal.SIGTERM)
output = running.communicate()[0]
stopped = "stopped by SIGTERM after step" in output and not (cut / "train.json").exists()
resumed = train(cut, *shorter, "--resume")
weights = [Path(r["entry"], "bridge.safetensors").read_bytes() for r in (straight, resumed)]
identical = weights[0] == weights[1]
same_log = all(resumed["log"][k] == straight["log"][k] for k in ("caption", "ret_text", "contrastive", "total"))
print(f"stopped part-way by SIGTERM, with a checkpoint: {stopped}")
print(f"resumed run's final weights identical to the uninterrupted run's, byte for byte: {identical}")
print(f"resumed run's loss log identical to the uninterrupted run's: {same_log}")
ch.record(sigterm_stopped=stopped, resumed_identical=identical, resumed_log_identical=same_log)
shutil.rmtree(work)  # the checkpoints; the trained bridge stays in the store

# %% [markdown]
# **What this shows.**
#
# - **Several processes train the bridge the one process trains.** The runs start from the same
#   weights on the same batches; at the first step their losses differ only by float rounding (the
#   gap printed above), since each process's loss is its share of the one-process loss. They then
#   drift apart by the rounding that summing gradients in another order brings, with one thread per
#   process instead of two, and training amplifies; the curves above overlap, and the last steps'
#   means differ by the gap printed above. `tests/test_distributed.py` checks one step exactly
#   (to 1e-6) for FROMAGe, GRPO and ILLUME's tuning.
# - **A stopped run loses nothing.** After SIGTERM and `--resume`, the weights and the whole loss
#   log equal the uninterrupted run's bit for bit: the checkpoint holds the weights, AdamW's state,
#   every random stream and the step. `tests/test_resume.py` also kills runs with SIGKILL at a
#   drawn step.
# - **What was not measured here:** speed. Two processes on two CPU cores are not faster than one;
#   the point of `vlbridge train` is GPUs and nodes (README, "Training at scale";
#   `python -m benchmarks.paper_shape --size paper` times a paper-shape step on one GPU).
