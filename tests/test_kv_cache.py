"""KV-cached greedy generation (`bridge.generate`) gives exactly the tokens of greedy generation without
the cache, which re-runs the LM on the whole sequence at every step. The uncached loop is the one the
speed benchmark times (benchmarks/kv_cache.py), so this also checks the benchmark's baseline; the repo
root, and so `benchmarks`, is on sys.path through the root conftest.py."""
import pytest
import torch
from benchmarks.kv_cache import greedy_without_cache

from vlbridge import backbones
from vlbridge import bridge as br
from vlbridge.bridge import Embeds, Text


@pytest.fixture(scope="module")
def lm():
    return backbones.load_lm("micro-lm-smoke")


def test_kv_cached_greedy_generation_equals_uncached_on_a_left_padded_batch(lm):
    rng = torch.Generator().manual_seed(0)

    def image(n):  # image-like vectors spliced into the input embeddings, as a bridge makes them
        return Embeds(torch.randn(n, lm.embed_dim, generator=rng) * 0.02, tag="image")

    prompts = [[Text("there is")],
               [image(4), Text("we can see a red circle and")],
               [Text("a picture :"), image(2), Text("this picture shows two big")],
               [image(3)]]
    batch = br.assemble(lm, prompts, pad_left=True)
    lengths = batch.attention_mask.sum(1).tolist()
    assert len(set(lengths)) == len(prompts)  # all different: every row but the longest is left-padded
    for stop in ((".",), ()):  # rows stopping at different steps; and every row running all the steps
        cached = br.generate(lm, batch, 16, stop=stop)
        assert cached.tokens == greedy_without_cache(lm, batch, 16, stop)
    assert max(len(t) for t in cached.tokens) == 16
    alone = [br.generate(lm, br.assemble(lm, [p], pad_left=True), 16, stop=()).tokens[0] for p in prompts]
    assert cached.tokens == alone  # and the padding changes nothing
