"""Tokenizing a CLIP batch each step: the Rust tokenizer directly (`fast_token_ids`) against the
transformers wrapper with padding and truncation (the naive way), on the same 128 texts."""
import numpy as np
import torch

from benchmarks.timing import best_time
from vlbridge import backbones, world
from vlbridge.backbones.corpus import clip_text
from vlbridge.backbones.tokenizer import fast_token_ids


def main() -> None:
    tokenizer = backbones.micro_tokenizer(backbones.recipe("micro-clip")["tokenizer"])
    rng = np.random.default_rng(0)
    texts = [clip_text(s, rng)[0] for s in world.scenes(0, 128)]

    def wrapper():
        return tokenizer(texts, padding="max_length", max_length=48, truncation=True, return_tensors="pt").input_ids

    def fast():
        return fast_token_ids(tokenizer, texts, 48)

    assert torch.equal(wrapper(), fast())
    naive, ours = best_time(wrapper), best_time(fast)
    print(f"tokenize 128 texts: wrapper {naive * 1e3:.1f} ms, fast_token_ids {ours * 1e3:.1f} ms, "
          f"speed-up x{naive / ours:.1f}")
