"""Texts about scenes beyond a caption: stories (VIST-like), dialogues (VisDial-like) and
visual questions with a gold rationale (VQA-X-like).

Each is a pure function of a seed, drawn from its own random stream of that seed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .language import caption, count_phrase, join, object_phrase, reference
from .parser import parse
from .scene import Scene, WorldObject, random_object, sample_scene, scene_rng
from .vocab import COLOUR_NAMES, NUMBER_WORDS, POSITIONS, SHAPES, SIZE_WORDS, position_phrase

STORY_STEPS = 5
_STORY_STREAM, _DIALOGUE_STREAM, _VQA_STREAM = 11, 12, 13

# --------------------------------------------------------------------------------------- stories


@dataclass(frozen=True)
class Story:
    seed: int
    scenes: tuple[Scene, ...]
    sentences: tuple[str, ...]  # the first describes the whole scene, each later one a single change


def _free_cells(scene: Scene) -> list[tuple[int, int]]:
    return [p for p in POSITIONS if p not in scene.occupied()]


def _change(scene: Scene, rng: np.random.Generator) -> tuple[Scene, str]:
    """Apply one random change to the scene and say what happened."""
    objects = list(scene.objects)
    kinds = ["recolour", "move", "resize"]
    if len(objects) < 3:
        kinds.append("appear")
    if len(objects) > 1:
        kinds.append("vanish")
    kind = kinds[int(rng.integers(len(kinds)))]
    i = int(rng.integers(len(objects)))
    target = objects[i]
    name = reference(target, scene)
    if kind == "recolour":
        colour = rng.choice([c for c in COLOUR_NAMES if c != target.colour])
        objects[i] = replace(target, colour=str(colour))
        return scene.with_objects(objects), f"then {name} turns {colour} ."
    if kind == "move":
        free = _free_cells(scene)
        row, col = free[int(rng.integers(len(free)))]
        objects[i] = replace(target, row=row, col=col)
        return scene.with_objects(objects), f"then {name} moves to the {objects[i].position} ."
    if kind == "resize":
        grown = target.size == "small"
        objects[i] = replace(target, size="large" if grown else "small")
        verb = "grows" if grown else "shrinks"
        return scene.with_objects(objects), f"then {name} {verb} ."
    if kind == "appear":
        free = _free_cells(scene)
        new = random_object(rng, free[int(rng.integers(len(free)))])
        return scene.with_objects(objects + [new]), f"then {object_phrase(new, rng)} appears ."
    del objects[i]
    return scene.with_objects(objects), f"then {name} disappears ."


def story(seed: int) -> Story:
    """Five scenes where one thing changes per step, with a sentence per step."""
    rng = scene_rng(seed, _STORY_STREAM)
    current = sample_scene(seed, max_objects=2)
    scenes, sentences = [current], [caption(current, rng)]
    for _ in range(STORY_STEPS - 1):
        current, sentence = _change(current, rng)
        scenes.append(current)
        sentences.append(sentence)
    return Story(seed, tuple(scenes), tuple(sentences))


# ------------------------------------------------------------------------------------- dialogues


@dataclass(frozen=True)
class Dialogue:
    seed: int
    scene: Scene
    caption: str  # brief, like VisDial's: it names one object, the rounds reveal the rest
    rounds: tuple[tuple[str, str], ...]  # (question, answer)


def _object_at(scene: Scene, cell) -> WorldObject | None:
    return next((o for o in scene.objects if (o.row, o.col) == cell), None)


def _nameable_without_position(obj: WorldObject, scene: Scene) -> bool:
    return " at the " not in reference(obj, scene)


def _question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    kind = int(rng.integers(6))
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    if kind == 0:
        n = len(scene.objects)
        return "how many objects are there ?", f"there {'is' if n == 1 else 'are'} {count_phrase(n)} ."
    if kind == 1:
        shape, colour = SHAPES[int(rng.integers(3))], COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
        if rng.random() < 0.5:  # ask about a real object half of the time, else usually absent
            shape, colour = obj.shape, obj.colour
        found = [o for o in scene.objects if (o.shape, o.colour) == (shape, colour)]
        answer = f"yes , {join([object_phrase(o, rng) for o in found])} ." if found else "no ."
        return f"is there a {colour} {shape} ?", answer
    if kind == 2:  # named by shape and place, never by colour: that would give the answer away
        unique = sum(o.shape == obj.shape for o in scene.objects) == 1
        name = f"the {obj.shape}" if unique else f"the {obj.shape} at the {obj.position}"
        return f"what colour is {name} ?", f"{name} is {obj.colour} ."
    if kind == 3 and _nameable_without_position(obj, scene):
        return f"where is {reference(obj, scene)} ?", f"it is at the {obj.position} ."
    if kind == 4:
        cell = POSITIONS[int(rng.integers(len(POSITIONS)))]
        there = _object_at(scene, cell)
        answer = f"{object_phrase(there, rng)} ." if there else "nothing ."
        return f"what is at the {position_phrase(*cell)} ?", answer
    size = str(rng.choice(["small", "large"]))
    yes = obj.size == size
    word = SIZE_WORDS[size][0]
    return f"is {reference(obj, scene)} {word} ?", ("yes" if yes else "no") + f" , it is {obj.size} ."


def dialogue(seed: int, rounds: int = 10) -> Dialogue:
    rng = scene_rng(seed, _DIALOGUE_STREAM)
    scene = sample_scene(seed)
    first = scene.objects[int(rng.integers(len(scene.objects)))]
    brief = f"a picture with a {first.colour} {first.shape}"
    seen, qa = set(), []
    for _ in range(rounds * 20):  # draw until `rounds` distinct questions (always enough: 6 kinds x objects)
        q, a = _question(scene, rng)
        if q not in seen:
            seen.add(q)
            qa.append((q, a))
        if len(qa) == rounds:
            break
    return Dialogue(seed, scene, brief, tuple(qa))


# ------------------------------------------------------------------------------ VQA + rationale


@dataclass(frozen=True)
class VQAItem:
    seed: int
    scene: Scene
    question: str
    answer: str
    rationale: str  # the gold explanation, restating the evidence for the answer
    kind: str  # colour | shape | position | size | count | exists


VQA_KINDS = ("colour", "shape", "position", "size", "count", "exists")


def vqa_item(seed: int, kind: str | None = None) -> VQAItem:
    rng = scene_rng(seed, _VQA_STREAM)
    scene = sample_scene(seed)
    if kind is None:
        kind = VQA_KINDS[int(rng.integers(len(VQA_KINDS)))]
    obj = scene.objects[int(rng.integers(len(scene.objects)))]
    if kind == "position" and not _nameable_without_position(obj, scene):
        kind = "colour"  # asking where 'the red circle at the top' is would give the answer away
    at = f"{obj.shape} at the {obj.position}"
    if kind == "colour":
        q, a, r = f"what colour is the {at} ?", obj.colour, f"the {at} is {obj.colour}"
    elif kind == "shape":
        q, a = f"what shape is at the {obj.position} ?", obj.shape
        r = f"there is a {obj.size} {obj.colour} {at}"
    elif kind == "position":
        ref = reference(obj, scene)
        q, a, r = f"where is {ref} ?", obj.position, f"{ref} is at the {obj.position}"
    elif kind == "size":
        q, a, r = f"what size is the {at} ?", obj.size, f"the {at} is {obj.size}"
    elif kind == "count":
        q, a = "how many objects are there ?", NUMBER_WORDS[len(scene.objects)]
        be = "there is" if len(scene.objects) == 1 else "there are"
        r = f"{be} {join([object_phrase(o, rng) for o in scene.objects])}"
    elif kind == "exists":
        shape, colour = SHAPES[int(rng.integers(3))], COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
        if rng.random() < 0.5:
            shape, colour = obj.shape, obj.colour
        found = [o for o in scene.objects if (o.shape, o.colour) == (shape, colour)]
        q, a = f"is there a {colour} {shape} ?", "yes" if found else "no"
        r = ("there is " + join([object_phrase(o, rng) for o in found])) if found else f"there is no {colour} {shape}"
    else:
        raise ValueError(f"unknown VQA kind {kind!r}; kinds are {', '.join(VQA_KINDS)}")
    return VQAItem(seed, scene, q, a, r, kind)


# ------------------------------------------------------------------ the text conventions of questions
# One home for how the microworld writes questions, answers and rationales: the LM's corpus, the
# methods' prompts, the critics and the metrics all read and write them through these.
SENTENCE_ENDS = (".", "!", "#")  # every caption style ends its first sentence with one of these


def qa_turn(question: str, answer: str | None = None) -> str:
    """One question/answer round: 'q : <question> a : <answer>' (the answer left open if None)."""
    text = f"q : {question} a :"
    return text if answer is None else f"{text} {answer}"


def dialogue_text(talk: Dialogue, rounds: int) -> str:
    """A dialogue's caption and its first `rounds` question/answer rounds, as the LM's corpus writes them."""
    return " ".join([f"{talk.caption} ."] + [qa_turn(q, a) for q, a in talk.rounds[:rounds]])


def vqa_prompt(question: str, answer: str | None = None) -> str:
    """The ILLUME prompt shape: 'q : ... a : <answer> because' (the rationale follows)."""
    return qa_turn(question) if answer is None else f"{qa_turn(question, answer)} because"


def explained(answer: str, rationale: str) -> str:
    """An answer and its rationale as the model writes them: '<answer> because <rationale> .'."""
    return f"{answer} because {rationale} ."


def split_answer(text: str) -> tuple[str, str | None]:
    """'red because the circle ... is red .' -> ('red', 'the circle ... is red')."""
    answer, sep, rationale = text.partition(" because ")
    return answer.strip(), (rationale.replace(" .", "").strip() if sep else None)


def rationale_true(rationale: str | None, scene: Scene) -> bool:
    """True if the rationale makes at least one claim and every claim is true of the scene."""
    if not rationale:
        return False
    claims = parse(rationale).claims
    if not claims:
        return False
    return all(any(c.matches(o) for o in scene.objects) != c.negated for c in claims)
