"""VQA with rationales, scored from greedy (answer, rationale) pairs: answer accuracy (exact match with
the item's answer; microworld answers are single canonical words, and a VQA-X item carries the answer
its annotators agreed on) and rationale accuracy, the share of rationales that a truth critic
(critics.WorldCritic: true of the scene, and supporting the answer) accepts."""
from __future__ import annotations


def vqa_scores(pairs: list[tuple[str, str | None]], items: list, truth=None) -> dict[str, float]:
    """{"answer_acc"} and, given a `truth` critic, {"rationale_acc"}; a missing rationale (None) is wrong."""
    pairs, items = list(pairs), list(items)
    if not items or len(pairs) != len(items):
        raise ValueError(f"need one (answer, rationale) pair per item, got {len(pairs)} pairs and {len(items)} items")
    scores = {"answer_acc": sum(a == it.answer for (a, _), it in zip(pairs, items)) / len(items)}
    if truth is not None:
        accepted = sum(bool(r) and truth.judge(it, [r])[0] for (_, r), it in zip(pairs, items))
        scores["rationale_acc"] = accepted / len(items)
    return scores
