"""Device slips caught without a GPU: the smoke book runs on a pretend accelerator (device_guard), so
a tensor, generator or module left on the CPU while the chapter asked for a device fails here as it
would on CUDA; and since the pretend device computes on the CPU, every number must be the committed
CPU book's."""
import json
from pathlib import Path

import pytest
import torch

from device_guard import VIRTUAL, DeviceSlip, virtual_device
from inprocess import run_cells, torch_settings
from vlbridge.audio_encoder import AudioEncoder
from vlbridge.backbones import FrozenCLIP, FrozenLM
from vlbridge.book import config
from vlbridge.contracts import Backbones
from vlbridge.methods.esper import Esper
from vlbridge.methods.fromage import Fromage
from vlbridge.methods.prefix import PrefixCaptioner

REPO = Path(__file__).resolve().parents[1]
# Chapter 7 trains in `vlbridge train` subprocesses, where this process's pretend device does not
# exist; its training code is the same recipes chapters 3 and 4 run here (tests/test_resume.py and
# tools/gpu_resume_check.sh run `vlbridge train` on the CPU and on CUDA).
CHAPTERS = [chapter for chapter in config.chapters() if chapter != "07_scale"]
MODELS = (Fromage, PrefixCaptioner, Esper, AudioEncoder)


# ---------------------------------------------------------------------------- the guard itself
def test_the_guard_refuses_what_cuda_refuses():
    with virtual_device():
        layer = torch.nn.Linear(3, 2).to(VIRTUAL)
        x = torch.randn(4, 3, device=VIRTUAL)
        with pytest.raises(DeviceSlip, match="linear mixes devices"):
            layer(torch.randn(4, 3))  # CPU input, module on the device
        with pytest.raises(DeviceSlip, match="mixes devices"):
            x + torch.ones(4, 3)
        with pytest.raises(DeviceSlip, match="generator on the CPU draws for tensors on the device"):
            torch.multinomial(layer(x).softmax(-1), 1, generator=torch.Generator())
        with pytest.raises(DeviceSlip, match="generator on the device draws for tensors on the CPU"):
            torch.randint(3, (2,), generator=torch.Generator(device=VIRTUAL))
        with pytest.raises(DeviceSlip, match="numpy"):
            x.numpy()
        with pytest.raises(DeviceSlip, match="mixes devices"):
            torch.ones(4)[torch.tensor([0, 1], device=VIRTUAL)]  # device indices into a CPU tensor


def test_the_guard_allows_what_cuda_allows_and_tracks_where_tensors_are():
    with virtual_device() as guard:
        x = torch.randn(4, 3, device=VIRTUAL)
        assert x.device == VIRTUAL and guard.on_device(x * torch.tensor(2.0))  # a CPU scalar is fine
        assert guard.on_device(x[torch.tensor([0, 2])])  # CPU indices into a device tensor are fine
        assert guard.on_device(torch.zeros(2, device=x.device))
        back = x.cpu()
        assert back.device.type == "cpu" and x.device == VIRTUAL and not guard.on_device(back)
        g = torch.Generator(device=VIRTUAL)
        g.manual_seed(0)
        assert guard.on_device(torch.multinomial(x.softmax(-1), 1, generator=g))
        layer = torch.nn.Linear(3, 2).to(VIRTUAL)
        assert all(guard.on_device(p) for p in layer.parameters()) and layer.weight.device == VIRTUAL
        layer.cpu()
        assert not any(guard.on_device(p) for p in layer.parameters())


# ---------------------------------------------------------------------------- the book on a device
def _placed(namespace: dict):
    """(name, module) of every backbone and trained model a chapter holds, in dicts too."""
    for name, value in namespace.items():
        values = value.items() if isinstance(value, dict) else [(None, value)]
        for key, item in values:
            label = name if key is None else f"{name}[{key!r}]"
            if isinstance(item, (FrozenCLIP, FrozenLM)):
                yield label, item.model
            elif isinstance(item, MODELS):
                yield label, item


