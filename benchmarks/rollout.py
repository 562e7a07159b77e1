"""An ESPER rollout: sampling captions for a batch of images, as `Esper.fit` does every step, at the
sizes chapter 4 uses (its parameters under the default and gpu profiles). `PrefixCaptioner.sample`
(one batched, KV-cached generation for the whole rollout) against the naive way: one caption at a
time, re-running the LM on the whole sequence at every step (no KV cache), sampling with a seeded
generator. Rates are per caption (and per token: the two sides' captions differ in length), so the
naive side samples fewer captions (it is many times slower); both sample from the same image
features and the same mapper. Before timing, the naive loop is checked to be the same computation:
greedy, it writes exactly the captions the batched generation writes."""
import torch

from benchmarks.helpers import random_init_clip, random_init_lm
from benchmarks.timing import best_times
from vlbridge import backbones, world
from vlbridge import bridge as br
from vlbridge.book import config
from vlbridge.features import image_features
from vlbridge.methods.prefix import PLAIN_PROMPT, STOP, PrefixCaptioner, PrefixConfig


@torch.no_grad()
def sample_without_cache(captioner: PrefixCaptioner, features: torch.Tensor, max_new_tokens: int,
                         temperature: float, generator: torch.Generator | None = None) -> list[list[int]]:
    """Captions one at a time: for each row of features, [bos, prefix, prompt] through the LM, then at
    every step the whole sequence again (no KV cache); sampled from softmax(logits / temperature), or
    greedy at temperature 0; stopped, as `bridge.generate` stops, after a STOP token or <eos>."""
    lm = captioner.lm
    embedding = lm.model.get_input_embeddings()
    stop_ids = br.stop_token_ids(lm.tokenizer, STOP)
    captions = []
    for row in features:
        inputs = br.assemble(lm, captioner.contexts(row[None], [PLAIN_PROMPT])).inputs_embeds
        tokens = []
        for _ in range(max_new_tokens):
            logits = lm.model(inputs_embeds=inputs, logits_to_keep=1).logits[:, -1].float()
            if temperature > 0:
                choice = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)[:, 0]
            else:
                choice = logits.argmax(-1)
            tokens.append(int(choice))
            if tokens[-1] in stop_ids:
                break
            inputs = torch.cat([inputs, embedding(choice)[:, None]], 1)
        captions.append(tokens)
    return captions


def compare(label: str, clip, lm, params: dict, rollouts: int, naive_rollouts: int, repeats: int,
            warm_up: bool = True, seed: int = 0) -> None:
    """`params`: chapter 4's parameters under a profile (the sizes of its rollouts)."""
    image_input, max_new_tokens, temperature = params["image_input"], params["max_new_tokens"], params["temperature"]
    images = world.render_array(world.scenes(0, rollouts), clip.image_size)
    features = image_features(clip, images, image_input)  # computed once before training, outside the rollout
    torch.manual_seed(seed)
    captioner = PrefixCaptioner(lm, PrefixConfig(encoder=f"{clip.name}:{image_input}", feature_dim=features.shape[1],
                                                 prefix_tokens=params["prefix_tokens"], max_new_tokens=max_new_tokens))
    few = features[:naive_rollouts]
    greedy = captioner.sample(few, [PLAIN_PROMPT] * len(few)).tokens
    assert sample_without_cache(captioner, few, max_new_tokens, 0.0) == greedy, f"{label}: the two loops differ"

    lengths = {}

    def ours() -> None:
        out = captioner.sample(features, [PLAIN_PROMPT] * rollouts, temperature, torch.Generator().manual_seed(seed))
        lengths["ours"] = sum(map(len, out.tokens)) / rollouts

    def naive() -> None:
        out = sample_without_cache(captioner, few, max_new_tokens, temperature, torch.Generator().manual_seed(seed))
        lengths["naive"] = sum(map(len, out)) / naive_rollouts

    slow, fast = best_times([naive, ours], repeats, warm_up)
    slow_rate, fast_rate = naive_rollouts / slow, rollouts / fast
    per_token = (fast_rate * lengths["ours"]) / (slow_rate * lengths["naive"])
    print(f"ESPER rollout, {label}, prefix {params['prefix_tokens']}, up to {max_new_tokens} tokens at temperature "
          f"{temperature:g}: one at a time without cache {slow_rate:.1f} captions/s ({naive_rollouts} in {slow:.2f} s, "
          f"{lengths['naive']:.1f} tokens each), batched with KV cache {fast_rate:.0f} captions/s ({rollouts} in "
          f"{fast:.2f} s, {lengths['ours']:.1f} tokens each), speed-up x{fast_rate / slow_rate:.1f} per caption, "
          f"x{per_token:.1f} per token")


def main() -> None:
    # Chapter 4's rollouts under the default profile: `episodes` captions per step from the stand-ins.
    params = config.merged_parameters("04_reward_rl", "default")
    compare(f"{params['clip_model']} + {params['lm_model']} (default)", backbones.load_clip(params["clip_model"]),
            backbones.load_lm(params["lm_model"]), params, rollouts=params["episodes"], naive_rollouts=16, repeats=3)
    # The gpu profile's backbones, random-init: they write no sentences, so a caption stops only where
    # a stop token or <eos> happens to be sampled. The gpu profile samples 512 captions per step; 128
    # keep this module within a minute on 2 CPU threads, and the batched rate per caption does not
    # fall with a bigger batch. No separate warm-up (the greedy check ran both code paths); best of
    # two alternating timed runs of each.
    params = config.merged_parameters("04_reward_rl", "gpu")
    compare("micro-gpu architectures (random init, not pretrained)", random_init_clip(params["clip_model"]),
            random_init_lm(params["lm_model"]), params, rollouts=min(params["episodes"], 128), naive_rollouts=8,
            repeats=2, warm_up=False)
