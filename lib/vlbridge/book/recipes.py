"""How each model the chapters save is trained from its chapter's parameters: one code path for the
notebook and for `vlbridge train` (a cluster), so what a chapter evaluates is what either trained.

A recipe builds the model and its training data from the merged parameters of its chapter (the
same values the chapter's parameters cell gets), trains it over `Run`'s data-parallel ranks with its
checkpoints, and returns the model with its training log. `obtain` is what a chapter calls: the
store's entry for those parameters if one is there, trained by this code (saved by `vlbridge train`
or by an earlier run of the chapter), else the model trained now, and saved.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import world
from ..contracts import Backbones
from ..features import image_features
from ..methods.clipcap import ClipCapConfig, fit_supervised
from ..methods.esper import Esper, EsperConfig
from ..methods.fromage import Fromage, FromageConfig
from ..methods.prefix import PLAIN_PROMPT, PrefixCaptioner, PrefixConfig
from ..training import Run
from . import store


# ---------------------------------------------------------------------------- chapter 3: FROMAGe
@dataclass
class CaptionData:
    """What a bridge trains on: image features [N, d] and the texts drawn for image i at a step."""

    features: torch.Tensor
    caption_of: Callable[[int, int], str]
    query_of: Callable[[int, int], str]  # the texts that learn to retrieve an image (FROMAGe)


def grounding_data(p: dict, clip) -> CaptionData:
    """Chapter 3's training pairs: a CC3M TSV's (FROMAGe's layout), or microworld scenes with their
    canonical captions (or a fresh "varied" one each step) and varied retrieval queries."""
    if p["train_tsv"]:
        from ..features import cc3m_pairs

        if p["image_input"] != "embedding":
            raise ValueError("training from a TSV reads CLIP embeddings only: set image_input: embedding")
        features, texts = cc3m_pairs(p["train_tsv"], p["train_images"], clip)
        return CaptionData(features, lambda i, step: texts[i], lambda i, step: texts[i])
    if p["train_captions"] not in ("canonical", "varied"):
        raise ValueError(f"train_captions must be 'canonical' or 'varied', got {p['train_captions']!r}")
    pool = world.scenes(0, p["train_scenes"])
    features = image_features(clip, world.render_array(pool, clip.image_size), p["image_input"])

    def query_of(i, step):
        return world.caption(pool[i], world.scene_rng(pool[i].seed, 1000 + step))

    def caption_of(i, step):
        return world.canonical_caption(pool[i]) if p["train_captions"] == "canonical" else query_of(i, step)

    return CaptionData(features, caption_of, query_of)


def fromage_config(p: dict) -> FromageConfig:
    return FromageConfig(image_tokens=p["image_tokens"], image_input=p["image_input"], bridge=p["bridge"],
                         retrieval_dim=p["retrieval_dim"], steps=p["steps"], batch_size=p["batch_size"],
                         retrieval_batch_size=p["retrieval_batch_size"], lr=p["lr"],
                         weight_decay=p["weight_decay"], warmup_steps=p["warmup_steps"], seed=p["seed"])


def train_fromage(p: dict, backbones: Backbones, run: Run, data: CaptionData | None = None, snapshots=None):
    model = Fromage(backbones.clip, backbones.lm, fromage_config(p))
    data = data or grounding_data(p, backbones.clip)
    log = model.fit(data.features, data.caption_of, data.query_of, run=run)
    return model, log, {"captioned_images": len(data.features)}


# ---------------------------------------------------------------------------- chapter 4: ClipCap, ESPER
@dataclass
class RewardData:
    """What chapter 4's mappers train on: features [N, d] (what a mapper reads), reward targets
    [N, clip_dim] (what RL compares captions with) and captions (only the supervised bound reads them)."""

    features: torch.Tensor
    targets: torch.Tensor
    captions: list[str]


def reward_data(p: dict, clip) -> RewardData:
    """A COCO Karpathy split's first train_scenes train images, or microworld scenes."""
    if p["train_json"]:
        from ..data.karpathy import load_karpathy
        from ..features import karpathy_features

        records = load_karpathy(p["train_json"], p["train_images"])[:p["train_scenes"]]
        features = karpathy_features(records, clip, p["image_input"])  # opened and encoded in batches
        captions = [r.captions[0] for r in records]
    else:
        pool = world.scenes(0, p["train_scenes"])
        features = image_features(clip, world.render_array(pool, clip.image_size), p["image_input"])
        captions = [world.canonical_caption(s).removeprefix(PLAIN_PROMPT + " ") for s in pool]
    return RewardData(features, features[:, :clip.embed_dim], captions)


def new_captioner(p: dict, lm, encoder: str | None = None, dim: int | None = None,
                  data: RewardData | None = None) -> PrefixCaptioner:
    """A fresh prefix mapper, the same initial one for every run (seeded); by default it reads the
    chapter's image features (`data`'s width)."""
    torch.manual_seed(p["seed"])
    encoder = encoder or f"{p['clip_model']}:{p['image_input']}"
    return PrefixCaptioner(lm, PrefixConfig(encoder, dim or data.features.shape[1], p["prefix_tokens"],
                                            max_new_tokens=p["max_new_tokens"]))


def esper_config(p: dict, algorithm: str, group: int | None = None, **changes) -> EsperConfig:
    """Chapter 4's ESPER settings for `algorithm`: GRPO samples `group` captions (default grpo_group)
    of episodes / group pictures a step, PPO one caption of each of `episodes` pictures."""
    grpo = algorithm == "grpo"
    group = group or p["grpo_group"]
    settings = dict(algorithm=algorithm, steps=p["steps"], batch_size=p["episodes"] // group if grpo else p["episodes"],
                    samples=group if grpo else 1, temperature=p["temperature"], kl_coef=p["kl_coef"],
                    contrastive=p["contrastive_reward"], reward_scale=p["reward_scale"],
                    reward_shift=p["reward_shift"], lr=p["lr"], warmup_steps=p["warmup_steps"],
                    epochs=p["epochs"], minibatches=p["minibatches"], clip_range=p["clip_range"],
                    gamma=p["gae_gamma"], lam=p["gae_lambda"], seed=p["seed"])
    return EsperConfig(**(settings | changes))


def train_clipcap(p: dict, backbones: Backbones, run: Run, data: RewardData | None = None, snapshots=None):
    data = data or reward_data(p, backbones.clip)
    model = new_captioner(p, backbones.lm, data=data)
    log = fit_supervised(model, data.features, lambda i, step: data.captions[i],
                         ClipCapConfig(steps=p["supervised_steps"], lr=p["supervised_lr"], seed=p["seed"]), run)
    return model, log, {"captioned_images": len(data.features)}


def snapshot_steps(p: dict, algorithm: str) -> tuple[int, ...]:
    """The steps at which chapter 4 looks at the GRPO mapper during training: its start, half-way, and
    where the KL sweep's runs stop (each is kept in the store entry, under snapshots/step-N/)."""
    return tuple(sorted({0, p["steps"] // 2, p["sweep_steps"]})) if algorithm == "grpo" else ()


def esper_trainer(algorithm: str):
    def train(p: dict, backbones: Backbones, run: Run, data: RewardData | None = None,
              snapshots: Path | None = None):
        data = data or reward_data(p, backbones.clip)
        esper = Esper(new_captioner(p, backbones.lm, data=data), backbones.clip, esper_config(p, algorithm))
        kept = snapshot_steps(p, algorithm) if snapshots else ()

        def keep(step, model):  # before step `step`: the mapper after `step` steps
            if step in kept:
                model.captioner.save(snapshots / f"step-{step}")

        log = esper.fit(data.features, data.targets, callback=keep, run=run)
        return esper.captioner, log, {"captioned_images": 0}

    train.__name__ = f"train_esper_{algorithm}"
    return train


# ---------------------------------------------------------------------------- the table
CHAPTER_RUN = "a chapter run (1 process)"


@dataclass(frozen=True)
class Recipe:
    chapter: str
    train: Callable  # train(params, backbones, run, data=None[, snapshots=folder]) -> (model, log, record fields)
    load: Callable  # load(folder, backbones) -> model
    data: Callable  # data(params, clip): what train reads (a chapter computes it once for other uses too)
    # Every rank calls the LM equally often each step (teacher forcing; no sampling that stops when a
    # rank's own captions end): what a LM sharded with --fsdp needs (vlbridge.fsdp).
    lockstep: bool = False


RECIPES = {
    "fromage": Recipe("03_grounding", train_fromage, Fromage.load, grounding_data, lockstep=True),
    "clipcap": Recipe("04_reward_rl", train_clipcap, PrefixCaptioner.load, reward_data, lockstep=True),
    "esper_grpo": Recipe("04_reward_rl", esper_trainer("grpo"), PrefixCaptioner.load, reward_data),
    "esper_ppo": Recipe("04_reward_rl", esper_trainer("ppo"), PrefixCaptioner.load, reward_data),
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"no recipe trains {name!r}; these do: {', '.join(RECIPES)}")
    return RECIPES[name]


def train_and_save(name: str, params: dict, backbones: Backbones, run: Run, record: dict, data=None):
    """Train `name` over `run` and save it into the store with `record` (plus the log and the code),
    with the snapshots its recipe keeps; rank 0 saves, every rank returns (model, log, entry or None)."""
    found = recipe(name)
    with tempfile.TemporaryDirectory() as tmp:
        snapshots = Path(tmp) if run.ranks.main else None
        model, log, fields = found.train(params, backbones, run, data, snapshots=snapshots)
        record = {"train_seconds": log["seconds"], **fields, **record, "log": log, "code": store.training_code()}

        def save(folder: Path) -> None:
            model.save(folder)
            if any(Path(tmp).iterdir()):
                shutil.copytree(tmp, folder / SNAPSHOTS)

        entry = store.save_trained(found.chapter, name, params, save, record) if run.ranks.main else None
    return model, log, entry


SNAPSHOTS = "snapshots"


def snapshot(name: str, params: dict, step: int, backbones: Backbones):
    """The model `name` as it was before training step `step` (recipes that keep snapshots: esper_grpo)."""
    found = recipe(name)
    return found.load(store.entry_dir(found.chapter, name, params) / SNAPSHOTS / f"step-{step}", backbones)


def obtain(name: str, params: dict, backbones: Backbones, data=None, say=print):
    """(model, record): the store's `name` for these chapter parameters if it is there and was trained
    by this code (store.training_code; saved by `vlbridge train` or an earlier run), else trained now
    in this process and saved. The record holds the training log ("log") either way."""
    found = recipe(name)
    folder = store.entry_dir(found.chapter, name, params)
    code = store.training_code()
    if (folder / store.RECORD).is_file():
        record = store.read_record(folder)
        if record.get("code") == code:
            if record.get("trained_by") != CHAPTER_RUN:  # a chapter's own earlier run loads silently: same output
                say(f"{name}: loaded from the store, trained by {record.get('trained_by', 'an unknown run')} "
                    f"({folder})")
            return found.load(folder, backbones), record
        say(f"{name}: the store's model for these parameters was trained by other code; training again")
    model, _, entry = train_and_save(name, params, backbones, Run(), {"trained_by": CHAPTER_RUN}, data)
    return model, store.read_record(entry)
