"""`python -m benchmarks`: run every benchmark and print the ratios."""
import torch

from benchmarks import generation, tokenize

torch.set_num_threads(2)
for bench in (tokenize, generation):
    bench.main()
