"""How each model the chapters save is trained from its chapter's parameters: one code path for the
notebook and for `vlbridge train` (a cluster), so what a chapter evaluates is what either trained.

A recipe builds the model and its training data from the merged parameters of its chapter (the
same values the chapter's parameters cell gets), trains it over `Run`'s data-parallel ranks with its
checkpoints, and returns the model with its training log. `obtain` is what a chapter calls: the
store's entry for those parameters if one is there, trained by this code (saved by `vlbridge train`
or by an earlier run of the chapter), else the model trained now, and saved. `prerequisite` is what
a recipe calls for a model it starts from (ESPER-Style from GRPO's mapper): the same, over the
recipe's ranks and within its checkpoints.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import world
from ..audio_encoder import AudioEncoder, audio_embeddings, sound_features, train_audio_encoder
from ..contracts import Backbones
from ..critics import RougeCritic, WorldCritic, vqax_items, world_items
from ..distributed import SINGLE, Group, check_replicated
from ..features import features_by_rank, image_features
from ..methods import illume
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


def scene_features(clip, pool: list, image_input: str, ranks: Group = SINGLE):
    """The features of microworld scenes [N, d], each rank rendering and encoding its block of them."""
    def encode(scenes):
        return image_features(clip, world.render_array(scenes, clip.image_size), image_input)

    return features_by_rank(encode, pool, clip, image_input, ranks)


def grounding_data(p: dict, clip, ranks: Group = SINGLE) -> CaptionData:
    """Chapter 3's training pairs: a CC3M TSV's (FROMAGe's layout), or microworld scenes with their
    canonical captions (or a fresh "varied" one each step) and varied retrieval queries. Over `ranks`
    each rank encodes its block of the images, and every rank gets all the features."""
    if p["train_tsv"]:
        from ..features import cc3m_pairs

        if p["image_input"] != "embedding":
            raise ValueError("training from a TSV reads CLIP embeddings only: set image_input: embedding")
        features, texts = cc3m_pairs(p["train_tsv"], p["train_images"], clip, ranks=ranks)
        return CaptionData(features, lambda i, step: texts[i], lambda i, step: texts[i])
    if p["train_captions"] not in ("canonical", "varied"):
        raise ValueError(f"train_captions must be 'canonical' or 'varied', got {p['train_captions']!r}")
    pool = world.scenes(0, p["train_scenes"])
    features = scene_features(clip, pool, p["image_input"], ranks)

    def query_of(i, step):
        return world.caption(pool[i], world.scene_rng(pool[i].seed, 1000 + step))

    def caption_of(i, step):
        return world.canonical_caption(pool[i]) if p["train_captions"] == "canonical" else query_of(i, step)

    return CaptionData(features, caption_of, query_of)


def fromage_config(p: dict) -> FromageConfig:
    return FromageConfig(image_tokens=p["image_tokens"], image_input=p["image_input"], bridge=p["bridge"],
                         retrieval_dim=p["retrieval_dim"], steps=p["steps"], batch_size=p["batch_size"],
                         retrieval_batch_size=p["retrieval_batch_size"], lr=p["lr"],
                         weight_decay=p["weight_decay"], warmup_steps=p["warmup_steps"], seed=p["seed"],
                         micro_batch=p["micro_batch"] or None, interleave_per=p["interleave_per"],
                         tied_ret=p["tied_ret"], max_caption_tokens=p["max_caption_tokens"] or None)


def train_fromage(p: dict, backbones: Backbones, run: Run, data: CaptionData | None = None, snapshots=None):
    model = Fromage(backbones.clip, backbones.lm, fromage_config(p))
    data = data or grounding_data(p, backbones.clip, run.ranks)
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


def captioned_pictures(p: dict, clip, held_out: bool, ranks: Group = SINGLE) -> tuple[torch.Tensor, list[str]]:
    """Chapter 4's pictures and one caption each: with train_json, the first train_scenes images of
    Karpathy's train splits, or (held_out) the first validation_scenes of its val split; else the
    microworld scenes [0, train_scenes), or (held_out) the validation_scenes after them, seeds neither
    the training pool nor any evaluation draws. Over `ranks`, each rank encodes its block of the
    images, and every rank gets all the features."""
    count = p["validation_scenes"] if held_out else p["train_scenes"]
    if p["train_json"]:
        from ..data.karpathy import KARPATHY_TRAIN, load_karpathy
        from ..features import karpathy_features

        splits = ("val",) if held_out else KARPATHY_TRAIN
        records = load_karpathy(p["train_json"], p["train_images"], splits=splits)[:count]
        # opened and encoded in batches
        return karpathy_features(records, clip, p["image_input"], ranks=ranks), [r.captions[0] for r in records]
    pool = world.scenes(p["train_scenes"] if held_out else 0, count)
    return (scene_features(clip, pool, p["image_input"], ranks),
            [world.canonical_caption(s).removeprefix(PLAIN_PROMPT + " ") for s in pool])


def reward_data(p: dict, clip, ranks: Group = SINGLE) -> RewardData:
    """The training pictures (captioned_pictures): their features, their CLIP embeddings as reward
    targets, and their captions."""
    features, captions = captioned_pictures(p, clip, held_out=False, ranks=ranks)
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
                    gamma=p["gae_gamma"], lam=p["gae_lambda"], seed=p["seed"],
                    # the official code's choices, each off by default (params/paper-esper.yaml turns them on)
                    logprob_temperature=1.0 if p["logprobs_at_unit_temperature"] else None,
                    exact_length=p["exact_length"], entropy_reward_coef=p["entropy_reward_coef"],
                    entropy_reward_threshold=p["entropy_reward_threshold"],
                    entropy_reward_bias=p["entropy_reward_bias"], weight_decay=p["weight_decay"],
                    betas=(0.9, p["adam_beta2"]), clip_grad=1.0 if p["clip_gradients"] else None)
    return EsperConfig(**(settings | changes))


def train_clipcap(p: dict, backbones: Backbones, run: Run, data: RewardData | None = None, snapshots=None):
    """ClipCap until its loss on held-out captions stops improving (supervised_patience evaluations
    in a row, one every supervised_eval_every steps), at most supervised_steps."""
    data = data or reward_data(p, backbones.clip, run.ranks)
    model = new_captioner(p, backbones.lm, data=data)
    config = ClipCapConfig(steps=p["supervised_steps"], lr=p["supervised_lr"], seed=p["seed"],
                           validation_every=p["supervised_eval_every"], patience=p["supervised_patience"])
    log = fit_supervised(model, data.features, lambda i, step: data.captions[i], config, run,
                         validation=captioned_pictures(p, backbones.clip, held_out=True, ranks=run.ranks))
    return model, log, {"captioned_images": len(data.features)}


def snapshot_steps(p: dict, algorithm: str) -> tuple[int, ...]:
    """The steps at which chapter 4 looks at the GRPO mapper during training: its start and half-way
    (each is kept in the store entry, under snapshots/step-N/)."""
    return tuple(sorted({0, p["steps"] // 2})) if algorithm == "grpo" else ()


def esper_trainer(algorithm: str):
    def train(p: dict, backbones: Backbones, run: Run, data: RewardData | None = None,
              snapshots: Path | None = None):
        data = data or reward_data(p, backbones.clip, run.ranks)
        esper = Esper(new_captioner(p, backbones.lm, data=data), backbones.clip, esper_config(p, algorithm))
        kept = snapshot_steps(p, algorithm) if snapshots else ()

        def keep(step, model):  # before step `step`: the mapper after `step` steps
            if step in kept:
                model.captioner.save(snapshots / f"step-{step}")

        log = esper.fit(data.features, data.targets, callback=keep, run=run)
        return esper.captioner, log, {"captioned_images": 0}

    train.__name__ = f"train_esper_{algorithm}"
    return train


def train_esper_style(p: dict, backbones: Backbones, run: Run, data: RewardData | None = None, snapshots=None):
    """ESPER-Style: the GRPO mapper, then style_steps GRPO steps of style_episodes captions with the five
    style prompts (the prompted mapper is nearly there already: no warm-up)."""
    data = data or reward_data(p, backbones.clip, run.ranks)
    grpo, grpo_record = prerequisite("esper_grpo", p, backbones, run, data=data)
    prompts = {world.style_prompt(s): 1.0 for s in world.STYLES}
    esper = Esper(grpo, backbones.clip, esper_config(p, "grpo", steps=p["style_steps"], prompts=prompts, warmup_steps=0,
                                                     batch_size=p["style_episodes"] // p["grpo_group"]))
    log = esper.fit(data.features, data.targets, run=run)
    # Its training from the frozen backbones: GRPO's, then the style steps'.
    return esper.captioner, log, {"captioned_images": 0, "train_seconds": grpo_record["train_seconds"] + log["seconds"]}


@dataclass
class SoundData:
    """What chapter 4's audio models train on: microworld scenes (whatever the pictures were) and the
    stereo log-mels of their sounds."""

    scenes: list
    sounds: torch.Tensor


def sound_data(p: dict, clip=None) -> SoundData:  # (clip: a recipe's data reads it; sounds do not)
    pool = world.scenes(0, p["train_scenes"])
    return SoundData(pool, sound_features(pool))


def train_audio(p: dict, backbones: Backbones, run: Run, data: SoundData | None = None, snapshots=None):
    """The audio encoder, distilled from CLIP's image embeddings. Every rank trains all of it as one
    process does, so all end with the same weights without a collective, and the same as the chapter's:
    it is small (seconds) and its InfoNCE loss couples the whole batch. No checkpoints: a resumed run
    trains it again unless it was saved."""
    data = data or sound_data(p)
    encoder, log = train_audio_encoder(backbones.clip, data.scenes, steps=p["audio_encoder_steps"], seed=p["seed"],
                                       sounds=data.sounds)
    return encoder, log, {"captioned_images": 0}


def train_esper_audio(p: dict, backbones: Backbones, run: Run, data: SoundData | None = None, snapshots=None):
    """ESPER on sounds: GRPO with the audio encoder's embedding in place of the image's, in the mapper's
    input and in the reward (no picture, no caption)."""
    data = data or sound_data(p)
    encoder, encoder_record = prerequisite("audio_encoder", p, backbones, run, data=data)
    heard = audio_embeddings(encoder, data.sounds)
    esper = Esper(new_captioner(p, backbones.lm, "audio encoder (chapter 4)", backbones.clip.embed_dim),
                  backbones.clip, esper_config(p, "grpo", p["audio_grpo_group"], steps=p["audio_steps"]))
    log = esper.fit(heard, heard, run=run)
    # Its training from the frozen backbones: the encoder's, then RL's.
    return esper.captioner, log, {"captioned_images": 0,
                                  "train_seconds": encoder_record["train_seconds"] + log["seconds"]}


# ---------------------------------------------------------------------------- chapter 5: ILLUME
@dataclass
class FeedbackData:
    """What chapter 5's models train on: the questions (critics.FeedbackItem) that the loop and SFT
    draw from, their image features [N, d], and the captions the grounding stage reads."""

    items: list
    features: torch.Tensor
    captions: CaptionData


def feedback_data(p: dict, clip, ranks: Group = SINGLE) -> FeedbackData:
    """Chapter 5's training questions: VQA-X's first train_items, or microworld questions about the
    first train_items scenes. Grounding reads a CC3M TSV's captions, or chapter 3's microworld
    captions of those same scenes (question i asks about scene i). Over `ranks`, each rank encodes its
    block of the images."""
    if p["vqax_json"] and not p["caption_tsv"]:
        raise ValueError("vqax_json needs caption_tsv: the grounding stage reads captions, and VQA-X has none "
                         "(set caption_tsv to a CC3M TSV in FROMAGe's layout)")
    captions = grounding_data({"train_tsv": p["caption_tsv"], "train_images": p["caption_images"],
                               "image_input": p["image_input"], "train_captions": "canonical",
                               "train_scenes": p["train_items"]}, clip, ranks)
    if p["vqax_json"]:
        from ..data.vqax import load_vqax
        from ..features import image_file_features

        records = load_vqax(p["vqax_json"], p["vqax_images"])[:p["train_items"]]
        features = image_file_features(clip, [r.image_path for r in records], p["image_input"], ranks=ranks)
        return FeedbackData(vqax_items(records), features, captions)
    items = world_items(0, p["train_items"])
    if p["caption_tsv"]:  # else the captions' pictures are the questions'
        return FeedbackData(items, scene_features(clip, [it.scene for it in items], p["image_input"], ranks), captions)
    return FeedbackData(items, captions.features, captions)


def grounding_config(p: dict) -> FromageConfig:
    """Chapter 5's starting point: chapter 3's FROMAGe recipe on captions, for caption_steps."""
    return FromageConfig(image_tokens=p["image_tokens"], image_input=p["image_input"], steps=p["caption_steps"],
                         batch_size=24, retrieval_batch_size=24, lr=p["caption_lr"], warmup_steps=20, seed=p["seed"])


def feedback_config(p: dict) -> illume.FeedbackConfig:
    """The loop's settings (SFT tunes with them too)."""
    if len(p["adam_betas"]) != 2:
        raise ValueError(f"adam_betas must be two numbers (beta1, beta2), got {p['adam_betas']!r}")
    return illume.FeedbackConfig(samples=p["samples"], temperatures=tuple(p["temperatures"]),
                                 samples_per_temperature=p["samples_per_temperature"], prompt=p["prompt"],
                                 max_new_tokens=p["max_new_tokens"], rounds=p["rounds"],
                                 items_per_round=p["items_per_round"], steps_per_round=p["steps_per_round"],
                                 batch_size=p["batch_size"], answer_only_per_rationale=p["answer_only_per_rationale"],
                                 weight_rationale_loss=p["weight_rationale_loss"], lr=p["lr"],
                                 weight_decay=p["weight_decay"], betas=tuple(p["adam_betas"]),
                                 tune_bridge=p["tune_bridge"], lora_rank=p["lora_rank"],
                                 lora_targets=tuple(p["lora_targets"]), seed=p["seed"])


def feedback_critic(p: dict):
    """The loop's critic: the microworld's exact world truth, or the paper's ROUGE-L >= rouge_threshold
    against the gold explanation."""
    if p["critic"] not in ("world", "rouge"):
        raise ValueError(f"critic must be 'world' or 'rouge', got {p['critic']!r}")
    if p["critic"] == "rouge":
        return RougeCritic(p["rouge_threshold"], p["rouge_lowercase"])
    if p["vqax_json"]:
        raise ValueError("the world-truth critic needs microworld scenes; with vqax_json set critic: rouge")
    return WorldCritic()


def train_grounded(p: dict, backbones: Backbones, run: Run, data: FeedbackData | None = None, snapshots=None):
    data = data or feedback_data(p, backbones.clip, run.ranks)
    # Its initial weights draw from torch's generator as chapter 3's do: seeded (repro.setup), then the
    # backbones' loading, as in the chapter and in `vlbridge train`.
    model = Fromage(backbones.clip, backbones.lm, grounding_config(p))
    log = model.fit(data.captions.features, data.captions.caption_of, data.captions.query_of, run=run)
    return model, log, {"captioned_images": len(data.captions.features)}


def save_tuned(model, folder: Path, p: dict) -> None:
    illume.save_tuned(model, folder, feedback_config(p))


def train_illume(p: dict, backbones: Backbones, run: Run, data: FeedbackData | None = None,
                 snapshots: Path | None = None):
    """ILLUME's rounds from the grounded model: sample rationales for new items, keep the ones the critic
    prefers, tune on every one kept so far (FeedbackLoop: over ranks, each samples and judges its share
    of the items, all tune on the same kept pool). The log has every round's decisions; the model
    after each round but the last is kept as snapshots/step-N (N: the tuning steps so far).

    Checkpoints (resume.RunCheckpoints, in the run's folder): after each round's judging, the weights,
    the kept pool, the sample streams and the logs (rounds/), and that round's tuning steps
    (round-R/); a resumed run starts from the newest, and ends as a run never stopped."""
    data = data or feedback_data(p, backbones.clip, run.ranks)
    grounded, grounding = prerequisite("grounded", p, backbones, run, data=data)
    config, critic = feedback_config(p), feedback_critic(p)
    loop = illume.FeedbackLoop(grounded, data.features, data.items, config, run.ranks)
    checkpoints = run.checkpoints
    judged_states = checkpoints.within("rounds") if checkpoints else None
    logs = _resume_rounds(loop, judged_states)
    # A resumable run keeps its snapshots in its folder, where a resumed run finds the earlier rounds'.
    kept_in = checkpoints.folder / SNAPSHOTS if checkpoints and snapshots else snapshots
    for r in range(max(1, len(logs)), config.rounds + 1):  # a resumed run: from the newest round judged
        if r > len(logs):
            logs.append(loop.judge(r, critic))
            if judged_states:
                judged_states.save(r, illume.trainable_module(loop.model), None, {}, loop.streams,
                                   {"kept": [asdict(e) for e in loop.kept], "rounds": [asdict(done) for done in logs]})
        loop.tune_round(logs[-1], checkpoints.within(f"round-{r}") if checkpoints else None)
        if kept_in and r < config.rounds:
            folder = kept_in / f"step-{r * config.steps_per_round}"
            shutil.rmtree(folder, ignore_errors=True)  # what a killed run may have half written
            illume.save_tuned(loop.model, folder, config)
    if snapshots and kept_in != snapshots and kept_in.is_dir():
        shutil.copytree(kept_in, snapshots, dirs_exist_ok=True)
    seconds = round(sum(done.seconds for done in logs), 2)
    log = {"rounds": [asdict(done) for done in logs], "kept_rationales": len(loop.kept),
           "steps": config.rounds * config.steps_per_round, "seconds": seconds}
    return loop.model, log, {"captioned_images": grounding["captioned_images"],
                             "judged_items": sum(done.judged for done in logs),
                             "train_seconds": grounding["train_seconds"] + seconds}  # from the frozen backbones


def _resume_rounds(loop: illume.FeedbackLoop, states) -> list:
    """The logs of the rounds judged before, when resuming: the loop's weights, kept pool and sample
    streams are put back as they were after the newest one's judging. [] for a run from the start."""
    if states is None:
        return []
    after, saved = states.restore(illume.trainable_module(loop.model), None, {}, loop.streams)
    if not after:
        return []
    loop.kept = [illume.Example(**example) for example in saved["kept"]]
    return [illume.RoundLog(**log) for log in saved["rounds"]]


def train_sft(p: dict, backbones: Backbones, run: Run, data: FeedbackData | None = None, snapshots=None):
    """SFT, the loop's baseline: the grounded model tuned for sft_steps on the gold rationales of the
    first max(sft_budgets) items (the chapter trains its smaller budgets itself)."""
    data = data or feedback_data(p, backbones.clip, run.ranks)
    grounded, grounding = prerequisite("grounded", p, backbones, run, data=data)
    budget = max(p["sft_budgets"])
    model, log = illume.sft(grounded, data.features, data.items, feedback_config(p), p["sft_steps"], labelled=budget,
                            run=run)
    return model, log, {"captioned_images": grounding["captioned_images"], "written_rationales": budget,
                        "train_seconds": grounding["train_seconds"] + log["seconds"]}


# ---------------------------------------------------------------------------- the table
CHAPTER_RUN = "a chapter run (1 process)"


def own_save(model, folder: Path, params: dict) -> None:
    model.save(folder)


@dataclass(frozen=True)
class Recipe:
    chapter: str
    train: Callable  # train(params, backbones, run, data=None[, snapshots=folder]) -> (model, log, record fields)
    load: Callable  # load(folder, backbones) -> model
    data: Callable  # data(params, clip): what train reads (a chapter computes it once for other uses too)
    # Every rank calls the LM equally often each step (teacher forcing; no sampling that stops when a
    # rank's own captions end): what a LM sharded with --fsdp needs (vlbridge.fsdp).
    lockstep: bool = False
    save: Callable = own_save  # save(model, folder, params): the model's own save, unless it misses a part


RECIPES = {
    "fromage": Recipe("03_grounding", train_fromage, Fromage.load, grounding_data, lockstep=True),
    "clipcap": Recipe("04_reward_rl", train_clipcap, PrefixCaptioner.load, reward_data, lockstep=True),
    "esper_grpo": Recipe("04_reward_rl", esper_trainer("grpo"), PrefixCaptioner.load, reward_data),
    "esper_ppo": Recipe("04_reward_rl", esper_trainer("ppo"), PrefixCaptioner.load, reward_data),
    "esper_style": Recipe("04_reward_rl", train_esper_style, PrefixCaptioner.load, reward_data),
    "audio_encoder": Recipe("04_reward_rl", train_audio, AudioEncoder.load, sound_data),
    "esper_audio": Recipe("04_reward_rl", train_esper_audio, PrefixCaptioner.load, sound_data),
    "grounded": Recipe("05_feedback", train_grounded, Fromage.load, feedback_data, lockstep=True),
    # A tuned model's LoRA adapters (lora_rank > 0) live in its LM's copy, which its own save leaves out.
    "illume": Recipe("05_feedback", train_illume, illume.load_tuned, feedback_data, save=save_tuned),
    "sft": Recipe("05_feedback", train_sft, illume.load_tuned, feedback_data, lockstep=True, save=save_tuned),
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"no recipe trains {name!r}; these do: {', '.join(RECIPES)}")
    return RECIPES[name]


# Who is training which model while its recipe runs (train_and_save sets it): a prerequisite that the
# recipe trains records that it was trained for that model, by that run.
_TRAINING: ContextVar[tuple[str, str]] = ContextVar("training")


def train_and_save(name: str, params: dict, backbones: Backbones, run: Run, record: dict, data=None):
    """Train `name` over `run` and save it into the store with `record` (plus the log and the code),
    with the snapshots its recipe keeps; rank 0 saves, every rank returns (model, the record,
    entry or None)."""
    found = recipe(name)
    with tempfile.TemporaryDirectory() as tmp:
        snapshots = Path(tmp) if run.ranks.main else None
        training = _TRAINING.set((record.get("trained_by", "an unnamed run"), name))
        try:
            model, log, fields = found.train(params, backbones, run, data, snapshots=snapshots)
        finally:
            _TRAINING.reset(training)
        record = {"train_seconds": log["seconds"], **fields, **record, "log": log, "code": store.training_code()}

        def save(folder: Path) -> None:
            found.save(model, folder, params)
            if any(Path(tmp).iterdir()):
                shutil.copytree(tmp, folder / SNAPSHOTS)

        entry = store.save_trained(found.chapter, name, params, save, record) if run.ranks.main else None
    return model, record, entry


SNAPSHOTS = "snapshots"


def snapshot(name: str, params: dict, step: int, backbones: Backbones):
    """The model `name` as it was before training step `step` (recipes that keep snapshots: esper_grpo,
    and illume after each round but the last)."""
    found = recipe(name)
    return found.load(store.entry_dir(found.chapter, name, params) / SNAPSHOTS / f"step-{step}", backbones)


def obtain(name: str, params: dict, backbones: Backbones, data=None, say=print):
    """(model, record): the store's `name` for these chapter parameters if it is there and was trained
    by this code (store.training_code; saved by `vlbridge train` or an earlier run), else trained now
    in this process and saved. The record holds the training log ("log") either way."""
    return _stored_or_trained(name, params, backbones, Run(), CHAPTER_RUN, data, say)


def prerequisite(name: str, params: dict, backbones: Backbones, run: Run, say=print, data=None):
    """(model, record) of `name`, a model of the same chapter and parameters that a recipe starts from
    (esper_style starts from esper_grpo), for the recipe's train function to call: the store's if it
    is there and was trained by this code (as `obtain`), else trained now over `run`'s ranks (rank 0
    saves it; every rank returns it, identical), with its checkpoints in the sub-folder `name` of the
    run's, so that a resumed run resumes it too. `data`: the recipe's data, if `name` reads the same."""
    outer = _TRAINING.get(None)
    if outer is None:
        raise RuntimeError(f"prerequisite({name!r}) is for a recipe's train function, run by train_and_save "
                           "(a chapter calls obtain)")
    by, model = outer
    checkpoints = run.checkpoints.within(name) if run.checkpoints else None
    return _stored_or_trained(name, params, backbones, Run(run.ranks, checkpoints),
                              f"{by}, as a prerequisite of {model}", data, say if run.ranks.main else _silent)


def _silent(text: str) -> None:
    pass


def _stored_or_trained(name: str, params: dict, backbones: Backbones, run: Run, trained_by: str, data, say):
    """obtain's and prerequisite's (model, record); training now records `trained_by`."""
    found = recipe(name)
    folder = store.entry_dir(found.chapter, name, params)
    # A chapter says nothing of models a chapter run trained, whether it trains them now or loads them:
    # its output is then the same either way.
    chapter = trained_by.startswith(CHAPTER_RUN)
    if _usable(name, folder, run.ranks, say):
        record = store.read_record(folder)
        if not (chapter and record.get("trained_by", "").startswith(CHAPTER_RUN)):
            say(f"{name}: loaded from the store, trained by {record.get('trained_by', 'an unknown run')} ({folder})")
        return found.load(folder, backbones), record
    if not chapter:
        say(f"{name}: training it ({trained_by})")
    model, record, entry = train_and_save(name, params, backbones, run, {"trained_by": trained_by}, data)
    check_replicated([p for p in model.parameters() if p.requires_grad], run.ranks, f"{name}'s trained weights")
    # Rank 0 returns the record as saved (its JSON types, the store's fields), as a later load would.
    return model, (store.read_record(entry) if entry else record)


def _usable(name: str, folder: Path, ranks: Group, say) -> bool:
    """Whether the store's entry in `folder` is there and was trained by this code, on every rank: all
    of them load it or all train (a rank that trained alone would wait for the others for ever)."""
    usable = (folder / store.RECORD).is_file()
    if usable and store.read_record(folder).get("code") != store.training_code():
        say(f"{name}: the store's model for these parameters was trained by other code; training again")
        usable = False
    return not ranks.any(not usable)
