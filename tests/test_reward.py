"""ESPER's objective, piece by piece against hand-computed numbers, then its training loop on the
smoke backbones: bad input, a non-finite reward, and the frozen LM and CLIP left bit-identical."""
import pytest
import torch

import vlbridge.methods.esper as reward
from vlbridge import backbones, bridge, training, world
from vlbridge.methods.esper import (
    Esper,
    EsperConfig,
    clip_reward,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_reward,
    gae,
    group_advantages,
    kl_per_token,
    masked_mean,
    whiten,
)
from vlbridge.methods.prefix import PLAIN_PROMPT, PrefixCaptioner, PrefixConfig


# ---------------------------------------------------------------------------- GAE
def test_gae_matches_the_hand_computed_recursion():
    rewards = torch.tensor([[-0.1, -0.2, 1.0]])  # a KL penalty at every token, the CLIP reward at the last
    values = torch.tensor([[0.5, 0.4, 0.3]])
    mask = torch.ones(1, 3)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # delta_t = r_t + V_{t+1} - V_t, with V_3 = 0 after the last token:
    #   delta_2 = 1.0 + 0   - 0.3 =  0.7    A_2 = 0.7
    #   delta_1 = -0.2 + 0.3 - 0.4 = -0.3   A_1 = -0.3 + 0.95 * 0.7   =  0.365
    #   delta_0 = -0.1 + 0.4 - 0.5 = -0.2   A_0 = -0.2 + 0.95 * 0.365 =  0.14675
    # returns = A + V = [0.64675, 0.765, 1.0]
    assert torch.allclose(advantages, torch.tensor([[0.14675, 0.365, 0.7]]), atol=1e-6)
    assert torch.allclose(returns, torch.tensor([[0.64675, 0.765, 1.0]]), atol=1e-6)
    # lambda = 1 is Monte Carlo: each return is the sum of the rewards still to come, whatever V is.
    _, monte_carlo = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(monte_carlo, torch.tensor([[0.7, 0.8, 1.0]]), atol=1e-6)


