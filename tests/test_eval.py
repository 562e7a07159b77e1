"""Metrics checked against small cases computed by hand."""
import math

import pytest
import torch

from vlbridge import world
from vlbridge.critics import WorldCritic, world_items
from vlbridge.eval import (
    attribute_counts,
    caption_scores,
    grounded_scores,
    mean_reciprocal_rank,
    meteor_unavailable,
    ndcg,
    recall_at_k,
    vqa_scores,
)
from vlbridge.world.scene import Scene, WorldObject

RED_CIRCLE_TOP_LEFT = WorldObject("circle", "red", "large", 0, 0)
BLUE_SQUARE_CENTER = WorldObject("square", "blue", "small", 1, 1)
SCENE = Scene((RED_CIRCLE_TOP_LEFT, BLUE_SQUARE_CENTER))


def test_recall_counts_any_relevant_candidate_and_ties_count_against():
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.2, 0.1], [0.1, 0.3, 0.8]])
    relevant = torch.tensor([[False, False, True], [False, True, False], [True, False, True]])
    # query 0: relevant at rank 2; query 1: tied with an irrelevant one -> rank 2; query 2: rank 1
    assert recall_at_k(sim, relevant, ks=(1, 2)) == {1: pytest.approx(1 / 3), 2: pytest.approx(1.0)}
    assert mean_reciprocal_rank(sim, relevant) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    with pytest.raises(ValueError, match="at least one relevant"):
        recall_at_k(sim, torch.zeros(3, 3, dtype=torch.bool))


def test_ndcg_matches_the_formula():
    sim = torch.tensor([[0.3, 0.2, 0.1]])
    relevance = torch.tensor([[0.0, 1.0, 1.0]])
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert ndcg(sim, relevance) == pytest.approx(dcg / ideal)


def test_grounded_scores_of_exact_partial_and_wrong_captions():
    exact = "there is a big red circle at the top left and a small blue square in the center ."
    assert attribute_counts(exact, SCENE).f1 == 1.0
    wrong_colour = "a large green circle at the top left ."  # 3 of 4 attributes right; 1 of 2 objects
    counts = attribute_counts(wrong_colour, SCENE)
    assert (counts.agreed, counts.claimed, counts.true) == (3, 4, 8)
    partial = "a square"  # states only a shape, and it is right
    counts = attribute_counts(partial, SCENE)
    assert (counts.agreed, counts.claimed, counts.true) == (1, 1, 8)
    assert grounded_scores([exact, partial], [SCENE, SCENE]) == pytest.approx(
        {"precision": 9 / 9, "recall": 9 / 16, "f1": 2 * (9 / 16) / (1 + 9 / 16)})


def test_claims_are_matched_to_distinct_objects():
    twice = "a large red circle at the top left and a large red circle at the top left ."
    counts = attribute_counts(twice, SCENE)
    assert (counts.agreed, counts.claimed) == (4 + 0, 8)  # the second claim cannot reuse the circle


def test_scoring_can_leave_out_attributes_a_modality_cannot_carry():
    caption = "a large green circle at the top left ."
    counts = attribute_counts(caption, SCENE, attributes=("shape", "size", "position"))
    assert (counts.agreed, counts.claimed, counts.true) == (3, 3, 6)
    with pytest.raises(ValueError, match="unknown attributes"):
        attribute_counts(caption, SCENE, attributes=("texture",))


def test_caption_scores_are_perfect_for_a_reference_and_lower_otherwise():
    scene = world.sample_scene(3)
    refs = [world.caption(scene, world.scene_rng(3, 100 + k)) for k in range(5)]
    perfect = caption_scores([refs[0]], [refs])
    assert perfect["bleu4"] == pytest.approx(1.0, abs=1e-6) and perfect["rouge_l"] == pytest.approx(1.0)
    worse = caption_scores(["a small green triangle at the bottom ."], [refs])
    assert worse["bleu4"] < 0.5 and worse["rouge_l"] < perfect["rouge_l"]
    with pytest.raises(ValueError, match="one list of references per candidate"):
        caption_scores(["x"], [])


@pytest.mark.skipif(meteor_unavailable() is not None, reason="METEOR needs Java")
def test_meteor_rewards_matching_words_and_stems():
    refs = [["there is a large red circle at the top left ."]] * 3
    scores = [caption_scores([c], [r], meteor=True)["meteor"] for c, r in zip(
        ["there is a large red circle at the top left .", "there is a large red circles at the top .", "no ."], refs)]
    assert scores[0] > 0.99 and 0.3 < scores[1] < scores[0] and scores[2] < 0.1
    assert "meteor" not in caption_scores(["x"], [["x"]])  # only when asked: it starts a Java process


def test_meteor_is_skipped_with_a_reason_when_java_is_missing(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert "no `java` is on PATH" in meteor_unavailable()
    assert "meteor" not in caption_scores(["a red circle ."], [["a red circle ."]], meteor=True)


def test_clipscore_is_the_papers_formula_and_prefers_the_right_caption():
    from vlbridge import backbones
    from vlbridge.eval import clip_scores

    clip = backbones.load_clip("micro-clip-smoke")
    scenes = world.scenes(world.HELDOUT_START, 40)
    images = clip.encode_images(world.render_array(scenes, clip.image_size))
    right = [world.canonical_caption(s) for s in scenes]
    scores = clip_scores(clip, images, right)
    cosine = (images * clip.encode_texts(right)).sum(1)
    assert torch.allclose(scores, 2.5 * cosine.clamp(min=0))  # w = 2.5, negative cosines count as 0
    assert (scores >= 0).all()
    # Another scene's caption fits worse on average, even for barely trained smoke backbones.
    assert scores.mean() > clip_scores(clip, images, right[1:] + right[:1]).mean()
    with pytest.raises(ValueError, match="40 images but 39 captions"):
        clip_scores(clip, images, right[:39])


def test_vqa_scores_on_known_answers():
    items = world_items(0, 2)
    right = [(items[0].answer, items[0].explanation), (items[1].answer, None)]
    assert vqa_scores(right, items, WorldCritic()) == {"answer_acc": 1.0, "rationale_acc": 0.5}
    assert vqa_scores([("zebra", None)] * 2, items) == {"answer_acc": 0.0}
    with pytest.raises(ValueError, match="one \\(answer, rationale\\) pair per item"):
        vqa_scores(right[:1], items)
