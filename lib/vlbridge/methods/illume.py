"""ILLUME (Brack, Schramowski, Deiseroth & Kersting, "ILLUME: Rationalizing Vision-Language Models
through Human Interactions", ICML 2023): a grounded model learns to explain its answers from a
critic's choices, not from written explanations.

Each round: for new (image, question, answer) items the model samples several rationales after the
prompt `q : <question> a : <answer> because`; a critic (critics.py: simulated, or a person in the
notebook panel) keeps the ones it prefers; the bridge is tuned on every rationale kept so far, mixed
with answer-only items (answers are cheap labels; the paper mixes about ten per rationale); the next
round samples from the tuned model. Supervised fine-tuning on gold rationales (SFT) is the same
tuning with the gold explanations in place of the kept ones.

Trained are the grounded model's image-to-LM bridge and, as an option, LoRA adapters (peft) on a
copy of the LM's attention; the LM's own weights never change.

FeedbackConfig's defaults are the book's; its options do as ILLUME's official code does (the paper
profile turns them on): n samples at each temperature, MAGMA's `Q: … A: <answer>, seeing that`
prompt, the rationale loss weighted by answer-only rows over rationale rows, AdamW's betas and
weight decay, and the image bridge frozen while only LoRA adapters train.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import bridge as br
from .. import checkpoint
from ..bridge import Text
from ..contracts import Backbones
from ..critics import LoggingCritic
from ..distributed import SINGLE, Group
from ..repro import generator
from ..training import Run, adamw, train_loop
from ..world import explained, split_answer, vqa_prompt
from .fromage import Fromage

STOP = (".",)  # a rationale is one sentence
LORA = "lora"  # the subfolder of a saved tuned model holding its LoRA adapters


@dataclass(frozen=True)
class Prompt:
    """How an item is written for the LM: the question turn (with the answer and what leads into the
    rationale, if an answer is given), what the model writes after the question turn, and how that
    text splits back into (answer, rationale or None)."""
    ask: Callable[..., str]
    explained: Callable[[str, str], str]
    split: Callable[[str], tuple[str, str | None]]


def _magma_ask(question: str, answer: str | None = None) -> str:
    text = f"Q: {question} A:"  # MAGMA's QA prompt (vqax_magma_eval.py:93)
    return text if answer is None else f"{text} {answer}, seeing that"  # the rationale prompt (:68, :161)


def _magma_split(text: str) -> tuple[str, str | None]:
    answer, sep, rationale = text.partition(", seeing that")
    return answer.strip(), (_strip(rationale) if sep else None)


PROMPTS = {
    "microworld": Prompt(vqa_prompt, explained, split_answer),  # `q : … a : <answer> because <rationale> .`
    # ILLUME's code: `Q: … A: <answer>, seeing that <rationale>`
    # (data_preperation/vqax_magma_embed_illume_iteration.py:78, 96)
    "magma": Prompt(_magma_ask, lambda answer, rationale: f"{answer}, seeing that {rationale}.", _magma_split),
}


@dataclass
class FeedbackConfig:
    samples: int = 4  # N: rationales sampled per item (at each temperature, with samples_per_temperature)
    temperatures: tuple[float, ...] = (0.8,)  # sample j uses temperatures[j % len]; the paper: 0.3 and 0.8
    samples_per_temperature: bool = False  # True: `samples` at every temperature, as ILLUME's code (5 at each of 2)
    prompt: str = "microworld"  # a key of PROMPTS: the microworld's spelling, or "magma" (ILLUME's code)
    max_new_tokens: int = 32
    rounds: int = 4
    items_per_round: int = 250  # new items the critic judges each round
    steps_per_round: int = 150
    batch_size: int = 32
    answer_only_per_rationale: float = 1.0  # answer-only examples per rationale example in a batch
    weight_rationale_loss: bool = False  # True: ILLUME's loss, weighted_loss with weight answer-only / rationale rows
    lr: float = 3e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW's; ILLUME's code: (0.9, 0.99)
    warmup_steps: int = 10
    tune_bridge: bool = True  # False: the image bridge stays frozen and only the LoRA adapters train (ILLUME's code)
    lora_rank: int = 0  # 0: tune the bridge only; r > 0: also LoRA adapters of rank r on the LM's copy
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")  # the LM's modules that get adapters (GPT-2: c_attn)
    seed: int = 0

    def __post_init__(self):
        if self.prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {', '.join(map(repr, PROMPTS))}, got {self.prompt!r}")
        if not self.tune_bridge and self.lora_rank <= 0:
            raise ValueError("tune_bridge False leaves nothing to tune unless lora_rank > 0 adds LoRA adapters")

    @property
    def candidates(self) -> int:
        """Rationales sampled per item: `samples`, or `samples` at each temperature."""
        return self.samples * len(self.temperatures) if self.samples_per_temperature else self.samples


@dataclass(frozen=True)
class Example:
    """One teacher-forced example: item `index` (its features and question), the answer, and the
    rationale after `because` (None: an answer-only example)."""
    index: int
    answer: str
    rationale: str | None = None


def tunable_copy(model, config: FeedbackConfig):
    """A copy of the grounded model whose bridge trains; with lora_rank > 0 its LM is a copy with
    LoRA adapters (the original LM, shared with every other model, stays untouched)."""
    frozen = {id(model.clip): model.clip, id(model.lm): model.lm}  # shared, never copied
    tuned = copy.deepcopy(model, memo=frozen)
    if not config.tune_bridge:  # out of the optimiser, so that weight decay cannot move it either
        tuned.image_to_lm.requires_grad_(False)
    if config.lora_rank > 0:
        from peft import LoraConfig, inject_adapter_in_model

        lm = copy.deepcopy(model.lm)
        # The adapters' random start comes from the seed, not from whatever drew from torch's global
        # generator before (a recipe that trained the grounded model in the same process, or loaded it).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(config.seed)
            inject_adapter_in_model(LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                                               target_modules=list(config.lora_targets)), lm.model)
        tuned.lm = lm
    return tuned


def save_tuned(model, folder, config: FeedbackConfig) -> None:
    """A tuned model: its bridge (as Fromage.save writes it) and, with lora_rank > 0, the LoRA adapters
    of its LM's copy in folder/lora, with their rank and target modules."""
    model.save(folder)
    if config.lora_rank > 0:
        checkpoint.save(Path(folder) / LORA, model.lm.model,
                        {"lora_rank": config.lora_rank, "lora_targets": list(config.lora_targets)},
                        {"lm": model.lm.name})