def test_gae_of_a_padded_row_ends_at_its_last_real_token():
    rewards = torch.tensor([[-0.1, -0.2, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    # The same episode padded to width 5 next to a full-width row, with garbage where the mask is 0:
    # neither the padding's rewards nor its values may leak into the real tokens.
    padded_rewards = torch.tensor([[-0.1, -0.2, 1.0, 7.0, -3.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    padded_values = torch.tensor([[0.5, 0.4, 0.3, 9.0, 2.0], [0.0, 0.1, 0.2, 0.3, 0.4]])
    mask = torch.tensor([[1.0, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    advantages, returns = gae(padded_rewards, padded_values, mask, gamma=1.0, lam=0.95)
    alone, alone_returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    assert torch.equal(advantages[0, 3:], torch.zeros(2))
    assert torch.allclose(advantages[:1, :3], alone, atol=1e-7)
    assert torch.allclose(returns[:1, :3], alone_returns, atol=1e-7)
    # The full row is untouched by its neighbour: with lambda 0.95 its last advantage is 0.5 - 0.4.
    assert advantages[1, 4].item() == pytest.approx(0.1)


# ---------------------------------------------------------------------------- GRPO's advantages
def test_group_advantages_normalise_within_each_group():
    # [1, 3]: mean 2, std 1 -> [-1, 1]. [10, 10]: a constant group carries no signal -> [0, 0].
    two = group_advantages(torch.tensor([1.0, 3.0, 10.0, 10.0]), group_size=2)
    assert torch.allclose(two, torch.tensor([-1.0, 1.0, 0.0, 0.0]), atol=1e-5)
    # [0, 1, 2, 5]: mean 2, deviations [-2, -1, 0, 3], population variance 14/4 = 3.5, std 1.8708.
    four = group_advantages(torch.tensor([0.0, 1.0, 2.0, 5.0]), group_size=4)
    assert torch.allclose(four, torch.tensor([-2.0, -1.0, 0.0, 3.0]) / 3.5 ** 0.5, atol=1e-5)
    # The same numbers in groups of 2 are [0, 1] and [2, 5]: each becomes [-1, 1].
    pairs = group_advantages(torch.tensor([0.0, 1.0, 2.0, 5.0]), group_size=2)
    assert torch.allclose(pairs, torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-5)
    assert torch.equal(group_advantages(torch.full((6,), 0.3), group_size=3), torch.zeros(6))


@pytest.mark.parametrize("size, group", [(4, 1), (4, 0), (6, 4), (5, 2)])
def test_group_advantages_reject_groups_that_cannot_be_compared(size, group):
    with pytest.raises(ValueError, match=f"got {size} returns in groups of {group}"):
        group_advantages(torch.zeros(size), group_size=group)


# ---------------------------------------------------------------------------- PPO's clipped losses
def test_clipped_policy_loss_by_hand_and_its_gradient_only_inside_the_clip_range():
    ratio = torch.tensor([[1.5, 0.5, 1.5, 0.5, 1.1, 3.0]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0, 2.0, 100.0]])
    mask = torch.tensor([[1.0, 1, 1, 1, 1, 0]])  # the last token is padding: huge numbers, no effect
    logp = ratio.log().requires_grad_()
    loss = clipped_policy_loss(logp, torch.zeros_like(logp), advantages, mask, clip_range=0.2)
    # Per token max(-A r, -A clip(r, 0.8, 1.2)):
    #   A=+1 r=1.5: max(-1.5, -1.2) = -1.2  clipped: no more credit for pushing further
    #   A=+1 r=0.5: max(-0.5, -0.8) = -0.5  not clipped: the full penalty for having moved away
    #   A=-1 r=1.5: max( 1.5,  1.2) =  1.5  not clipped
    #   A=-1 r=0.5: max( 0.5,  0.8) =  0.8  clipped
    #   A=+2 r=1.1: inside the range = -2.2
    # mean over the 5 real tokens: (-1.2 - 0.5 + 1.5 + 0.8 - 2.2) / 5 = -0.32
    assert loss.item() == pytest.approx(-0.32, abs=1e-6)
    loss.backward()
    # d(-A r)/d logp = -A r / 5 where the unclipped term wins, 0 where the clipped one does.
    expected = torch.tensor([[0.0, -0.5 / 5, 1.5 / 5, 0.0, -2.2 / 5, 0.0]])
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_clipped_value_loss_by_hand():
    old = torch.zeros(1, 5)
    values = torch.tensor([[1.0, 0.1, -0.5, 0.5, 50.0]])
    returns = torch.tensor([[1.0, 1.0, -1.0, -1.0, -50.0]])
    mask = torch.tensor([[1.0, 1, 1, 1, 0]])
    loss = clipped_value_loss(values, old, returns, mask, clip_range=0.2)
    # Per token max((v - R)^2, (old + clip(v - old, -0.2, 0.2) - R)^2):
    #   v= 1.0 R= 1: max(0,    (0.2 - 1)^2  = 0.64) = 0.64  a value that jumped is still penalised
    #   v= 0.1 R= 1: inside the range: 0.9^2          = 0.81
    #   v=-0.5 R=-1: max(0.25, (-0.2 + 1)^2 = 0.64) = 0.64
    #   v= 0.5 R=-1: max(2.25, (0.2 + 1)^2  = 1.44) = 2.25  moving the wrong way is not clipped
    # half the mean over 4 real tokens: 0.5 * (0.64 + 0.81 + 0.64 + 2.25) / 4 = 0.5425
    assert loss.item() == pytest.approx(0.5425, abs=1e-6)


def test_whiten_uses_only_the_masked_entries():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, -50.0, 7.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0]])
    white = whiten(x, mask)
    # Real entries 1, 2, 3: mean 2, population variance 2/3.
    assert torch.allclose(white, torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]) / (2 / 3) ** 0.5, atol=1e-5)
    real = white[mask.bool()]
    assert real.mean().abs() < 1e-6 and real.var(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------------- the smoke backbones
@pytest.fixture(scope="module")
def lm():
    return backbones.load_lm("micro-lm-smoke")


@pytest.fixture(scope="module")
def clip():
    return backbones.load_clip("micro-clip-smoke")


@pytest.fixture(scope="module")
def scenes_and_embeddings(clip):
    pool = world.scenes(0, 8)
    return pool, clip.encode_images(world.render_array(pool, clip.image_size))


def captioner_for(lm, clip, max_new_tokens: int = 4) -> PrefixCaptioner:
    torch.manual_seed(0)  # the mapper's initialisation
    return PrefixCaptioner(lm, PrefixConfig("micro-clip-smoke:embedding", clip.embed_dim,
                                            max_new_tokens=max_new_tokens))


def test_the_kl_reference_is_the_text_only_lm_and_is_zero_against_itself(lm, clip):
    captioner = captioner_for(lm, clip)
    tokens = [bridge.token_ids(lm.tokenizer, "a red circle ."),
              bridge.token_ids(lm.tokenizer, "a big blue square at the top left .")]
    prompts = [PLAIN_PROMPT] * 2
    logp, _, mask = captioner.continuation(None, prompts, tokens, temperature=0.7)
    again, _, _ = captioner.continuation(None, prompts, tokens, temperature=0.7)
    assert torch.equal(logp, again)
    assert torch.equal(kl_per_token(logp, again, mask), torch.zeros_like(logp))
    assert mask.sum(1).tolist() == [len(t) for t in tokens]
    # Against a plain pass of the LM over <bos> prompt caption, one caption at a time, at the same
    # temperature: the batched, right-padded reference gives the same numbers, 0 on the padding.
    for row, ids in enumerate(tokens):
        context = [lm.tokenizer.bos_token_id, *bridge.token_ids(lm.tokenizer, PLAIN_PROMPT)]
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([context + ids])).logits[0].float()
        chosen = (logits[len(context) - 1:-1] / 0.7).log_softmax(-1).gather(1, torch.tensor(ids)[:, None])[:, 0]
        assert torch.allclose(logp[row, :len(ids)], chosen, atol=1e-5)
        assert torch.equal(logp[row, len(ids):], torch.zeros(logp.shape[1] - len(ids)))
    assert torch.allclose(kl_per_token(logp, logp - 1.0, mask), mask, atol=1e-6)  # log pi - log ref, masked


def test_clip_reward_is_the_affine_cosine_and_prefers_true_captions(clip, scenes_and_embeddings):
    pool, embeddings = scenes_and_embeddings
    true = [world.canonical_caption(s) for s in pool]
    text = clip.encode_texts(true)
    cosine = (torch.nn.functional.normalize(text, dim=-1) * torch.nn.functional.normalize(embeddings, dim=-1)).sum(1)
    assert torch.allclose(clip_reward(clip, true, embeddings, scale=2.0, shift=0.1), 2.0 * (cosine - 0.1), atol=1e-5)
    # Each scene's own caption against the next scene's: the smoke CLIP gives 0.43 against 0.11 on
    # average (7 of 8 pairs the right way round), so a margin of 0.15 still leaves room.
    false = true[1:] + true[:1]
    assert clip_reward(clip, true, embeddings).mean() > clip_reward(clip, false, embeddings).mean() + 0.15
    # An empty caption (a sample that stopped at once) is scored as "." instead of crashing CLIP.
    assert torch.equal(clip_reward(clip, ["", "  "], embeddings[:2]), clip_reward(clip, [".", "."], embeddings[:2]))


def test_contrastive_reward_subtracts_the_mean_cosine_with_the_other_distinct_images(clip, scenes_and_embeddings):
    pool, embeddings = scenes_and_embeddings
    rows = [0, 0, 1, 2]  # GRPO repeats an image once per sample: the copy is not an "other" image
    texts = [world.canonical_caption(pool[i]) for i in rows]
    targets = embeddings[rows]
    cosines = clip.encode_texts(texts) @ targets.T  # both L2-normalised already
    others = {0: [2, 3], 1: [2, 3], 2: [0, 1, 3], 3: [0, 1, 2]}
    expected = torch.stack([3.0 * (cosines[i, i] - 0.1 - cosines[i, others[i]].mean()) for i in range(4)])
    got = clip_reward(clip, texts, targets, scale=3.0, shift=0.1, contrastive=True)
    assert torch.allclose(got, expected, atol=1e-5)
    # Row 0 and its copy read the same text against the same image: the same reward.
    assert got[0].item() == pytest.approx(got[1].item(), abs=1e-6)


def test_clip_reward_rejects_empty_and_mismatched_batches(clip, scenes_and_embeddings):
    _, embeddings = scenes_and_embeddings
    with pytest.raises(ValueError, match="empty batch of texts"):
        clip_reward(clip, [], embeddings[:0])
    with pytest.raises(ValueError, match="got 2 texts but 3 embeddings"):
        clip_reward(clip, ["a red circle .", "a blue square ."], embeddings[:3])


# ---------------------------------------------------------------------------- the training loop
def tiny(algorithm: str = "grpo", **changes) -> EsperConfig:
    """Two rollouts of 2 images x 2 samples: enough to take real optimiser steps in seconds."""
    return EsperConfig(**{"algorithm": algorithm, "steps": 2, "batch_size": 2, "samples": 2, "warmup_steps": 0,
                          **changes})


def test_config_errors_are_clear(lm, clip):
    captioner = captioner_for(lm, clip)
    with pytest.raises(ValueError, match="algorithm must be one of ppo, grpo, got 'reinforce'"):
        Esper(captioner, clip, tiny("reinforce"))
    with pytest.raises(ValueError, match="samples must be >= 2, got 1"):
        Esper(captioner, clip, tiny("grpo", samples=1))
    with pytest.raises(ValueError, match="prompts must map each prompt"):
        Esper(captioner, clip, tiny(prompts={}))
    with pytest.raises(ValueError, match="prompts must map each prompt"):
        Esper(captioner, clip, tiny(prompts={PLAIN_PROMPT: 1.0, "news :": -0.5}))
    Esper(captioner, clip, tiny("ppo", samples=1))  # PPO has a value head: one sample per image is fine


def test_fit_rejects_empty_or_mismatched_features(lm, clip, scenes_and_embeddings):
    _, embeddings = scenes_and_embeddings
    model = Esper(captioner_for(lm, clip), clip, tiny())
    with pytest.raises(ValueError, match="empty batch of features"):
        model.fit(embeddings[:0], embeddings[:0])
    with pytest.raises(ValueError, match="8 feature rows but 3 reward targets"):
        model.fit(embeddings, embeddings[:3])


def test_a_nan_reward_stops_training_with_the_model_as_after_the_previous_step(lm, clip, scenes_and_embeddings,
                                                                              monkeypatch):
    _, embeddings = scenes_and_embeddings
    calls = []

    def nan_on_second_call(*args, **kwargs):
        calls.append(1)
        scores = clip_reward(*args, **kwargs)
        return scores if len(calls) < 2 else scores.clone().fill_(float("nan"))

    monkeypatch.setattr(reward, "clip_reward", nan_on_second_call)
    model = Esper(captioner_for(lm, clip), clip, tiny(steps=3))
    snapshots = []

    def record(step, model):  # fit runs it before each step
        snapshots.append({k: v.clone() for k, v in model.captioner.mapper.state_dict().items()})

    with pytest.raises(FloatingPointError, match="step 1: the reward is not finite for 4 of 4 captions"):
        model.fit(embeddings, embeddings, callback=record)
    assert len(snapshots) == 2 and len(calls) == 2  # step 2 never started
    after = model.captioner.mapper.state_dict()
    # Step 0 did move the mapper (so the comparison below can tell), and step 1 did not.
    assert any(not torch.equal(snapshots[0][k], after[k]) for k in after)
    assert all(torch.equal(snapshots[1][k], after[k]) for k in after)


@pytest.mark.parametrize("algorithm, changes", [("grpo", {}), ("ppo", {"epochs": 2, "minibatches": 2})])
def test_training_moves_only_the_mapper_and_leaves_the_backbones_bit_identical(lm, clip, scenes_and_embeddings,
                                                                              algorithm, changes):
    _, embeddings = scenes_and_embeddings
    lm_before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    clip_before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    model = Esper(captioner_for(lm, clip), clip, tiny(algorithm, **changes))
    mapper_before = {k: v.clone() for k, v in model.captioner.mapper.state_dict().items()}
    value_before = None if model.value is None else {k: v.clone() for k, v in model.value.state_dict().items()}
    log = model.fit(embeddings, embeddings)
    assert all(torch.equal(lm_before[k], v) for k, v in lm.model.state_dict().items())
    assert all(torch.equal(clip_before[k], v) for k, v in clip.model.state_dict().items())
    assert not any(p.requires_grad for p in [*lm.model.parameters(), *clip.model.parameters()])
    # Only the mapper (and PPO's value head) are the Esper module's parameters, and they moved.
    trained = {id(p) for p in model.parameters()}
    assert not trained & {id(p) for p in [*lm.model.parameters(), *clip.model.parameters()]}
    assert any(not torch.equal(mapper_before[k], v) for k, v in model.captioner.mapper.state_dict().items())
    if algorithm == "ppo":
        assert isinstance(model.value, torch.nn.Linear) and model.value.in_features == lm.embed_dim
        assert any(not torch.equal(value_before[k], v) for k, v in model.value.state_dict().items())
        assert len(log["value"]) == 2
    else:
        assert model.value is None and "value" not in log
    assert log["steps"] == 2 and len(log["reward"]) == 2
    assert all(1 <= n <= 4 for n in log["length"])  # PrefixConfig(max_new_tokens=4)


# ---------------------------------------------------------------------------- the official code's options
def test_entropy_reward_by_hand():
    # Two captions, of 2 and 4 tokens (padded to 4), the text-only LM's log-probabilities of their tokens.
    ref_logp = torch.tensor([[-1.0, -9.0, 0.0, 0.0], [-2.0, -0.5, -4.0, -3.0]])
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    got = entropy_reward(ref_logp, mask, coef=0.1, threshold=10.0, bias=3.0)
    # Row 0, m = 2: a token is free up to 10 / 2 = 5 nats; 9 is 4 over: [3/2, 3/2 - 0.4], 0 on the padding.
    # Row 1, m = 4: free up to 2.5 nats; 4 is 1.5 over, 3 is 0.5 over: 3/4 less [0, 0, 0.15, 0.05].
    assert torch.allclose(got, torch.tensor([[1.5, 1.1, 0.0, 0.0], [0.75, 0.75, 0.6, 0.7]]), atol=1e-6)
    assert torch.equal(entropy_reward(ref_logp, mask, 0.0, 10.0, 0.0), torch.zeros(2, 4))


@pytest.mark.parametrize("logprob_temperature, expected", [(None, 0.7), (1.0, 1.0)])
def test_the_ratio_and_the_kl_use_the_logprob_temperature(lm, clip, scenes_and_embeddings, logprob_temperature,
                                                          expected):
    """The official code samples at 0.7 but scores the samples, in the PPO ratio and in the KL, at
    temperature 1 (train/code/policy.py:111-112); by default both use the policy's temperature."""
    _, embeddings = scenes_and_embeddings
    captioner = captioner_for(lm, clip, max_new_tokens=6)
    model = Esper(captioner, clip, tiny(temperature=0.7, logprob_temperature=logprob_temperature))
    features, prompts = embeddings[:4], [PLAIN_PROMPT] * 4
    roll = model.rollout(features, features, prompts, torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp, _, mask = captioner.continuation(features, prompts, roll["tokens"], expected)
        ref, _, _ = captioner.continuation(None, prompts, roll["tokens"], expected)
        other, _, _ = captioner.continuation(features, prompts, roll["tokens"], 1.7 - expected)  # the other one
    assert torch.allclose(roll["old_logp"], logp, atol=1e-6)
    assert not torch.allclose(roll["old_logp"], other, atol=1e-3)
    assert torch.allclose(roll["kl"], kl_per_token(logp, ref, mask).sum(1), atol=1e-5)
    # Before any step the policy is the one that sampled: each ratio is exactly 1 only if update scores
    # the tokens at the same temperature, and the clipped loss is then minus the mean advantage.
    losses = model.update(roll, features, prompts, torch.arange(4))
    expected_loss = -masked_mean(roll["advantages"], roll["mask"])
    assert losses["policy"].item() == pytest.approx(expected_loss.item(), abs=1e-6)


def test_exact_length_writes_max_new_tokens_without_end_of_text(lm, clip, scenes_and_embeddings):
    _, embeddings = scenes_and_embeddings
    captioner = captioner_for(lm, clip, max_new_tokens=6)
    features, prompts = embeddings.repeat(2, 1), [PLAIN_PROMPT] * 16
    eos = lm.tokenizer.eos_token_id
    # Hot samples of the untrained mapper: without the option, captions stop early (a sentence end or
    # end-of-text), so the test could fail.
    stopping = captioner.sample(features, prompts, 3.0, torch.Generator().manual_seed(0))
    assert min(len(t) for t in stopping.tokens) < 6
    exact = captioner.sample(features, prompts, 3.0, torch.Generator().manual_seed(0), exact_length=True)
    assert all(len(t) == 6 and eos not in t for t in exact.tokens)
    # The teacher-forced log-probabilities are those of the distribution sampled from (at T=1, as
    # generate returns them): end-of-text's share is spread over the other tokens, so each is higher.
    logp, _, mask = captioner.continuation(features, prompts, exact.tokens, exact_length=True)
    plain, _, _ = captioner.continuation(features, prompts, exact.tokens)
    assert torch.allclose(logp, exact.logprobs * mask, atol=1e-5)
    assert (logp >= plain - 1e-6).all() and (logp > plain + 1e-4).any()


def test_esper_passes_its_optimiser_options_to_adamw_and_each_step(lm, clip, scenes_and_embeddings, monkeypatch):
    _, embeddings = scenes_and_embeddings
    seen = []
    monkeypatch.setattr(reward, "adamw", lambda params, lr, decay, betas: seen.append((decay, betas)) or
                        training.adamw(params, lr, decay, betas))
    monkeypatch.setattr(reward, "optimizer_step", lambda opt, loss, groups, clip_grad, *a: seen.append(clip_grad) or
                        training.optimizer_step(opt, loss, groups, clip_grad, *a))
    Esper(captioner_for(lm, clip), clip, tiny(steps=1)).fit(embeddings, embeddings)
    assert seen == [(0.0, (0.9, 0.95)), 1.0]  # the book's: no decay, betas (0.9, 0.95), norm clipped to 1
    seen.clear()
    official = tiny(steps=1, weight_decay=0.01, betas=(0.9, 0.999), clip_grad=None)
    Esper(captioner_for(lm, clip), clip, official).fit(embeddings, embeddings)
    assert seen == [(0.01, (0.9, 0.999)), None]  # torch's AdamW defaults, no clipping (lightning.py:1139-1142)


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_the_entropy_reward_enters_the_returns_only_when_set(lm, clip, scenes_and_embeddings, algorithm):
    _, embeddings = scenes_and_embeddings
    features, prompts = embeddings[:4], [PLAIN_PROMPT] * 4
    rolls = {}
    for name, changes in (("off", {}), ("on", {"entropy_reward_coef": 0.1, "entropy_reward_threshold": 8.0,
                                                 "entropy_reward_bias": 3.0})):
        torch.manual_seed(0)  # the same value head
        model = Esper(captioner_for(lm, clip), clip, tiny(algorithm, samples=2, **changes))
        rolls[name] = model.rollout(features, features, prompts, torch.Generator().manual_seed(0))
    off, on = rolls["off"], rolls["on"]
    assert off["tokens"] == on["tokens"]  # the same captions: the reward does not change the sampling
    ref, _, mask = model.continuation(None, prompts, on["tokens"])
    bonus = entropy_reward(ref, mask, 0.1, 8.0, 3.0)
    if algorithm == "grpo":
        assert torch.equal(off["returns"], off["reward"] - 0.02 * off["kl"])  # the book's return, untouched
        assert torch.allclose(on["returns"], off["returns"] + bonus.sum(1), atol=1e-5)
    else:  # GAE's returns with gamma 1 and lambda < 1 mix in values; the first return's lambda=1 part is testable
        assert not torch.allclose(on["returns"], off["returns"])
        with torch.no_grad():
            values = model.value(model.captioner.continuation(features, prompts, on["tokens"])[1])[..., 0] * mask
        rewards = -0.02 * kl_per_token(on["old_logp"], ref, mask) + bonus
        rewards[torch.arange(4), mask.sum(1).long() - 1] += on["reward"]
        assert torch.allclose(on["returns"], gae(rewards, values, mask, 1.0, 0.95)[1], atol=1e-5)
