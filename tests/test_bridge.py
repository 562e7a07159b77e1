"""The shared bridge: mapping, splicing into inputs_embeds, batched KV-cached generation."""
import pytest
import torch

from vlbridge import backbones, world
from vlbridge import bridge as br
from vlbridge.bridge import Embeds, Text

torch.manual_seed(0)


@pytest.fixture(scope="module")
def lm():
    return backbones.load_lm("micro-lm-smoke")


def test_bridge_maps_to_k_lm_embeddings_and_checks_its_input():
    for kind in ("linear", "mlp"):
        bridge = br.Bridge(16, 32, tokens=3, kind=kind)
        assert bridge(torch.randn(5, 16)).shape == (5, 3, 32)
    with pytest.raises(ValueError, match=r"bridge expects embeddings \[batch, 16\], got \(5, 8\)"):
        br.Bridge(16, 32)(torch.randn(5, 8))
    with pytest.raises(ValueError, match="'linear' or 'mlp'"):
        br.Bridge(16, 32, kind="conv")


def test_assemble_splices_vectors_and_records_tags_and_targets(lm):
    image = torch.randn(2, lm.embed_dim)
    batch = br.assemble(lm, [[Embeds(image, tag="image"), Text("a red circle .", learn=True)],
                             [Text("a square", tag="end")]])
    n_text = len(br.token_ids(lm.tokenizer, "a red circle ."))
    assert batch.inputs_embeds.shape == (2, 1 + 2 + n_text, lm.embed_dim)
    assert torch.equal(batch.inputs_embeds[0, 1:3], image)  # after <bos>
    assert batch.tags[0]["image"] == [1, 2] and batch.tags[1]["end"] == [2]
    assert (batch.targets[0, 3:] >= 0).all() and (batch.targets[0, :3] == br.IGNORE).all()
    assert batch.attention_mask[1].tolist() == [1, 1, 1] + [0] * (batch.inputs_embeds.shape[1] - 3)
    left = br.assemble(lm, [[Text("a")], [Text("a red circle")]], pad_left=True)
    assert left.attention_mask[0, -1] == 1 and left.position_ids[0, -1] == 1 and left.position_ids[1, -1] == 3
    with pytest.raises(TypeError, match="Text, Tokens and Embeds"):
        br.assemble(lm, [["plain str"]])
    with pytest.raises(ValueError, match="empty batch"):
        br.assemble(lm, [])


def test_token_segments_equal_the_text_they_encode(lm):
    """A sampled continuation is fed back as its ids (Tokens): the same embeddings, targets and tag
    positions as the text that tokenizes to those ids."""
    ids = tuple(br.token_ids(lm.tokenizer, "a red circle ."))
    as_text = br.assemble(lm, [[Text("there is"), Text("a red circle .", learn=True)]])
    as_ids = br.assemble(lm, [[Text("there is"), br.Tokens(ids, learn=True, tag="continuation")]])
    assert torch.equal(as_text.inputs_embeds, as_ids.inputs_embeds)
    assert torch.equal(as_text.targets, as_ids.targets)
    start = 1 + len(br.token_ids(lm.tokenizer, "there is"))
    assert as_ids.tags[0]["continuation"] == list(range(start, start + len(ids)))
    with pytest.raises(ValueError, match="no ids"):
        br.assemble(lm, [[br.Tokens(())]])


def test_spliced_text_embeddings_give_the_lm_its_own_logits(lm):
    ids = lm.tokenizer("a red circle at the top", return_tensors="pt").input_ids[:, :-1]  # <bos> text, no <eos>
    direct = lm.model(input_ids=ids).logits
    _, logits = br.forward(lm, br.assemble(lm, [[Text("a red circle at the top")]]))
    assert torch.allclose(direct, logits, atol=1e-5)


def test_batched_left_padded_generation_equals_one_at_a_time(lm):
    prompts = [[Text("there is")], [Embeds(torch.randn(3, lm.embed_dim) * 0.02), Text("we can see a")]]
    together = br.generate(lm, br.assemble(lm, prompts, pad_left=True), 12)
    alone = [br.generate(lm, br.assemble(lm, [p], pad_left=True), 12) for p in prompts]
    assert together.texts == [a.texts[0] for a in alone]
    assert torch.allclose(together.logprobs[0, :len(alone[0].tokens[0])], alone[0].logprobs[0], atol=1e-4)
    assert all(t[-1] in (lm.tokenizer.convert_tokens_to_ids("."), lm.tokenizer.eos_token_id) or len(t) == 12
               for t in together.tokens)


def test_target_logprobs_sum_the_learned_tokens(lm):
    batch = br.assemble(lm, [[Text("q : what colour is it ? a :"), Text("red .", learn=True)]])
    _, logits = br.forward(lm, batch)
    manual = 0.0
    for t in range(batch.targets.shape[1] - 1):
        if batch.targets[0, t + 1] != br.IGNORE:
            manual += logits[0, t].log_softmax(-1)[batch.targets[0, t + 1]].item()
    assert br.target_logprobs(logits, batch.targets).item() == pytest.approx(manual, abs=1e-4)
    with pytest.raises(ValueError, match="no targets"):
        br.next_token_loss(logits, torch.full_like(batch.targets, br.IGNORE))


