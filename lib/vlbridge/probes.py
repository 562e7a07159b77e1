"""Probes of what a frozen LM knows from text alone: perplexity, grammatical samples, use of
context, and visual question answering when the scene is given as a caption."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import world
from .world.grammar import is_caption

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


@torch.no_grad()
def generate(lm, prompts: list[str], max_new_tokens: int, sample: bool, seed: int = 0,
             stop_at: str = ".") -> list[str]:
    """Continue each prompt (after <bos>), greedily or by sampling at temperature 1, up to `stop_at`."""
    tok = lm.tokenizer
    torch.manual_seed(seed)
    outputs = []
    for prompt in prompts:
        ids = torch.tensor([[tok.bos_token_id] + tok(prompt, add_special_tokens=False).input_ids], device=lm.model.device)
        out = lm.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=1.0 if sample else None, top_k=0 if sample else None, top_p=None,
            eos_token_id=[tok.convert_tokens_to_ids(stop_at), tok.eos_token_id], pad_token_id=tok.pad_token_id)
        outputs.append(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return outputs


def caption_openers_parse_rate(lm, n: int, seed: int = 0) -> tuple[float, list[str]]:
    """Sample `n` captions from the caption openers; the share the strict grammar accepts."""
    openers = [CAPTION_OPENERS[i % len(CAPTION_OPENERS)] for i in range(n)]
    samples = [f"{o} {s}" for o, s in zip(openers, generate(lm, openers, 48, sample=True, seed=seed))]
    return float(np.mean([is_caption(s) for s in samples])), samples


def context_probe(lm, scenes, seed: int = 0) -> dict[str, float]:
    """Mean per-token loss on a caption; on a second caption of the same scene after it; and on a
    caption of the next (different) scene after it."""
    first, same, different = [], [], []
    for k, scene in enumerate(scenes[:-1]):
        a = world.caption(scene, world.scene_rng(scene.seed, 1))
        for follow, store in ((scene, same), (scenes[k + 1], different)):
            b = world.caption(follow, world.scene_rng(follow.seed, 2))
            n_a = len(lm.tokenizer(a, add_special_tokens=False).input_ids)
            loss, mask = token_losses(lm, [f"{a} {b}"])
            if store is same:
                first.append(loss[0, :n_a].mean().item())
            store.append(loss[0, n_a:][mask[0, n_a:]].mean().item())
    return {"first": float(np.mean(first)), "same": float(np.mean(same)), "different": float(np.mean(different))}


def split_answer(text: str) -> tuple[str, str | None]:
    """'red because the circle ... is red .' -> ('red', 'the circle ... is red')."""
    answer, sep, rationale = text.partition(" because ")
    return answer.strip(), (rationale.replace(" .", "").strip() if sep else None)


def rationale_true(rationale: str | None, scene) -> bool:
    """True if the rationale makes at least one claim and every claim is true of the scene."""
    if not rationale:
        return False
    claims = world.parse(rationale).claims
    if not claims:
        return False
    return all(any(c.matches(o) for o in scene.objects) != c.negated for c in claims)


def vqa_from_text(lm, items, with_caption: bool) -> dict:
    """Greedy answers to `q : ... a :` prompts, with the scene's caption before them or not."""
    prompts = [(f"{world.caption(it.scene, world.scene_rng(it.seed, 1))} " if with_caption else "")
               + world.vqa_prompt(it.question) for it in items]
    outputs = generate(lm, prompts, 40, sample=False)
    answers = [split_answer(o) for o in outputs]
    return {
        "answer_acc": float(np.mean([a == it.answer for (a, _), it in zip(answers, items)])),
        "rationale_acc": float(np.mean([rationale_true(r, it.scene) for (_, r), it in zip(answers, items)])),
        "example": f"{prompts[0]} {outputs[0]}",
    }
