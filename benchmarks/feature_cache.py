"""A FROMAGe training step on frozen CLIP image features computed once and cached (what `Fromage.fit`
does: it takes features precomputed by `Fromage.features`) against recomputing them from pixels every
step (the naive way: the batch's images go through the frozen CLIP inside the step), on the same batch;
the losses must match. The model is set up as chapter 3 trains it (the CLIP embedding and patch tokens,
k = 16 image tokens). Rendering the scenes is data loading, outside both steps."""
import torch

from benchmarks.helpers import random_init_clip, random_init_lm
from benchmarks.timing import best_times
from vlbridge import backbones, world
from vlbridge.methods.fromage import Fromage, FromageConfig
from vlbridge.training import adamw


def compare(label: str, clip, lm, batch_size: int, repeats: int, warm_up: bool = True, seed: int = 0) -> None:
    # A batch as `Fromage.fit` draws it: about half the examples are two image-caption pairs.
    order = torch.Generator().manual_seed(seed)
    pairs, n = [], 0
    for two in (torch.rand(batch_size, generator=order) < 0.5).tolist():
        pairs.append((n, n + 1) if two else (n,))
        n += 1 + two
    scenes = world.scenes(0, n)
    images = world.render_array(scenes, clip.image_size)  # uint8 pixels of the batch's n images
    captions = {i: world.caption(s, world.scene_rng(s.seed, 0)) for i, s in enumerate(scenes)}
    torch.manual_seed(seed)
    model = Fromage(clip, lm, FromageConfig(image_tokens=16, image_input="patches", batch_size=batch_size))
    cached = model.features(images)  # once, before training
    optimizer = adamw(model.parameters(), 1e-4, 0.0)

    def step(features) -> None:
        loss = model.losses(features, captions, pairs)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        fresh, stored = model.losses(model.features(images), captions, pairs), model.losses(cached, captions, pairs)
    for name in fresh:
        assert torch.allclose(fresh[name], stored[name], rtol=1e-5, atol=1e-6), f"{label}: {name} loss differs"
    naive, ours = best_times([lambda: step(model.features(images)), lambda: step(cached)], repeats, warm_up)
    print(f"FROMAGe step, batch {batch_size} ({n} images), {label}: recompute CLIP {naive * 1e3:.0f} ms, "
          f"cached {ours * 1e3:.0f} ms, speed-up x{naive / ours:.2f}")


def main() -> None:
    compare("micro (default)", backbones.load_clip("micro-clip"), backbones.load_lm("micro-lm"), 32, repeats=5)
    # A step at this size takes seconds on 2 CPU threads: no separate warm-up (the loss check above ran
    # the forward of both), 3 alternating repeats. The gpu profile trains with batch 64; 32 keeps this
    # module within about a minute, and both ways of the step scale alike with the batch.
    compare("micro-gpu architectures (random init, not pretrained)", random_init_clip("micro-clip-gpu"),
            random_init_lm("micro-lm-gpu"), 32, repeats=3, warm_up=False)
