"""FROMAGe's training step and inference API on the smoke backbones (chapter 03 measures it)."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from vlbridge import backbones, world
from vlbridge.bridge import Text, Tokens, token_ids
from vlbridge.checkpoint import CheckpointError
from vlbridge.contracts import Backbones
from vlbridge.methods.fromage import RET, Fromage, FromageConfig


@pytest.fixture(scope="module")
def trained():
    clip, lm = backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")
    pool = world.scenes(0, 64)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    model = Fromage(clip, lm, FromageConfig(steps=30, batch_size=16, lr=1e-2, image_input="patches"))
    embeddings = model.features(world.render_array(pool, clip.image_size))
    log = model.fit(embeddings, lambda i, step: world.caption(pool[i], world.scene_rng(pool[i].seed, step)))
    return model, lm, embeddings, log, before


def test_training_lowers_every_loss_and_leaves_the_lm_untouched(trained):
    model, lm, _, log, before = trained
    for name in ("caption", "ret_text", "contrastive"):
        assert sum(log[name][-5:]) < sum(log[name][:5]), name
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert model.trainable_parameters() == sum(p.numel() for p in model.parameters())
    assert not any(p is q for p in model.parameters() for q in lm.model.parameters())


def test_inference_api_captions_retrieves_and_interleaves(trained):
    model, _, embeddings, _, _ = trained
    captions = model.caption(embeddings[:3])
    assert len(captions) == 3 and all(isinstance(c, str) and c for c in captions)
    queries = model.text_retrieval(["a red circle .", ["there is", embeddings[0], "a blue square ."]])
    assert queries.shape == (2, model.config.retrieval_dim)
    assert torch.allclose(queries.norm(dim=1), torch.ones(2), atol=1e-5)
    pieces = model.generate_interleaved(["a picture :", embeddings[1]], embeddings[:8], max_new_tokens=8)
    assert all(isinstance(p, str) or 0 <= p < 8 for p in pieces)
    with pytest.raises(ValueError, match=r"image features must be \[N, "):
        model.text_retrieval([["text", torch.zeros(3)]])
    with pytest.raises(TypeError, match="item 1 is int"):
        model.text_retrieval([["text", 3]])
    with pytest.raises(ValueError, match="item 0 is an empty string"):
        model.text_retrieval([""])


def test_without_ret_retrieval_reads_the_last_text_token(trained):
    model, lm, embeddings, _, _ = trained
    ablation = Fromage(model.clip, lm, FromageConfig(use_ret=False, image_input="patches"))
    assert ablation.text_retrieval(["a red circle ."]).shape == (1, ablation.config.retrieval_dim)
    with pytest.raises(ValueError, match="must end with text"):
        ablation.text_retrieval([["a picture", embeddings[0]]])
    assert RET in model.extra.names


def test_only_the_bridge_receives_gradients_and_clip_stays_bit_identical(trained):
    model, lm, features, _, _ = trained
    clip_before = {k: v.clone() for k, v in model.clip.model.state_dict().items()}
    captions = {i: world.canonical_caption(s) for i, s in enumerate(world.scenes(0, 4))}
    model.zero_grad()
    model.losses(features, captions, [(0,), (1, 2), (3,)])["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert all(p.grad is None for p in [*lm.model.parameters(), *model.clip.model.parameters()])
    assert all(torch.equal(clip_before[k], v) for k, v in model.clip.model.state_dict().items())


def test_captions_from_images_equal_captions_from_their_features(trained):
    model, _, _, _, _ = trained
    images = world.render_array(world.scenes(world.HELDOUT_START, 3), model.clip.image_size)
    assert model.caption(images) == model.caption(model.features(images))
    with pytest.raises(ValueError, match="PIL images must be RGB"):
        model.caption([world.render(world.sample_scene(0)).convert("L")])
    with pytest.raises(ValueError, match="4 channels|RGBA"):
        model.caption(np.zeros((2, 32, 32, 4), dtype=np.uint8))


def test_a_saved_bridge_reloads_identically_and_only_on_its_backbones(trained, tmp_path):
    model, lm, features, _, _ = trained
    model.save(tmp_path)
    reloaded = Fromage.load(tmp_path, Backbones(model.clip, lm))
    assert reloaded.config == model.config
    assert reloaded.caption(features[:4]) == model.caption(features[:4])
    assert torch.equal(reloaded.text_retrieval(["a red circle ."]), model.text_retrieval(["a red circle ."]))
    with pytest.raises(CheckpointError, match="trained on lm 'micro-lm-smoke', not 'micro-lm'"):
        Fromage.load(tmp_path, Backbones(model.clip, replace(lm, name="micro-lm")))


def test_retrieval_in_both_directions_and_likelihoods_agree_with_the_embeddings(trained):
    model, _, features, _, _ = trained
    texts = ["a red circle .", "there is a big blue square at the top left .", "a small green triangle ."]
    similarity = model.text_retrieval(texts) @ model.image_retrieval(features[:8]).T
    assert torch.equal(model.retrieve_images(texts, features[:8], k=3), similarity.topk(3, dim=1).indices)
    assert torch.equal(model.retrieve_texts(features[:8], texts, k=2), similarity.T.topk(2, dim=1).indices)
    # Summed log-likelihoods are negative and add up over a continuation split in two.
    whole = model.log_likelihood([[features[0], "there is"]], ["a red circle ."])
    assert whole.shape == (1,) and whole.item() < 0
    first = model.log_likelihood([[features[0], "there is"]], ["a red"])
    rest = model.log_likelihood([[features[0], "there is a red"]], ["circle ."])
    assert torch.allclose(whole, first + rest, atol=1e-4)


@pytest.mark.parametrize("use_ret", [True, False])
def test_micro_batches_sorted_by_length_take_the_one_batch_step(use_ret):
    """config.micro_batch changes how the LM reads the sequences (both kinds together, sorted by length,
    in several batches that each pad to their own longest), not the step: the same losses and
    gradients as one batch per kind of sequence, the contrastive loss still over the whole batch."""
    clip, lm = backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")
    pool = world.scenes(0, 8)
    captions = {i: world.caption(s, world.scene_rng(s.seed, 0)) for i, s in enumerate(pool)}
    pairs = [(0,), (1, 2), (3,), (4, 5), (6,), (2, 7), (1,)]  # interleaved ones, and images shown twice
    calls, outcomes = [], {}
    hook = lm.model.register_forward_pre_hook(lambda m, args, kwargs: calls.append(kwargs["attention_mask"]),
                                              with_kwargs=True)
    try:
        for micro_batch in (None, 3):
            torch.manual_seed(0)
            model = Fromage(clip, lm, FromageConfig(image_tokens=2, use_ret=use_ret, micro_batch=micro_batch))
            features = model.features(world.render_array(pool, clip.image_size))
            calls.clear()
            losses = model.losses(features, captions, pairs, captioned=5)
            losses["total"].backward()
            outcomes[micro_batch] = ({k: v.detach() for k, v in losses.items()}, [m.clone() for m in calls],
                                     {name: p.grad for name, p in model.named_parameters()})
    finally:
        hook.remove()
    (whole, whole_calls, whole_grads), (micro, micro_calls, micro_grads) = outcomes[None], outcomes[3]
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], rtol=1e-5, atol=1e-6, msg=name)
    for name in whole_grads:
        torch.testing.assert_close(micro_grads[name], whole_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # 5 captioning and 7 retrieval sequences: 4 forwards of 3, reading the same tokens with less padding
    assert [len(m) for m in whole_calls] == [5, 7] and [len(m) for m in micro_calls] == [3, 3, 3, 3]
    assert sum(m.sum() for m in micro_calls) == sum(m.sum() for m in whole_calls)
    assert sum(m.numel() for m in micro_calls) < sum(m.numel() for m in whole_calls)


def test_micro_batch_must_be_a_positive_number_of_sequences():
    clip, lm = backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")
    with pytest.raises(ValueError, match="micro_batch must be None or a number of sequences >= 1, got 0"):
        Fromage(clip, lm, FromageConfig(micro_batch=0))


def lm_batch_sizes(lm):
    """A hook recording the attention mask of every LM forward (to see which sequences it read)."""
    calls = []
    hook = lm.model.register_forward_pre_hook(lambda m, args, kwargs: calls.append(kwargs["attention_mask"]),
                                              with_kwargs=True)
    return calls, hook


def test_tied_ret_is_one_row_held_at_the_mean_token_norm_after_every_step(trained, tmp_path):
    """tied_ret, as main.py:504-521: [RET]'s output vector is its input embedding (no bias), and after
    each step its norm is the mean norm of the LM's token embeddings. Untied (the default) it has both."""
    model, lm, _, _, _ = trained
    assert {n for n, _ in model.named_parameters() if n.startswith("extra.")} == {"extra.input", "extra.output",
                                                                                   "extra.bias"}
    pool = world.scenes(0, 16)
    tied = Fromage(model.clip, lm, FromageConfig(tied_ret=True, image_input="embedding", steps=3, batch_size=4,
                                                 lr=1e-2, warmup_steps=1))
    assert {n for n, _ in tied.named_parameters() if n.startswith("extra.")} == {"extra.input"}
    hidden = torch.randn(2, lm.embed_dim)
    assert torch.equal(tied.extra.logits(hidden), hidden @ tied.extra.input.T)
    before = tied.extra.input.detach().clone()
    tied.fit(tied.features(world.render_array(pool, model.clip.image_size)),
             lambda i, step: world.canonical_caption(pool[i]))
    mean_norm = lm.model.get_input_embeddings().weight.norm(dim=1).mean()
    assert not torch.equal(tied.extra.input, before)  # trained, then put back on the sphere
    torch.testing.assert_close(tied.extra.input.norm(), mean_norm, rtol=1e-5, atol=0)
    tied.save(tmp_path)
    assert torch.equal(Fromage.load(tmp_path, Backbones(model.clip, lm)).extra.input, tied.extra.input)


