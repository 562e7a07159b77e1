"""The microworld: determinism, the parser's exact recovery, the grammar, sound, narratives."""
from dataclasses import replace

import numpy as np
import pytest

from vlbridge import world
from vlbridge.world.grammar import is_caption
from vlbridge.world.language import partial_caption

SCENES = world.scenes(0, 10_000)


def test_scenes_are_a_pure_function_of_the_seed():
    again = world.scenes(0, 200)
    assert again == SCENES[:200]
    assert np.array_equal(world.render_array(again[:20]), world.render_array(SCENES[:20]))
    assert world.sample_scene(1) != world.sample_scene(2)


def test_scenes_have_one_to_three_objects_in_distinct_cells():
    counts = {len(s.objects) for s in SCENES}
    assert counts == {1, 2, 3}
    assert all(len(s.occupied()) == len(s.objects) for s in SCENES)


def test_parser_recovers_every_object_of_every_caption_and_style():
    """10,000 scenes, a plain caption and all five styles each: the parse is exactly the scene."""
    for scene in SCENES:
        rng = world.scene_rng(scene.seed, 1)
        assert world.parse(world.caption(scene, rng)).objects == scene.keys
        for style in world.STYLES:
            text = world.styled_caption(scene, style, rng)
            assert world.parse(text).objects == scene.keys, text


def test_canonical_caption_is_a_function_of_the_scene_and_parses_back():
    for scene in world.scenes(0, 2000):
        text = world.canonical_caption(scene)
        assert is_caption(text)
        claims = world.parse(text).claims
        assert {(c.shape, c.colour, c.size, c.row, c.col) for c in claims} == scene.keys
        assert [(c.row, c.col) for c in claims] == sorted((c.row, c.col) for c in claims)  # reading order
        assert world.canonical_caption(scene.with_objects(reversed(scene.objects))) == text


def test_every_caption_template_is_used_and_parsed():
    texts = [world.caption(s, world.scene_rng(s.seed, 1)) for s in SCENES[:2000]]
    openers = {t.split(" a ")[0] for t in texts}
    assert len(openers) >= 6  # all templates, the counting one with several numbers
    assert any(" little " in t for t in texts) and any(" big " in t for t in texts)


def test_partial_captions_claim_only_what_is_true():
    for scene in SCENES[:2000]:
        text, claims = partial_caption(scene, world.scene_rng(scene.seed, 4))
        assert world.parse(text).claims == claims
        assert all(any(c.matches(o) for o in scene.objects) for c in claims)


def test_parser_reads_rationales_negation_and_counts():
    parsed = world.parse("the circle at the top left is red")
    assert parsed.claims == (world.Claim("circle", "red", None, 0, 0),)
    assert world.parse("the red square is at the bottom").claims == (world.Claim("square", "red", None, 2, 1),)
    assert world.parse("there is no green triangle").claims[0].negated
    assert world.parse("three objects : a big red circle at the top , ...").count == 3
    assert world.parse("nothing to see here .").claims == ()


def test_strict_grammar_accepts_captions_and_rejects_broken_ones():
    for scene in SCENES[:1000]:
        rng = world.scene_rng(scene.seed, 1)
        assert is_caption(world.caption(scene, rng))
        assert is_caption(world.styled_caption(scene, "news", rng), styles=True)
    assert not is_caption("there is a large red circle at the top left a small blue circle at the top .")
    assert not is_caption("there is a large red at the top left .")
    assert not is_caption("there is a large red circle at the .")


def test_colour_is_silent_and_everything_else_is_audible():
    scene = next(s for s in SCENES if len(s.objects) == 2)
    wave = world.render_sound(scene)
    assert wave.shape == (2, int(world.SAMPLE_RATE * 0.5)) and wave.dtype == np.float32
    recoloured = scene.with_objects([replace(o, colour="white") for o in scene.objects])
    assert np.array_equal(world.render_sound(recoloured), wave)
    for change in (dict(shape="square" if scene.objects[0].shape != "square" else "circle"),
                   dict(size="small" if scene.objects[0].size == "large" else "large")):
        changed = scene.with_objects([replace(scene.objects[0], **change), *scene.objects[1:]])
        assert not np.array_equal(world.render_sound(changed), wave), change


def test_log_mel_has_the_expected_shape():
    mel = world.log_mel(world.render_sound(SCENES[0]))
    assert mel.shape[:2] == (2, 40) and np.isfinite(mel).all()


def test_stories_change_one_thing_per_step():
    for seed in range(300):
        told = world.story(seed)
        assert len(told.scenes) == len(told.sentences) == 5
        assert world.parse(told.sentences[0]).objects == told.scenes[0].keys
        for before, after in zip(told.scenes, told.scenes[1:]):
            assert len(before.keys ^ after.keys) in (1, 2)  # appear/vanish: 1; a changed object: 2
        assert all(s.startswith("then ") for s in told.sentences[1:])


def test_dialogue_answers_are_true_and_questions_do_not_give_them_away():
    for seed in range(300):
        talk = world.dialogue(seed)
        assert len(talk.rounds) == 10 and len({q for q, _ in talk.rounds}) == 10
        for question, answer in talk.rounds:
            if question.startswith("what colour is"):
                colour = answer.split()[-2]
                assert colour not in question
                assert any(o.colour == colour for o in talk.scene.objects)


def test_vqa_rationales_are_true_of_the_scene():
    from vlbridge.world import rationale_true

    for seed in range(2000):
        item = world.vqa_item(seed)
        assert rationale_true(item.rationale, item.scene), item
        if item.kind == "position":
            assert item.answer not in item.question


def test_unknown_style_and_kind_are_clear_errors():
    with pytest.raises(ValueError, match="unknown style 'poem'; styles are news, blog"):
        world.styled_caption(SCENES[0], "poem", world.scene_rng(0))
    with pytest.raises(ValueError, match="unknown VQA kind 'why'"):
        world.vqa_item(0, "why")
