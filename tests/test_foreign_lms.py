"""LMs of architectures no stand-in uses (tiny_models.FOREIGN_LMS: Falcon, Mistral, Phi, GPT-Neo),
with a 256-position context and tokenizers that split microworld words into pieces, so a dialogue
is longer than the context: sequences are cut from the left, and FROMAGe reads long dialogues on
each of them. tools/foreign_lms.py runs chapters 3-5 on the same LMs."""
import math
from types import SimpleNamespace

import pytest
import torch

from tiny_models import FOREIGN_LMS, microworld_texts, save_foreign_lm
from vlbridge import backbones, world
from vlbridge import bridge as br
from vlbridge.bridge import Embeds, Text
from vlbridge.eval import ratio
from vlbridge.methods.fromage import Fromage, FromageConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TALKS = [world.dialogue(world.TEST_START + 10_000 + i) for i in range(3)]
LONG = [world.dialogue_text(t, 10) for t in TALKS]  # ~310 byte-level tokens each


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign-lms")
    texts = microworld_texts()
    return {arch: save_foreign_lm(root / arch, arch, texts=texts) for arch in FOREIGN_LMS}


@pytest.fixture(scope="module")
def lms(folders):
    return {arch: backbones.load_lm(str(folder)) for arch, folder in folders.items()}


def unlimited(lm):
    """The same LM with no context limit known: assemble then cuts nothing."""
    return SimpleNamespace(model=lm.model, tokenizer=lm.tokenizer, context_length=None)


def test_each_layout_loads_with_a_256_position_context_and_a_fine_tokenizer(lms):
    for arch, lm in lms.items():
        assert lm.context_length == 256, arch
        assert all(len(br.token_ids(lm.tokenizer, text)) > 256 for text in LONG), arch
    assert lms["falcon"].tokenizer.bos_token is None  # as falcon-7b's: sequences start with its eos
    # GPT-Neo's positions are learned: one past the context is the IndexError chapter 3 died of.
    with pytest.raises(IndexError):
        lms["gpt_neo"].model(input_ids=torch.zeros(1, 257, dtype=torch.long))


def test_a_long_sequence_keeps_its_bos_and_its_end(lms):
    lm = lms["gpt_neo"]
    ret = torch.randn(1, lm.embed_dim)
    sequence = [Text("the first words", tag="start"), Text(LONG[0], learn=True), Embeds(ret, tag="ret", target=7)]
    full = br.assemble(unlimited(lm), [sequence])
    cut = br.assemble(lm, [sequence])
    n = full.inputs_embeds.shape[1]
    assert n > 256 and cut.inputs_embeds.shape[1] == 256
    assert torch.equal(cut.inputs_embeds[0, 0], full.inputs_embeds[0, 0])  # <bos>
    assert torch.equal(cut.inputs_embeds[0, 1:], full.inputs_embeds[0, n - 255:])  # the most recent 255
    assert torch.equal(cut.targets[0, 1:], full.targets[0, n - 255:])
    assert cut.tags[0] == {"ret": [255]}  # "start" was cut; [RET] is last
    assert cut.position_ids[0].tolist() == list(range(256))
    # In a batch, a short sequence is untouched and the long one fills the context.
    both = br.assemble(lm, [[Text("a red circle .")], sequence])
    assert both.inputs_embeds.shape[1] == 256
    assert torch.equal(both.inputs_embeds[:1, :5], br.assemble(lm, [[Text("a red circle .")]]).inputs_embeds[:, :5])
    hidden, _ = br.forward(lm, cut)
    assert hidden.shape == (1, 256, lm.embed_dim)


def test_without_a_bos_token_sequences_start_with_eos(lms):
    lm = lms["falcon"]
    batch = br.assemble(lm, [[Text("a red circle .")]])
    assert torch.equal(batch.inputs_embeds[0, 0], lm.embed(torch.tensor(lm.tokenizer.eos_token_id)))


def test_exact_raises_naming_the_lengths(lms):
    lm = lms["gpt_neo"]
    n = 1 + len(br.token_ids(lm.tokenizer, LONG[0]))
    with pytest.raises(ValueError, match=rf"sequence 1 has {n} positions but the LM's context is 256; "
                                         rf"shorten it by {n - 256}"):
        br.assemble(lm, [[Text("short")], [Text(LONG[0])]], exact=True)
    with pytest.raises(ValueError, match="batch has 300 positions but the LM's context is 256"):
        big = br.assemble(unlimited(lm), [[Text(LONG[0])]])
        br.forward(lm, br.Batch(big.inputs_embeds[:, :300], big.attention_mask[:, :300],
                                big.position_ids[:, :300], big.targets[:, :300], big.tags))


def test_generation_stops_at_the_context(lms):
    lm = lms["gpt_neo"]
    prompt = br.assemble(lm, [[Text(LONG[0])]], pad_left=True)  # cut to the whole context
    out = br.generate(lm, prompt, 20, stop=())  # no stop word (only <eos>): the context stops it
    assert len(out.tokens[0]) == 1  # the one token the last position predicts
    short = br.assemble(lm, [[br.Tokens(tuple(br.token_ids(lm.tokenizer, LONG[0])[:250]))]], pad_left=True)
    room = 256 - 251 + 1
    written = br.generate(lm, short, 20, stop=()).tokens[0]
    assert len(written) == room or written[-1] == lm.tokenizer.eos_token_id
    with pytest.raises(ValueError, match=rf"20 new tokens after a prompt of {257 - room} positions do not fit "
                                         rf"the LM's context of 256 \(room for {room}\)"):
        br.generate(lm, short, 20, exact=True)


def test_fromage_reads_long_dialogues_and_captions_on_every_layout(lms):
    clip = SimpleNamespace(embed_dim=16)  # FROMAGe reads only the width of CLIP features given as tensors
    features = torch.randn(3, 16)
    for arch, lm in lms.items():
        torch.manual_seed(0)
        model = Fromage(clip, lm, FromageConfig(image_tokens=4, retrieval_dim=8))
        queries = model.text_retrieval(LONG)
        assert queries.shape == (3, 8) and torch.isfinite(queries).all(), arch
        with_image = model.text_retrieval([[features[i], text] for i, text in enumerate(LONG)])
        assert torch.isfinite(with_image).all(), arch
        answers = model.log_likelihood([[features[i], f"{text} q : what is it ?"] for i, text in enumerate(LONG)],
                                       ["a red circle ."] * 3)
        assert torch.isfinite(answers).all() and (answers < 0).all(), arch
        captions = model.caption(features, max_new_tokens=8)
        assert len(captions) == 3 and all(isinstance(c, str) for c in captions), arch
        pieces = model.generate_interleaved([features[0], LONG[0]], features, max_new_tokens=8)
        assert pieces and all(isinstance(p, (str, int)) for p in pieces), arch


def test_a_reference_score_of_zero_gives_no_ratio():
    """Chapter 4 divides F1 scores; a random-init LM scores 0 (its ZeroDivisionError, issue 18)."""
    assert ratio(0.5, 0.25) == 0.5 / 0.25
    assert math.isnan(ratio(0.3, 0.0)) and math.isnan(ratio(0.0, 0))