def test_interleave_per_batch_pairs_adjacent_examples_for_captioning_only_one_coin_a_step(trained):
    """interleave_per="batch", as main.py:433-435: one coin a step; heads, the captioning loss reads
    adjacent examples concatenated (half as many sequences); the retrieval losses read single captions."""
    model, lm, features, _, _ = trained
    batch = Fromage(model.clip, lm, FromageConfig(interleave_per="batch", batch_size=4, retrieval_batch_size=6,
                                                  image_input="patches"))
    order = torch.Generator().manual_seed(0)
    draws = [batch.draw_batch_examples(len(features), order) for _ in range(20)]
    for singles, captioned in draws:
        assert len(singles) == 6 and all(len(example) == 1 for example in singles)
        assert captioned in (singles[:4], [singles[0] + singles[1], singles[2] + singles[3]])
    assert {len(captioned) for _, captioned in draws} == {2, 4}  # both sides of the coin come up
    singles, paired = next((s, c) for s, c in draws if len(c) == 2)
    captions = {i: world.canonical_caption(world.sample_scene(i)) for example in singles for i in example}
    calls, hook = lm_batch_sizes(lm)
    try:
        batch.losses(features, captions, singles, captioned=4, caption_examples=paired)
    finally:
        hook.remove()
    assert [len(mask) for mask in calls] == [2, 6]  # 2 concatenated captioning sequences, 6 retrieval ones
    with pytest.raises(ValueError, match="batch_size must be even, got 5"):
        Fromage(model.clip, lm, FromageConfig(interleave_per="batch", batch_size=5))
    with pytest.raises(ValueError, match="interleave_per must be one of example, batch, got 'step'"):
        Fromage(model.clip, lm, FromageConfig(interleave_per="step"))


