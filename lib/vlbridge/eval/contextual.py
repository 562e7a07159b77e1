"""Retrieval and answering in context, in the shape of FROMAGe's evaluations (Koh et al. 2023):
VIST-style stories (retrieve a story's last picture from the story so far) and VisDial-style
dialogues (retrieve the picture from a dialogue; rank candidate answers to each question).

A query is an interleaved list of str and image features, so any model that reads interleaved
input can be scored; a text-only model (CLIP's text encoder) gets the text parts joined.
"""
from __future__ import annotations

import numpy as np

STORY_SETTINGS = {
    "1cap": "the last sentence only",
    "5cap": "all five sentences",
    "5cap4img": "all five sentences and the first four pictures",
}


def story_query(story, setting: str, features) -> list:
    """What a model is given to retrieve the story's last picture; `features` are the features of
    the story's pictures, in order (only the first four are ever shown)."""
    s = story.sentences
    if setting == "1cap":
        return [s[-1]]
    if setting == "5cap":
        return [" ".join(s)]
    if setting == "5cap4img":
        items = []
        for sentence, image in zip(s[:-1], features[:-1]):
            items += [sentence, image]
        return [*items, s[-1]]
    raise ValueError(f"unknown story setting {setting!r}; settings are {', '.join(STORY_SETTINGS)}")


def text_of(query: list) -> str:
    """The text parts of an interleaved query, joined (what a text-only retriever can read)."""
    return " ".join(item for item in query if isinstance(item, str))


def answer_candidates(dialogues, count: int, seed: int = 0) -> list[list[tuple[list[str], int]]]:
    """For every round of every dialogue: `count` candidate answers (VisDial gives 100), the true one
    among answers to questions of the same kind elsewhere, and the true one's index. Candidates are
    distinct strings, so exactly one is right."""
    def kind(question: str) -> str:
        return " ".join(question.split()[:2])  # 'what colour', 'is there', 'where is', 'how many', ...

    pool: dict[str, list[str]] = {}
    for d in dialogues:
        for q, a in d.rounds:
            pool.setdefault(kind(q), [])
            if a not in pool[kind(q)]:
                pool[kind(q)].append(a)
    rng = np.random.default_rng([seed, 0xD1A])
    out = []
    for d in dialogues:
        per_round = []
        for q, a in d.rounds:
            others = [x for x in pool[kind(q)] if x != a]
            picked = [others[i] for i in rng.permutation(len(others))[:count - 1]]
            answers = [a, *picked]
            order = rng.permutation(len(answers))
            answers = [answers[i] for i in order]
            per_round.append((answers, int(np.argmax(order == 0))))
        out.append(per_round)
    return out
