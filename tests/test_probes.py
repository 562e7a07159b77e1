"""probes.repeat_copy_accuracy reads the LM's prediction for each word of the second copy from the
right position: checked with two fake LMs over the smoke tokenizer, one that always predicts the true
next token and one that always predicts the same word."""
import types

import pytest
import torch

from vlbridge import backbones, world
from vlbridge import bridge as br
from vlbridge.probes import repeat_copy_accuracy

CAPTIONS = [world.canonical_caption(s) for s in world.scenes(world.HELDOUT_START, 20)]
KINDS = {"shape": world.SHAPES, "colour": world.COLOUR_NAMES}


@pytest.fixture(scope="module")
def tokenizer():
    return backbones.load_lm("micro-lm-smoke").tokenizer


def fake_lm(tokenizer, predict):
    """An LM whose logits at position i put all mass on predict(input_ids, i)."""
    vocab = len(tokenizer)

    def model(ids):
        logits = torch.zeros(1, ids.shape[1], vocab)
        for i in range(ids.shape[1]):
            logits[0, i, predict(ids[0], i)] = 1.0
        return types.SimpleNamespace(logits=logits)

    model.device = torch.device("cpu")
    return types.SimpleNamespace(tokenizer=tokenizer, model=model)


def test_an_lm_that_knows_the_next_token_copies_everything(tokenizer):
    oracle = fake_lm(tokenizer, lambda ids, i: ids[i + 1] if i + 1 < len(ids) else 0)
    assert repeat_copy_accuracy(oracle, CAPTIONS, KINDS) == {"shape": 1.0, "colour": 1.0}


def test_an_lm_that_always_says_circle_is_right_as_often_as_circles_occur(tokenizer):
    circle = br.token_ids(tokenizer, "circle")[0]
    always = fake_lm(tokenizer, lambda ids, i: circle)
    shapes = [c.shape for s in world.scenes(world.HELDOUT_START, 20) for c in s.objects]
    got = repeat_copy_accuracy(always, CAPTIONS, KINDS)
    assert got["shape"] == pytest.approx(shapes.count("circle") / len(shapes))
    assert got["colour"] == 0.0