def test_extra_tokens_extend_the_vocabulary_without_touching_the_lm(lm):
    vocab = lm.model.get_input_embeddings().num_embeddings
    extra = br.ExtraTokens(["[RET]"], lm.embed_dim, vocab)
    assert extra.id("[RET]") == vocab
    batch = br.assemble(lm, [[Text("a red circle ."), Embeds(extra.embedding("[RET]"), tag="ret",
                                                               target=extra.id("[RET]"))]])
    hidden, logits = br.forward(lm, batch, extra)
    assert logits.shape[-1] == vocab + 1
    br.next_token_loss(logits, batch.targets).backward()
    assert extra.input.grad is not None and extra.output.grad is not None
    assert all(p.grad is None for p in lm.model.parameters())
    assert br.decode(lm, [*br.token_ids(lm.tokenizer, "a red circle"), vocab], extra) == "a red circle [RET]"


def test_extra_tokens_start_at_the_given_input_embedding():
    start = torch.arange(8.0)
    exact = br.ExtraTokens(["[A]", "[B]"], 8, 100, init_std=0.0, input_init=start)
    assert torch.equal(exact.input.data, start.expand(2, 8))
    noisy = br.ExtraTokens(["[A]"], 8, 100, init_std=0.02)  # no start given: noise around zero
    assert noisy.input.abs().max() < 0.2 and noisy.input.abs().sum() > 0


def test_train_loop_clips_each_group_of_parameters_on_its_own():
    from vlbridge.training import train_loop

    big, small = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    model = torch.nn.Module()
    model.big, model.small = big, small
    seen = {}

    def loss_fn(step):  # gradients 1000 and 0.5: joint clipping to norm 1 would shrink the small one to ~0.0005
        return 1000 * big.sum() + 0.5 * small.sum()

    class Recorder(torch.optim.SGD):
        def step(self, closure=None):
            seen["big"], seen["small"] = big.grad.item(), small.grad.item()
            return super().step(closure)

    train_loop(model, Recorder([big, small], lr=0.1), 1, 0, loss_fn, "t", clip_groups=[[big], [small]])
    assert seen == {"big": pytest.approx(1.0), "small": pytest.approx(0.5)}
    train_loop(model, Recorder([big, small], lr=0.1), 1, 0, loss_fn, "t")
    assert seen["big"] == pytest.approx(1.0, abs=1e-3) and seen["small"] == pytest.approx(0.0005, rel=1e-3)


def test_stop_words_match_byte_level_bpe_tokens_with_their_space_mark(lm):
    from tiny_models import byte_level_bpe

    bpe = byte_level_bpe([world.caption(s, world.scene_rng(s.seed, 0)) for s in world.scenes(0, 200)])
    vocab = bpe.get_vocab()
    assert "Ġ." in vocab  # captions end in " .": the BPE learns it as one token
    assert br.stop_token_ids(bpe, (".",)) == {vocab["."], vocab["Ġ."], bpe.eos_token_id}
    assert br.stop_token_ids(lm.tokenizer, (".", 7)) == {lm.tokenizer.convert_tokens_to_ids("."), 7,
                                                         lm.tokenizer.eos_token_id}
    with pytest.raises(ValueError, match="stop word 'zebra' is not a token"):
        br.stop_token_ids(lm.tokenizer, ("zebra",))


def test_assemble_by_length_batches_the_rows_assemble_makes_sorted_by_length(lm):
    sequences = [[Text("a red circle and a big blue square at the top left .", learn=True)],
                 [Text("a circle")], [Embeds(torch.randn(3, lm.embed_dim), tag="image"), Text("a square .")],
                 [Text("a small green triangle .", tag="end")], [Text("a red")]]
    batches = list(br.assemble_by_length(lm, sequences, 2))
    order = [i for rows, _ in batches for i in rows]
    lengths = [br.assemble(lm, [sequences[i]]).attention_mask.shape[1] for i in order]
    assert sorted(order) == list(range(5)) and lengths == sorted(lengths)
    assert [len(rows) for rows, _ in batches] == [3, 2]  # nearly equal sizes, shortest first
    for rows, batch in batches:  # each padded only to its own longest, row for row what assemble makes
        alone = br.assemble(lm, [sequences[i] for i in rows])
        assert batch.attention_mask.shape[1] == max(lengths[order.index(i)] for i in rows)
        for got, want in zip((batch.inputs_embeds, batch.attention_mask, batch.position_ids, batch.targets),
                             (alone.inputs_embeds, alone.attention_mask, alone.position_ids, alone.targets)):
            assert torch.equal(got, want)
        assert batch.tags == alone.tags
    assert len(list(br.assemble_by_length(lm, sequences[:1], 4))) == 1  # no empty batches
    with pytest.raises(ValueError, match="at least one batch, got 5 sequences in 0 batches"):
        next(br.assemble_by_length(lm, sequences, 0))