def test_max_caption_tokens_cuts_captions_as_the_official_tokenizer_call(trained):
    """max_caption_tokens counts <bos> and [RET], as main.py:120 with data.py:107-123: a caption keeps
    max_caption_tokens - 2 tokens, in the captioning and the retrieval sequences alike."""
    model, lm, features, _, _ = trained
    text = "there is a big blue square at the top left ."
    ids = token_ids(lm.tokenizer, text)
    assert len(ids) > 3
    cut = Fromage(model.clip, lm, FromageConfig(max_caption_tokens=5, image_tokens=4, image_input="patches"))
    assert cut.caption_segment(text) == Tokens(tuple(ids[:3]), learn=True)
    assert model.caption_segment(text) == Text(text, learn=True)  # the default: as it is
    calls, hook = lm_batch_sizes(lm)
    try:
        cut.losses(features, {0: text}, [(0,)])
    finally:
        hook.remove()
    # <bos>, 4 image tokens, 3 caption tokens; <bos>, 3 caption tokens, [RET]
    assert [mask.sum().item() for mask in calls] == [8, 5]
    with pytest.raises(ValueError, match="max_caption_tokens must be None or >= 3"):
        Fromage(model.clip, lm, FromageConfig(max_caption_tokens=2))
    with pytest.raises(ValueError, match="it needs use_ret=True"):
        Fromage(model.clip, lm, FromageConfig(max_caption_tokens=24, use_ret=False))