def load_tuned(folder, backbones: Backbones):
    """A model saved by save_tuned, on the backbones it was trained on (the shared LM stays as it is:
    adapters, if any, go on a copy)."""
    model = Fromage.load(folder, backbones)
    if not (Path(folder) / LORA).is_dir():
        return model
    lora = checkpoint.read_meta(Path(folder) / LORA)["config"]
    tuned = tunable_copy(model, FeedbackConfig(lora_rank=lora["lora_rank"], lora_targets=tuple(lora["lora_targets"])))
    checkpoint.load(Path(folder) / LORA, tuned.lm.model, {"lm": backbones.lm.name})
    return tuned.eval()


def trainable_module(model) -> torch.nn.Module:
    """What feedback tuning changes, the bridge and the LoRA adapters if there are any, as one module:
    what a training run's checkpoints save and restore (the adapters live in the LM's copy, outside
    the model's own parameters)."""
    parts = torch.nn.Module()
    parts.image_to_lm = model.image_to_lm
    parts.adapters = torch.nn.ParameterDict({name.replace(".", "/"): p for name, p in model.lm.model.named_parameters()
                                             if "lora_" in name})
    return parts


def trainable(model) -> list[torch.nn.Parameter]:
    """What feedback tuning changes: the bridge, and the LoRA adapters if there are any."""
    return list(trainable_module(model).parameters())


def _prompts(model, features: torch.Tensor, items: list, answers: bool = False,
             prompt: str = "microworld") -> list[list]:
    """[image, `q : … a :`] per item (answers=True: `q : … a : <answer> because`), in PROMPTS[prompt]'s spelling."""
    ask = PROMPTS[prompt].ask
    return [[image, Text(ask(it.question, it.answer if answers else None))]
            for image, it in zip(model.image_segments(features), items, strict=True)]


