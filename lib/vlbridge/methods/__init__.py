"""The methods, as a table: paper -> file -> model class -> trainer -> the models its chapter saves.

Chapter 6 loads every saved model through this table (`saved_models`), each with the one signature
`load(folder, backbones)`, and scores every model that can caption a picture (`caption`) and counts
every model's cost (`in_cost`) without naming it: a new method adds a row here and its chapter saves
under the names the row lists (README.md, "Adding a method").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..audio_encoder import AudioEncoder
from ..features import image_features
from . import illume
from .clipcap import fit_supervised
from .esper import Esper
from .fromage import Fromage
from .prefix import PLAIN_PROMPT, PrefixCaptioner


def fromage_captions(model: Fromage, images, clip) -> list[str]:
    """FROMAGe's greedy captions of images (uint8 [N, H, W, 3])."""
    return model.caption(model.features(images))


def prefix_captions(model: PrefixCaptioner, images, clip) -> list[str]:
    """A prefix captioner's greedy captions of images, read by `clip` as its encoder says ("name:input");
    they continue PLAIN_PROMPT, so it is put back in front."""
    features = image_features(clip, images, model.config.encoder.rpartition(":")[2])
    return [f"{PLAIN_PROMPT} {c}" for c in model.caption(features)]


@dataclass(frozen=True)
class Saved:
    """One model a chapter saves to the store (book.store) under `name`."""

    name: str
    label: str  # how chapter 6 names it
    load: Callable  # load(folder, backbones) -> the model
    caption: Callable | None = None  # caption(model, images, clip) -> captions, for the captioning table
    in_cost: bool = True  # a row of the cost table (False: a part counted with another, or a starting point)
    counted_with: tuple[str, ...] = ()  # saved names whose parameters it trains too (the cost table adds them)


@dataclass(frozen=True)
class Method:
    paper: str
    module: str  # the file in methods/ (or, for the audio encoder, the library)
    model: type  # the class that is trained
    trainer: Callable  # what trains it
    chapter: str  # the chapter that trains it and saves `saved`
    saved: tuple[Saved, ...]


METHODS = (
    Method("FROMAGe (Koh, Salakhutdinov & Fried, ICML 2023)", "fromage", Fromage, Fromage.fit, "03_grounding",
           (Saved("fromage", "FROMAGe", Fromage.load, fromage_captions),)),
    Method("ClipCap (Mokady, Hertz & Bermano, 2021)", "clipcap", PrefixCaptioner, fit_supervised, "04_reward_rl",
           (Saved("clipcap", "ClipCap (supervised)", PrefixCaptioner.load, prefix_captions),)),
    Method("ESPER (Yu, Chung et al., 2022)", "esper", Esper, Esper.fit, "04_reward_rl",
           (Saved("esper_ppo", "ESPER, PPO", PrefixCaptioner.load, prefix_captions),
            Saved("esper_grpo", "ESPER, GRPO", PrefixCaptioner.load, prefix_captions),
            Saved("esper_style", "ESPER-Style", PrefixCaptioner.load),  # styled captions: chapter 6's styles table
            Saved("esper_audio", "ESPER from the sound", PrefixCaptioner.load, counted_with=("audio_encoder",)),
            Saved("audio_encoder", "audio encoder (ESPER from the sound)", AudioEncoder.load, in_cost=False))),
    Method("ILLUME (Brack et al., ICML 2023)", "illume", Fromage, illume.FeedbackLoop.run, "05_feedback",
           (Saved("grounded", "grounded (before feedback)", illume.load_tuned, in_cost=False),
            Saved("illume", "ILLUME loop", illume.load_tuned),
            Saved("sft", "SFT, all written rationales", illume.load_tuned))),
)


def saved_models(methods=None) -> list[tuple[Method, Saved]]:
    """Every (method, saved model) of the table (default: METHODS, looked up when called), in order."""
    return [(method, saved) for method in (METHODS if methods is None else methods) for saved in method.saved]
