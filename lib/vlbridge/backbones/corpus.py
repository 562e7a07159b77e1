"""Microworld text for the stand-in backbones.

The LM reads text only, never images. Its corpus has the redundancy real text has: a caption
followed by itself, a paraphrase or restyled versions of itself, stories whose objects persist,
dialogues whose answers restate the scene, rationales that restate the answer. An LM trained on
independent captions learns to ignore its context, and then no image prefix can steer it
(FINDINGS.md). Random strings said twice ("echo") are the plainest redundancy of all: their second
half can be predicted only by copying, which is what makes copying circuits form within a small
training budget.
"""
from __future__ import annotations

import numpy as np

from ..world import (
    STYLES,
    caption,
    dialogue,
    qa_turn,
    sample_scene,
    scene_rng,
    story,
    styled_caption,
    vqa_item,
    vqa_prompt,
)
from ..world.language import object_list, partial_caption, style_prompt
from ..world.vocab import COLOUR_NAMES, POSITION_PHRASES, SHAPES, SIZE_WORDS

# The kinds of document the LM corpus can hold; a recipe gives each kind's share.
DOCUMENT_KINDS = {
    "caption": "a caption alone",
    "repeat": "a caption, then the very same caption again",
    "echo": "a random string of world words, then the same string again",
    "paraphrase": "a caption, then the same scene described again",
    "restyle": "a caption, then styled versions of it, each after its style prompt",
    "styled": "a style prompt and a styled caption",
    "story": "a story, sometimes restating the whole scene after a change",
    "dialogue": "a brief caption (sometimes the full one), then question/answer rounds",
    "vqa": "q : ... a : ... because ...",
    "vqa_context": "a caption, then a question about it with answer and rationale",
}
_CORPUS_STREAM = 21
# Content words only: random strings of them can be predicted the second time only by copying.
ECHO_WORDS = np.array([*SHAPES, *COLOUR_NAMES, *(w for words in SIZE_WORDS.values() for w in words),
                       *dict.fromkeys(w for phrase in POSITION_PHRASES for w in phrase.split()), *STYLES])


def lm_document(seed: int, kind: str) -> str:
    rng = scene_rng(seed, _CORPUS_STREAM)
    if kind in ("caption", "repeat", "paraphrase", "restyle", "styled", "vqa_context"):
        scene = sample_scene(seed)
    if kind == "caption":
        return caption(scene, rng)
    if kind == "echo":
        words = " ".join(rng.choice(ECHO_WORDS, size=int(rng.integers(3, 9))))
        return f"{words} . {words} ."
    if kind == "repeat":
        text = caption(scene, rng)
        return f"{text} {text}"
    if kind == "paraphrase":
        return f"{caption(scene, rng)} {caption(scene, rng)}"
    if kind == "restyle":
        styles = [STYLES[i] for i in rng.permutation(len(STYLES))[: int(rng.integers(1, 4))]]
        return " ".join([caption(scene, rng)] + [f"{style_prompt(s)} {styled_caption(scene, s, rng)}" for s in styles])
    if kind == "styled":
        style = STYLES[int(rng.integers(len(STYLES)))]
        return f"{style_prompt(style)} {styled_caption(scene, style, rng)}"
    if kind == "story":
        told = story(seed)
        sentences = [told.sentences[0]]
        for step, sentence in zip(told.scenes[1:], told.sentences[1:]):
            sentences.append(sentence)
            if rng.random() < 0.3:
                sentences.append(f"now there is {object_list(step, rng)} .")
        return " ".join(sentences)
    if kind == "dialogue":
        talk = dialogue(seed)
        opening = caption(talk.scene, rng) if rng.random() < 0.5 else f"{talk.caption} ."
        rounds = int(rng.integers(3, len(talk.rounds) + 1))
        return " ".join([opening] + [qa_turn(q, a) for q, a in talk.rounds[:rounds]])
    if kind in ("vqa", "vqa_context"):
        item = vqa_item(seed)
        qa = f"{vqa_prompt(item.question, item.answer)} {item.rationale} ."
        return qa if kind == "vqa" else f"{caption(item.scene, rng)} {qa}"
    raise ValueError(f"unknown document kind {kind!r}; kinds are {', '.join(DOCUMENT_KINDS)}")


def lm_documents(start: int, count: int, mix: dict[str, float], seed: int = 0) -> list[str]:
    """`count` documents from scene seeds [start, start+count), kinds drawn with the shares in `mix`."""
    unknown = set(mix) - set(DOCUMENT_KINDS)
    if unknown:
        raise ValueError(f"unknown document kinds {sorted(unknown)}; kinds are {', '.join(DOCUMENT_KINDS)}")
    kinds = list(mix)
    weights = np.array([mix[k] for k in kinds], dtype=float)
    picks = np.random.default_rng([seed, start]).choice(len(kinds), size=count, p=weights / weights.sum())
    return [lm_document(start + i, kinds[k]) for i, k in enumerate(picks)]


# Text shown to the stand-in CLIP beside each image, and its share.
CLIP_TEXT_MIX = {"caption": 0.5, "styled": 0.2, "partial": 0.3}


def clip_text(scene, rng: np.random.Generator, mix: dict[str, float] | None = None):
    """One text for `scene` and what it claims: (text, claims, exhaustive). Exhaustive texts list
    every object, so they are true only of scenes with exactly those objects; partial ones are
    true of any scene where each claim holds."""
    mix = mix or CLIP_TEXT_MIX
    r = rng.random() * sum(mix.values())
    if r < mix.get("caption", 0.0):
        return caption(scene, rng), None, True
    if r < mix.get("caption", 0.0) + mix.get("styled", 0.0):
        return styled_caption(scene, STYLES[int(rng.integers(len(STYLES)))], rng), None, True
    text, claims = partial_caption(scene, rng)
    return text, claims, False