def _check(features: torch.Tensor, items: list) -> None:
    if not items:
        raise ValueError("got no items")
    if len(features) != len(items):
        raise ValueError(f"{len(features)} feature rows but {len(items)} items")


def _strip(text: str) -> str:
    return text.strip().removesuffix(".").strip()


@torch.no_grad()
def sample_rationales(model, features: torch.Tensor, items: list, config: FeedbackConfig,
                      gen: torch.Generator) -> list[list[str]]:
    """config.candidates rationales per item, after `q : … a : <gold answer> because`; batched and
    KV-cached, one generate call per temperature."""
    _check(features, items)
    out = [[""] * config.candidates for _ in items]
    for t, temperature in enumerate(config.temperatures):
        slots = [(i, j) for i in range(len(items)) for j in range(t, config.candidates, len(config.temperatures))]
        if not slots:
            continue
        rows = [i for i, _ in slots]
        batch = br.assemble(model.lm, _prompts(model, features[rows], [items[i] for i in rows], answers=True,
                                               prompt=config.prompt), pad_left=True)
        texts = br.generate(model.lm, batch, config.max_new_tokens, temperature, STOP, generator=gen).texts
        for (i, j), text in zip(slots, texts):
            out[i][j] = _strip(text)
    return out


@torch.no_grad()
def answer(model, features: torch.Tensor, items: list, max_new_tokens: int = 40,
           batch_size: int = 256, prompt: str = "microworld") -> list[tuple[str, str | None]]:
    """Greedy (answer, rationale) after `q : <question> a :` (in PROMPTS[prompt]'s spelling); rationale
    None if the model wrote no `because`."""
    _check(features, items)
    texts = []
    for s in range(0, len(items), batch_size):
        batch = br.assemble(model.lm, _prompts(model, features[s:s + batch_size], items[s:s + batch_size],
                                               prompt=prompt), pad_left=True)
        texts += br.generate(model.lm, batch, max_new_tokens, 0.0, STOP).texts
    return [PROMPTS[prompt].split(t) for t in texts]


def tune(model, features: torch.Tensor, items: list, rationales: list[Example], answers: list[Example],
         config: FeedbackConfig, steps: int, name: str = "feedback", run: Run | None = None) -> dict:
    """Teacher-forced tuning of the trainable parts on rationale examples (`answer because
    rationale .`) mixed with answer-only examples, in the proportion config.answer_only_per_rationale
    (only answers while the critic has kept nothing yet); with config.weight_rationale_loss, the
    rationale rows' loss is weighted as ILLUME's code does (`weighted_loss`). `run`: over data-parallel
    ranks (each reads its block of every step's batch), with checkpoints (training.Run). Returns the
    training log."""
    run = run or Run()
    if not rationales and not answers:
        raise ValueError("nothing to tune on: no rationale and no answer-only examples")
    order = generator(config.seed, f"{name}-batches")
    share = (1.0 / (1.0 + config.answer_only_per_rationale) if answers else 1.0) if rationales else 0.0
    n_rationale = max(1, round(config.batch_size * share)) if rationales else 0
    n_answer = config.batch_size - n_rationale
    weighted = config.weight_rationale_loss and n_rationale and n_answer
    prompt = PROMPTS[config.prompt]

    def draw(pool: list[Example], n: int) -> list[Example]:
        return [pool[i] for i in torch.randint(len(pool), (n,), generator=order).tolist()] if n else []

    def loss_fn(step: int) -> torch.Tensor:
        chosen = draw(rationales, n_rationale) + draw(answers, n_answer)
        chosen = run.ranks.take(chosen)  # this rank's block of the step's batch
        rows = [e.index for e in chosen]
        asked = _prompts(model, features[rows], [items[i] for i in rows], prompt=config.prompt)
        sequences = [[*question, Text(e.answer if e.rationale is None else prompt.explained(e.answer, e.rationale),
                                      learn=True)]
                     for question, e in zip(asked, chosen)]
        if weighted:
            return weighted_loss(model.lm, sequences, [e.rationale is not None for e in chosen],
                                 n_answer / n_rationale, run.ranks)
        return br.teacher_forced_loss(model.lm, sequences, run.ranks)

    parts = trainable_module(model)
    optimizer = adamw(parts.parameters(), config.lr, config.weight_decay, config.betas)
    return train_loop(parts, optimizer, steps, config.warmup_steps, loss_fn, name,
                      streams={f"{name}-batches": order}, run=run)