def _without_seconds(value):
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if "seconds" not in k}
    return value


@pytest.fixture(scope="module")
def book_on_device(tmp_path_factory):
    """Every smoke chapter, in order, with device set to the pretend accelerator (the stand-ins are
    pretrained there too: their cache entry is keyed by the device). Per chapter: the error it
    raised, or what it left on the CPU; after a failure the rest do not run."""
    results = tmp_path_factory.mktemp("results")
    outcome = {}
    with torch_settings(), pytest.MonkeyPatch.context() as patch, virtual_device() as guard:
        patch.setenv("VLBRIDGE_RESULTS", str(results))
        for chapter in CHAPTERS:
            params = config.merged_parameters(chapter, "smoke", [f"device={VIRTUAL.type}"])
            try:
                namespace = run_cells(chapter, params)
            except Exception as error:  # noqa: BLE001 - reported by the chapter's test
                outcome[chapter] = {"error": error}
                break
            on_cpu = [f"{label}: {name}" for label, module in _placed(namespace)
                      for name, p in module.named_parameters() if not guard.on_device(p)]
            outcome[chapter] = {"error": None, "on_cpu": on_cpu, "placed": len(list(_placed(namespace)))}
    return outcome, results


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_smoke_chapter_runs_on_a_device_with_the_cpu_numbers(book_on_device, chapter):
    outcome, results = book_on_device
    if chapter not in outcome:
        pytest.fail(f"{chapter} did not run: an earlier chapter failed")
    error = outcome[chapter]["error"]
    if error is not None:
        raise error
    assert outcome[chapter]["on_cpu"] == [], "parameters left on the CPU"
    if chapter != "01_microworld":  # chapter 1 has no model; every other holds backbones at least
        assert outcome[chapter]["placed"] >= 2
    # The pretend device computes on the CPU: placement must change no number of the committed book.
    ran = json.loads((results / "smoke" / chapter / "metrics.json").read_text())
    committed = json.loads((REPO / "results" / "smoke" / chapter / "metrics.json").read_text())
    assert _without_seconds(ran) == _without_seconds(committed)


def test_illume_with_lora_adapters_samples_judges_tunes_saves_and_loads_on_a_device(tmp_path):
    """The smoke book tunes the bridge only; LoRA adapters (the paper profile's) get their own run."""
    from vlbridge import backbones, world
    from vlbridge.critics import WorldCritic, world_items
    from vlbridge.methods import illume
    from vlbridge.methods.fromage import FromageConfig

    config = illume.FeedbackConfig(samples=2, temperatures=(0.3, 1.0), max_new_tokens=8, rounds=1, items_per_round=4,
                               steps_per_round=2, batch_size=4, warmup_steps=1, lora_rank=2)
    with virtual_device() as guard:
        clip = backbones.load_clip("micro-clip-smoke", device=VIRTUAL.type)
        lm = backbones.load_lm("micro-lm-smoke", device=VIRTUAL.type)
        model = Fromage(clip, lm, FromageConfig(image_tokens=2))
        items = world_items(0, 4)
        features = model.features(world.render_array([it.scene for it in items], clip.image_size))
        loop = illume.FeedbackLoop(model, features, items, config)
        loop.run(WorldCritic())
        tuned, _ = illume.sft(model, features, items, config, steps=2)
        adapters = [p for name, p in loop.model.lm.model.named_parameters() if "lora_" in name]
        assert adapters and all(guard.on_device(p) for p in adapters)
        illume.save_tuned(loop.model, tmp_path, config)
        reloaded = illume.load_tuned(tmp_path, Backbones(clip, lm))
        assert all(guard.on_device(p) for p in reloaded.lm.model.parameters())
        assert illume.answer(reloaded, features, items) == illume.answer(loop.model, features, items)
