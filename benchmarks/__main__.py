"""`python -m benchmarks`: run every benchmark and print the ratios. `paper_shape` runs at its tiny size
on the CPU here; its paper size is `python -m benchmarks.paper_shape --size paper` on a GPU."""
import torch

from benchmarks import contention, feature_cache, generation, kv_cache, paper_shape, rollout, tokenize

torch.set_num_threads(2)
for bench in (tokenize, generation, kv_cache, feature_cache, rollout, paper_shape, contention):
    bench.main()
