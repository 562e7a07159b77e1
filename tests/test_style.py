"""The style classifier that scores ESPER-Style's captions: accurate on held-out captions, whole or
cut where a captioner stops, deterministic, and strict about its input."""
import re

import pytest
import torch

from vlbridge import world
from vlbridge.eval import StyleClassifier, style_accuracy
from vlbridge.eval.style import CLASSES, default_style_classifier, style_training_set

HELD_OUT = 200  # scenes
FRESH_STREAM = 7  # a caption stream the training set does not draw from


@pytest.fixture(scope="module")
def classifier():
    return default_style_classifier(seed=0)


@pytest.fixture(scope="module")
def held_out():
    """One caption per class for each held-out scene, from fresh random streams."""
    texts, labels = [], []
    for scene in world.scenes(world.HELDOUT_START, HELD_OUT):
        rng = world.scene_rng(scene.seed, FRESH_STREAM)
        for label in CLASSES:
            texts.append(world.caption(scene, rng) if label == "plain" else world.styled_caption(scene, label, rng))
            labels.append(label)
    return texts, labels


def test_held_out_captions_are_classified_right(classifier, held_out):
    texts, labels = held_out
    # Measured 1.0 over these 1200 captions (and over 1800 from 300 scenes): each style's wrapping
    # words are its own. 0.95 is the bar; every class must clear it, not just the mean.
    assert style_accuracy(classifier, texts, labels) >= 0.95
    for label in CLASSES:
        mine = [t for t, y in zip(texts, labels) if y == label]
        assert style_accuracy(classifier, mine, [label] * len(mine)) >= 0.95, label


def test_captions_cut_at_the_first_stop_mark_are_still_classified_right(classifier, held_out):
    texts, labels = held_out
    # As a captioner writes them: up to and including the first '.', '!' or '#' ("today i saw ... ."
    # without "i loved it !"; "... #" without "picoftheday"). Measured 1.0; the bar is 0.9.
    cut = [re.match(r"[^.!#]*[.!#]", t).group(0) for t in texts]
    assert sum(c != t for c, t in zip(cut, texts)) >= HELD_OUT  # the cut does shorten many captions
    assert style_accuracy(classifier, cut, labels) >= 0.9


def test_plain_captions_are_plain_and_unknown_words_are_ignored(classifier):
    scene = world.sample_scene(world.HELDOUT_START + 5)
    assert classifier.predict([world.canonical_caption(scene)]) == ["plain"]
    styled = world.styled_caption(scene, "news", world.scene_rng(scene.seed, FRESH_STREAM))
    noisy = [styled + " zebra quokka", "zebra " + world.canonical_caption(scene)]
    assert classifier.predict(noisy) == ["news", "plain"]
    assert torch.equal(classifier.features(["zebra quokka"]), torch.zeros(1, len(classifier.vocabulary)))


def test_training_is_deterministic_and_only_on_training_seeds():
    texts, labels = style_training_set(range(0, 40), seed=3)
    assert style_training_set(range(0, 40), seed=3) == (texts, labels)
    assert len(texts) == 40 * len(CLASSES) * 2  # every class, whole and cut
    torch.manual_seed(0)
    untouched = torch.rand(3)
    torch.manual_seed(0)
    first, second = (StyleClassifier.train(texts, labels, steps=5, seed=3) for _ in range(2))
    assert torch.equal(torch.rand(3), untouched)  # its own generator: a chapter's later draws do not shift
    assert first.vocabulary == second.vocabulary
    assert torch.equal(first.linear.weight, second.linear.weight) and torch.equal(first.linear.bias, second.linear.bias)
    other = StyleClassifier.train(texts, labels, steps=5, seed=4)  # the seed does reach the weights
    assert not torch.equal(first.linear.weight, other.linear.weight)
    with pytest.raises(ValueError, match=rf"training seeds in \[0, {world.HELDOUT_START}\); got {world.HELDOUT_START}"):
        style_training_set(range(world.HELDOUT_START, world.HELDOUT_START + 10))
    with pytest.raises(ValueError, match="train_scenes is empty"):
        style_training_set(range(0))


def test_bad_input_is_a_clear_error(classifier):
    with pytest.raises(ValueError, match="got no texts"):
        StyleClassifier.train([], [])
    with pytest.raises(ValueError, match="unknown style label 'poem'"):
        StyleClassifier.train(["a red circle .", "draw a red circle ."], ["plain", "poem"])
    with pytest.raises(ValueError, match="got 2 texts but 1 labels"):
        StyleClassifier.train(["a red circle .", "draw a red circle ."], ["plain"])
    with pytest.raises(ValueError, match="steps must be >= 1"):
        StyleClassifier.train(["a red circle ."], ["plain"], steps=0)
    with pytest.raises(ValueError, match="got no texts"):
        classifier.predict([])
    with pytest.raises(ValueError, match="wrap it"):
        classifier.predict("draw a red circle .")
    with pytest.raises(ValueError, match=r"texts\[1\] is NoneType"):
        classifier.predict(["draw a red circle .", None])
    with pytest.raises(ValueError, match="unknown style label 'News'"):
        style_accuracy(classifier, ["breaking news : a red circle spotted today ."], ["News"])
    with pytest.raises(ValueError, match="got 1 texts but 2 labels"):
        style_accuracy(classifier, ["draw a red circle ."], ["instruction", "plain"])