def weighted_loss(lm, sequences: list[list], rationale_rows: list[bool], weight: float,
                  ranks: Group = SINGLE) -> dict[str, torch.Tensor]:
    """ILLUME's tuning loss (tuning/vqax_magma_ILLUME_tuning.py:79-82, 203-208): the answer-only rows'
    mean cross-entropy plus `weight` x the rationale rows' mean, where ILLUME's weight is the number of
    answer-only rows over the number of rationale rows, so that the few rationales are not drowned by
    the answers. Returns {"loss": the total, "answer_loss", "rationale_loss"}; over `ranks`, this
    rank's share of each (each mean is over every rank's tokens of its kind)."""
    batch = br.assemble(lm, sequences)
    _, logits = br.forward(lm, batch)
    targets = batch.targets[:, 1:]
    per_token = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                ignore_index=br.IGNORE, reduction="none").view_as(targets)
    rationale = torch.tensor(rationale_rows, device=targets.device)[:, None]
    parts = {}
    for name, rows in (("answer_loss", ~rationale), ("rationale_loss", rationale)):
        learned = (targets != br.IGNORE) & rows
        count = ranks.sum(learned.sum())  # every rank takes part, even one whose block has none of this kind
        parts[name] = per_token[learned].sum() / count.clamp(min=1)
    return {"loss": parts["answer_loss"] + weight * parts["rationale_loss"], **parts}


def answer_only(items: list) -> list[Example]:
    return [Example(i, it.answer) for i, it in enumerate(items)]


def gold_rationales(items: list) -> list[Example]:
    """SFT's examples: every item's gold explanation."""
    missing = [it.item_id for it in items if not it.explanation]
    if missing:
        raise ValueError(f"SFT needs a gold explanation for every item; {len(missing)} have none, e.g. {missing[0]}")
    return [Example(i, it.answer, _strip(it.explanation)) for i, it in enumerate(items)]


@dataclass
class RoundLog:
    round: int
    judged: int = 0  # items the critic judged this round
    candidates: int = 0
    kept: int = 0
    items_with_kept: int = 0
    seconds: float = 0.0
    train: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    judgements: list = field(default_factory=list)  # [candidates, keep flags] of every item judged, in order

    @property
    def accept_rate(self) -> float:
        return self.kept / max(1, self.candidates)


