"""Greedy generation from the stand-in LM: batched with left padding and the KV cache, against one
prompt at a time (the naive way), on the same prompts; outputs must match exactly."""
from benchmarks.timing import best_time
from vlbridge import backbones, world
from vlbridge.probes import generate


def main() -> None:
    lm = backbones.load_lm("micro-lm")
    items = [world.vqa_item(world.HELDOUT_START + i) for i in range(64)]
    prompts = [f"{world.caption(it.scene, world.scene_rng(it.seed, 1))} {world.vqa_prompt(it.question)}"
               for it in items]
    assert generate(lm, prompts, 24, sample=False, batch_size=64) == generate(lm, prompts, 24, sample=False,
                                                                              batch_size=1)
    naive = best_time(lambda: generate(lm, prompts, 24, sample=False, batch_size=1), repeats=2)
    ours = best_time(lambda: generate(lm, prompts, 24, sample=False, batch_size=64), repeats=2)
    print(f"generate 64 answers: one at a time {naive:.2f} s ({64 / naive:.0f}/s), batched {ours:.2f} s "
          f"({64 / ours:.0f}/s), speed-up x{naive / ours:.1f}")
