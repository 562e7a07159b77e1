"""The microworld: seeded scenes whose truth is known exactly, with images, sounds and language."""
from .language import canonical_caption, caption, object_phrase, reference, style_prompt, styled_caption
from .narrative import (
    SENTENCE_ENDS,
    VQA_KINDS,
    Dialogue,
    Story,
    VQAItem,
    dialogue,
    dialogue_text,
    explained,
    qa_turn,
    rationale_true,
    split_answer,
    story,
    vqa_item,
    vqa_prompt,
)
from .parser import Claim, Parse, parse
from .render import render, render_array
from .scene import HELDOUT_START, TEST_START, Scene, WorldObject, sample_scene, scene_rng, scenes
from .sound import SAMPLE_RATE, log_mel, render_sound
from .vocab import COLOUR_NAMES, SHAPES, SIZES, STYLES

__all__ = [
    "COLOUR_NAMES", "Claim", "Dialogue", "HELDOUT_START", "Parse", "SAMPLE_RATE", "SENTENCE_ENDS", "SHAPES", "SIZES",
    "STYLES", "Scene", "Story", "TEST_START", "VQAItem", "VQA_KINDS", "WorldObject", "canonical_caption", "caption",
    "dialogue", "dialogue_text", "explained", "log_mel", "object_phrase", "parse", "qa_turn", "rationale_true",
    "reference", "render", "render_array", "render_sound", "sample_scene", "scene_rng", "scenes", "split_answer",
    "story", "style_prompt", "styled_caption", "vqa_item", "vqa_prompt",
]