class FeedbackLoop:
    """Rounds of sample -> judge -> tune over `items` (features[i] is items[i]'s image); round r
    takes the r-th block of config.items_per_round items. Answer-only examples come from every item
    (answers are the cheap labels). The tuned model is a copy: the grounded model is left as it was.

    Over data-parallel `ranks` each rank samples and judges its share of a round's items (its
    Group.block of them), every rank then gets every decision, so all tune on the same kept pool,
    and the tuning is data-parallel (`tune`). Each rank samples from a stream of its own; one
    process samples from the book's stream.

    `run` does every round with a simulated critic. With a person, take a round in two steps:
    `candidates(r)` to show in the critic panel, then `learn(r, RecordedCritic(log, r))`."""

    def __init__(self, model, features: torch.Tensor, items: list, config: FeedbackConfig, ranks: Group = SINGLE):
        _check(features, items)
        needed = config.rounds * config.items_per_round
        if needed > len(items):
            raise ValueError(f"{config.rounds} rounds x {config.items_per_round} items need {needed} items; "
                             f"got {len(items)}")
        self.model = tunable_copy(model, config)
        self.features, self.items, self.config, self.ranks = features, items, config, ranks
        self.kept: list[Example] = []
        self.answers = answer_only(items)
        own = "feedback-samples" if ranks.world == 1 else f"feedback-samples-{ranks.rank}"
        # The random stream a rank samples from (draws where the LM samples), by the name checkpoints save it under.
        self.streams = {"feedback-samples": generator(config.seed, own, br.lm_device(model.lm))}
        self._sampled: dict[int, list[list[str]]] = {}

    def block(self, r: int) -> range:
        if not 1 <= r <= self.config.rounds:
            raise ValueError(f"round must be between 1 and {self.config.rounds}, got {r}")
        return range((r - 1) * self.config.items_per_round, r * self.config.items_per_round)

    def candidates(self, r: int) -> tuple[list, list[list[str]]]:
        """This rank's items of round r (all of them with one process) and the rationales the current
        model samples for them (sampled once)."""
        share = self.ranks.take(self.block(r))
        if r not in self._sampled:
            self._sampled[r] = sample_rationales(self.model, self.features[share.start:share.stop],
                                                 [self.items[i] for i in share], self.config,
                                                 self.streams["feedback-samples"]) if share else []
        return [self.items[i] for i in share], self._sampled[r]

    def judge(self, r: int, critic) -> RoundLog:
        """Judge round r's candidates with `critic` (this rank's share; every rank then gets every
        decision) and add the kept ones to the pool."""
        start = time.time()
        mine = []
        for item, cands in zip(*self.candidates(r)):
            flags = [bool(keep) for keep in critic.judge(item, cands)]
            if len(flags) != len(cands):
                raise ValueError(f"the critic returned {len(flags)} decisions for {len(cands)} candidates "
                                 f"of item {item.item_id}")
            mine.append([cands, flags])
        judgements = [judged for share in self.ranks.gather_json(mine) for judged in share]  # in item order
        log = RoundLog(r, judged=len(judgements), judgements=judgements)
        for i, (cands, flags) in zip(self.block(r), judgements):
            chosen = sorted({c for c, keep in zip(cands, flags) if keep and c})  # a rationale written twice counts once
            self.kept += [Example(i, self.items[i].answer, c) for c in chosen]
            log.candidates += len(cands)
            log.kept += sum(flags)
            log.items_with_kept += bool(chosen)
        log.seconds = round(time.time() - start, 2)
        return log

    def tune_round(self, log: RoundLog, checkpoints=None) -> RoundLog:
        """Tune on every rationale kept so far, for round `log.round` (its log gets the training log),
        data-parallel over the loop's ranks, with `checkpoints` (resume.RunCheckpoints) if given."""
        start = time.time()
        log.train = tune(self.model, self.features, self.items, self.kept, self.answers, self.config,
                         self.config.steps_per_round, f"feedback round {log.round}", Run(self.ranks, checkpoints))
        log.seconds = round(log.seconds + time.time() - start, 2)
        return log

    def learn(self, r: int, critic) -> RoundLog:
        """Judge round r's candidates with `critic`, add the kept ones to the pool, and tune on it."""
        return self.tune_round(self.judge(r, critic))

    def run(self, critic, evaluate=None, decisions=None) -> list[RoundLog]:
        """Every round with a simulated critic; `evaluate(model) -> dict` runs before the first round
        (round 0) and after each; `decisions` (a critics.DecisionLog) records every judgement."""
        logs = [RoundLog(0, evaluation=evaluate(self.model) if evaluate else {})]
        for r in range(1, self.config.rounds + 1):
            log = self.learn(r, LoggingCritic(critic, decisions, r) if decisions is not None else critic)
            log.evaluation = evaluate(self.model) if evaluate else {}
            logs.append(log)
        return logs


def sft(model, features: torch.Tensor, items: list, config: FeedbackConfig, steps: int,
        labelled: int | None = None, run: Run | None = None) -> tuple[object, dict]:
    """Supervised fine-tuning on the gold explanations of the first `labelled` items (default all),
    with answer-only examples from every item as in the loop; `run` as `tune`'s. Returns the tuned
    copy and its log."""
    _check(features, items)
    labelled = len(items) if labelled is None else labelled
    if not 0 < labelled <= len(items):
        raise ValueError(f"labelled must be between 1 and {len(items)}, got {labelled}")
    tuned = tunable_copy(model, config)
    log = tune(tuned, features, items, gold_rationales(items[:labelled]), answer_only(items), config, steps,
               f"SFT {labelled}", run)
    return tuned, log
