"""`python -m benchmarks`: run every benchmark and print the ratios."""
import torch

from benchmarks import feature_cache, generation, kv_cache, rollout, tokenize

torch.set_num_threads(2)
for bench in (tokenize, generation, kv_cache, feature_cache, rollout):
    bench.main()
