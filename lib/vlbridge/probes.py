"""Probes of what a frozen LM knows from text alone: perplexity, grammatical samples, use of
context, and visual question answering when the scene is given as a caption."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import bridge as br
from . import world
from .eval.vqa import vqa_scores
from .repro import generator
from .world.grammar import is_caption
from .world.narrative import rationale_true, split_answer

CAPTION_OPENERS = ("there is", "this picture shows", "we can see", "an image of")


@torch.no_grad()
def token_losses(lm, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token next-token loss [N, T-1] of `<bos> text <eos>` and the mask of real tokens."""
    batch = lm.tokenizer(texts, padding=True, return_tensors="pt").to(lm.model.device)
    logits = lm.model(**batch).logits[:, :-1].float()
    targets = batch.input_ids[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return loss.view(targets.shape).cpu(), batch.attention_mask[:, 1:].bool().cpu()


def sequence_nll(lm, texts: list[str], batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Summed negative log-likelihood of each text (with its <eos>) and its number of tokens."""
    totals, counts = [], []
    for i in range(0, len(texts), batch_size):
        loss, mask = token_losses(lm, texts[i:i + batch_size])
        totals.append((loss * mask).sum(1).numpy())
        counts.append(mask.sum(1).numpy())
    return np.concatenate(totals), np.concatenate(counts)


def generate(lm, prompts: list[str], max_new_tokens: int, sample: bool, seed: int = 0,
             stop_at: str = ".", batch_size: int = 64) -> list[str]:
    """Continue each text prompt (after <bos>), greedily or by sampling at temperature 1, up to
    `stop_at`, in left-padded batches with the KV cache (the bridge's generation)."""
    rng = generator(seed, "probe-sampling", br.lm_device(lm))  # sampling draws where the LM runs
    outputs = []
    for i in range(0, len(prompts), batch_size):
        batch = br.assemble(lm, [[br.Text(p)] for p in prompts[i:i + batch_size]], pad_left=True)
        outputs += br.generate(lm, batch, max_new_tokens, temperature=1.0 if sample else 0.0, stop=(stop_at,),
                               generator=rng).texts
    return outputs


def caption_openers_parse_rate(lm, n: int, seed: int = 0) -> tuple[float, list[str]]:
    """Sample `n` captions from the caption openers; the share the strict grammar accepts."""
    openers = [CAPTION_OPENERS[i % len(CAPTION_OPENERS)] for i in range(n)]
    samples = [f"{o} {s}" for o, s in zip(openers, generate(lm, openers, 48, sample=True, seed=seed))]
    return float(np.mean([is_caption(s) for s in samples])), samples


def context_probe(lm, scenes) -> dict[str, float]:
    """Mean per-token loss on a caption, and on what follows it: the very same caption again, a
    second caption of the same scene (other template, order and synonyms), or a caption of the
    next, different scene."""
    losses = {"first": [], "repeat": [], "paraphrase": [], "different": []}
    for scene, other in zip(scenes, scenes[1:]):
        a = world.caption(scene, world.scene_rng(scene.seed, 1))
        n_a = len(lm.tokenizer(a, add_special_tokens=False).input_ids)
        follows = {"repeat": a, "paraphrase": world.caption(scene, world.scene_rng(scene.seed, 2)),
                   "different": world.caption(other, world.scene_rng(other.seed, 2))}
        loss, mask = token_losses(lm, [f"{a} {b}" for b in follows.values()])
        losses["first"].append(loss[0, :n_a].mean().item())
        for row, name in enumerate(follows):
            losses[name].append(loss[row, n_a:][mask[row, n_a:]].mean().item())
    return {name: float(np.mean(values)) for name, values in losses.items()}


def vqa_from_text(lm, items, with_caption: bool) -> dict:
    """Greedy answers to `q : ... a :` prompts, with the scene's caption before them or not: answer
    accuracy (eval.vqa_scores) and the share of rationales true of the scene (whether or not they
    support the answer: the LM alone is not asked to)."""
    prompts = [(f"{world.caption(it.scene, world.scene_rng(it.seed, 1))} " if with_caption else "")
               + world.vqa_prompt(it.question) for it in items]
    outputs = generate(lm, prompts, 40, sample=False)
    answers = [split_answer(o) for o in outputs]
    return {
        "answer_acc": vqa_scores(answers, items)["answer_acc"],
        "rationale_acc": float(np.mean([rationale_true(r, it.scene) for (_, r), it in zip(answers, items)])),
        "example": f"{prompts[0]} {outputs[0]}",
    }


@torch.no_grad()
def repeat_copy_accuracy(lm, captions: list[str], kinds: dict[str, tuple]) -> dict[str, float]:
    """How often the LM's greedy next token is right for the words of each kind (e.g. "shape":
    world.SHAPES) in the second half of "caption caption": there, every such word can be copied from
    the first half, so an LM that copies gets it right whatever the word."""
    tok = lm.tokenizer
    hits = {kind: [0, 0] for kind in kinds}
    for caption in captions:
        first = br.token_ids(tok, caption)
        ids = first + br.token_ids(tok, caption)
        x = torch.tensor([[br.bos_token_id(tok), *ids]], device=lm.model.device)
        predicted = lm.model(x).logits[0, :-1].argmax(-1).tolist()  # position i predicts ids[i]
        for i in range(len(first), len(ids)):
            word = tok.decode([ids[i]]).strip()
            for kind, words in kinds.items():
                if word in words:
                    hits[kind][0] += predicted[i] == ids[i]
                    hits[kind][1] += 1
    return {kind: right / max(total, 1) for kind, (right, total) in hits.items()}
