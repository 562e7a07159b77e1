"""Models trained from another model of their chapter (recipes.prerequisite): `vlbridge train
esper_style` trains esper_grpo first, and a run stopped while training it resumes it from the
run's sub-folder; the chapter then loads what was saved, and training esper_style again reuses
esper_grpo; esper_audio trains its audio encoder on every rank alike. Smoke profile; two gloo
processes (through the real command, or spawned)."""
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from train_runs import own_cache, vlbridge_train, wait_for
from vlbridge import backbones, distributed
from vlbridge.book import config, recipes, store
from vlbridge.book.train import parser
from vlbridge.contracts import Backbones
from vlbridge.resume import RunCheckpoints, Stopped
from vlbridge.training import Run

CHAPTER = "04_reward_rl"
# Short runs; GRPO's steps (each ~0.1 s) leave SIGTERM time to arrive while the prerequisite trains.
SETTINGS = ["threads=1", "steps=16", "style_steps=2", "audio_encoder_steps=10", "audio_steps=2"]
BY_TRAIN = "vlbridge train, 2 process(es)"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A store of this module's own, beside the session's smoke stand-ins."""
    return own_cache(tmp_path_factory)


@pytest.fixture
def in_cache(cache, monkeypatch):
    monkeypatch.setenv("VLBRIDGE_CACHE", str(cache))
    return cache


def params() -> dict:
    return config.merged_parameters(CHAPTER, "smoke", SETTINGS)


def entry(name: str) -> Path:
    return store.entry_dir(CHAPTER, name, params())


def smoke_backbones() -> Backbones:
    return Backbones(backbones.load_clip(params()["clip_model"]), backbones.load_lm(params()["lm_model"]))


def train(model: str, out: Path, cache: Path, *extra: str, wait: bool = True):
    settings = [arg for setting in SETTINGS for arg in ("--set", setting)]
    return vlbridge_train(model, out, cache, "--nproc", "2", *settings, "--checkpoint-every", "1", *extra, wait=wait)


@pytest.fixture(scope="module")
def style_runs(cache, tmp_path_factory):
    """`vlbridge train esper_style` stopped by SIGTERM (a scheduler's pre-emption) while it trains its
    esper_grpo prerequisite, then --resume'd: the two runs' output."""
    out = tmp_path_factory.mktemp("style")
    running = train("esper_style", out, cache, wait=False)
    wait_for(out / "esper_grpo" / "step-000000" / "state.json", running)
    running.send_signal(signal.SIGTERM)
    stopped = running.communicate(timeout=120)[0]
    return out, stopped, train("esper_style", out, cache, "--resume")


def test_a_run_stopped_in_its_prerequisite_resumes_it_there(style_runs, in_cache):
    out, stopped, resumed = style_runs
    first = f"esper_grpo: training it ({BY_TRAIN}, as a prerequisite of esper_style)"
    assert first in stopped and "stopped by SIGTERM after step" in stopped, stopped
    assert f"; checkpoint {out / 'esper_grpo'}/step-" in stopped, "stopped after the prerequisite, not in it"
    assert f"resuming from {out / 'esper_grpo'}/step-" in resumed, resumed
    grpo, style = store.read_record(entry("esper_grpo")), store.read_record(entry("esper_style"))
    assert grpo["trained_by"] == f"{BY_TRAIN}, as a prerequisite of esper_style" and style["trained_by"] == BY_TRAIN
    assert len(grpo["log"]["reward"]) == 16 and len(style["log"]["reward"]) == 2  # the log restored, continued
    # The chapter's "train_seconds" of the styled mapper: from the frozen backbones, GRPO's and the style steps'.
    assert style["train_seconds"] == pytest.approx(grpo["train_seconds"] + style["log"]["seconds"])
    assert (entry("esper_grpo") / recipes.SNAPSHOTS / "step-8").is_dir()  # what chapter 4 shows, kept


def test_the_chapter_loads_the_styled_mapper_and_training_it_again_reuses_grpo(style_runs, in_cache, monkeypatch,
                                                                               capsys, one_thread):
    from vlbridge.methods.esper import Esper
    from vlbridge.methods.prefix import PrefixCaptioner

    fit = Esper.fit

    def no_training(*args, **kwargs):
        raise AssertionError("the chapter trained instead of loading")

    monkeypatch.setattr(Esper, "fit", no_training)
    p, both = params(), smoke_backbones()
    said = []
    model, record = recipes.obtain("esper_style", p, both, say=said.append)
    assert said == [f"esper_style: loaded from the store, trained by {BY_TRAIN} ({entry('esper_style')})"]
    assert record["log"]["steps"] == 2
    saved = PrefixCaptioner.load(entry("esper_style"), both)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), saved.parameters()))

    # Trained again (by one process here): the style steps only, from the stored GRPO mapper.
    monkeypatch.setattr(Esper, "fit", fit)
    grpo = (entry("esper_grpo") / store.RECORD).read_bytes()
    capsys.readouterr()
    _, record, _ = recipes.train_and_save("esper_style", p, both, Run(), {"trained_by": "a test"})
    assert capsys.readouterr().out == (f"esper_grpo: loaded from the store, trained by {BY_TRAIN}, as a prerequisite "
                                       f"of esper_style ({entry('esper_grpo')})\n")
    assert (entry("esper_grpo") / store.RECORD).read_bytes() == grpo  # not trained, not saved again
    assert record["log"]["steps"] == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_esper_audio(rank: int, world: int, port: int, out: str) -> None:
    """torch.multiprocessing.spawn's entry: esper_audio (and its audio encoder) over a gloo group."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, _, _ = recipes.train_and_save("esper_audio", params(), smoke_backbones(), Run(distributed.current()),
                                             {"trained_by": "a test"})
        save_file({n: p.detach() for n, p in model.named_parameters() if p.requires_grad},
                  os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def test_esper_audio_trains_its_encoder_on_every_rank_as_one_process_does(in_cache, tmp_path, one_thread):
    """Two ranks end with the same mapper (and, or prerequisite would have raised, the same encoder);
    the encoder saved is the one a chapter trains in one process; the record adds its seconds."""
    from vlbridge.audio_encoder import AudioEncoder, train_audio_encoder

    mp.spawn(_train_esper_audio, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys() and all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])

    p, both = params(), smoke_backbones()
    sounds = recipes.sound_data(p)
    alone, _ = train_audio_encoder(both.clip, sounds.scenes, steps=p["audio_encoder_steps"], seed=p["seed"],
                                   sounds=sounds.sounds)
    saved = AudioEncoder.load(entry("audio_encoder"), both)
    assert all(torch.equal(a, b) for a, b in zip(alone.state_dict().values(), saved.state_dict().values()))
    encoder, heard = store.read_record(entry("audio_encoder")), store.read_record(entry("esper_audio"))
    assert encoder["trained_by"] == "a test, as a prerequisite of esper_audio"
    assert heard["train_seconds"] == pytest.approx(encoder["train_seconds"] + heard["log"]["seconds"])


def test_train_lists_the_new_models():
    text = parser().format_help()
    for name in ("esper_style (chapter 04)", "audio_encoder (chapter 04)", "esper_audio (chapter 04)"):
        assert name in text


def test_a_prerequisites_checkpoints_stop_with_its_run_on_sigterm(tmp_path):
    """Checkpoints `within` a run save in their sub-folder when the run's own SIGTERM arrives."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    outer = RunCheckpoints(tmp_path, every=0, say=lambda text: None)
    inner = outer.within("esper_grpo")
    inner.after_step(0, 5, model, optimizer, {}, {}, {})
    assert not (tmp_path / "esper_grpo").exists()  # every=0: nothing due without SIGTERM
    with outer:
        outer._on_term(signal.SIGTERM, None)
        with pytest.raises(Stopped):
            inner.after_step(1, 5, model, optimizer, {}, {}, {})
    assert (tmp_path / "esper_grpo" / "step-000001" / "state.json").is_file()


def test_prerequisite_is_for_a_recipe_being_trained():
    with pytest.raises(RuntimeError, match=r"prerequisite\('esper_grpo'\) is for a recipe's train function"):
        recipes.prerequisite("esper_grpo", params(), None, Run())
