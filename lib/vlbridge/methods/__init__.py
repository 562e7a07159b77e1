"""The methods, as a table: paper -> file -> model class -> trainer -> the models its chapter saves.

Chapter 6 loads every saved model through this table (`saved_models`), each with the one signature
`load(folder, backbones)`; a new method adds a row here and its chapter saves under the names the
row lists (README.md, "Adding a method").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..audio_encoder import AudioEncoder
from . import illume
from .clipcap import fit_supervised
from .esper import Esper
from .fromage import Fromage
from .prefix import PrefixCaptioner


@dataclass(frozen=True)
class Saved:
    """One model a chapter saves to the store (book.store) under `name`."""

    name: str
    label: str  # how chapter 6 names it
    load: Callable  # load(folder, backbones) -> the model


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
           (Saved("fromage", "FROMAGe", Fromage.load),)),
    Method("ClipCap (Mokady, Hertz & Bermano, 2021)", "clipcap", PrefixCaptioner, fit_supervised, "04_reward_rl",
           (Saved("clipcap", "ClipCap (supervised)", PrefixCaptioner.load),)),
    Method("ESPER (Yu, Chung et al., 2022)", "esper", Esper, Esper.fit, "04_reward_rl",
           (Saved("esper_ppo", "ESPER, PPO", PrefixCaptioner.load),
            Saved("esper_grpo", "ESPER, GRPO", PrefixCaptioner.load),
            Saved("esper_style", "ESPER-Style", PrefixCaptioner.load),
            Saved("esper_audio", "ESPER from the sound", PrefixCaptioner.load),
            Saved("audio_encoder", "audio encoder (ESPER from the sound)", AudioEncoder.load))),
    Method("ILLUME (Brack et al., ICML 2023)", "illume", Fromage, illume.FeedbackLoop.run, "05_feedback",
           (Saved("grounded", "grounded (before feedback)", illume.load_tuned),
            Saved("illume", "ILLUME loop", illume.load_tuned),
            Saved("sft", "SFT, all written rationales", illume.load_tuned))),
)


def saved_models(methods=METHODS) -> list[tuple[Method, Saved]]:
    """Every (method, saved model) of the table, in order."""
    return [(method, saved) for method in methods for saved in method.saved]
