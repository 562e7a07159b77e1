"""Greedy generation with the KV cache (`bridge.generate`) against a naive loop without it that re-runs
the whole sequence every step, on the same left-padded batch of image-and-text prompts from
`bridge.assemble`; the generated tokens must be identical."""
import torch

from benchmarks.helpers import random_init_lm
from benchmarks.timing import best_times
from vlbridge import backbones, world
from vlbridge import bridge as br


@torch.no_grad()
def greedy_without_cache(lm, batch: br.Batch, max_new_tokens: int, stop: tuple = (".",)) -> list[list[int]]:
    """Greedy continuation of a left-padded batch, re-running the LM on everything so far at every step
    (no KV cache), with `bridge.generate`'s stopping rule: a row stops after a `stop` token or <eos>
    and is padded from then on; the loop ends when every row has stopped. Returns the ids per row."""
    tok = lm.tokenizer
    embedding = lm.model.get_input_embeddings()
    stop_ids = torch.tensor(sorted(br.stop_token_ids(tok, stop)), device=batch.attention_mask.device)
    inputs, mask = batch.inputs_embeds, batch.attention_mask
    done = torch.zeros(len(inputs), dtype=torch.bool, device=mask.device)
    tokens, alive = [], []
    for _ in range(max_new_tokens):
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits = lm.model(inputs_embeds=inputs, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
        choice = logits[:, -1].float().argmax(-1)
        choice = torch.where(done, torch.full_like(choice, tok.pad_token_id), choice)
        tokens.append(choice)
        alive.append(~done)
        done = done | torch.isin(choice, stop_ids)
        if done.all():
            break
        inputs = torch.cat([inputs, embedding(choice)[:, None]], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    ids, live = torch.stack(tokens, 1), torch.stack(alive, 1)
    return [[t for t, a in zip(row, keep) if a] for row, keep in zip(ids.tolist(), live.tolist())]


def prompts(lm, n: int, shots: int = 1, image_tokens: int = 16, seed: int = 0) -> br.Batch:
    """n left-padded prompts of different lengths: `shots` times (k image-like vectors, a caption), then
    a VQA question, as a FROMAGe/ILLUME-style interleaved prompt."""
    rng = torch.Generator().manual_seed(seed)
    sequences = []
    for i in range(n):
        item = world.vqa_item(world.HELDOUT_START + i)
        sequence = []
        for shot in range(shots):
            image = torch.randn(image_tokens, lm.embed_dim, generator=rng) * 0.02
            scene = world.sample_scene(world.HELDOUT_START + i + 1000 * shot) if shot else item.scene
            sequence += [br.Embeds(image, tag="image"), br.Text(world.caption(scene, world.scene_rng(scene.seed, 1)))]
        sequences.append([*sequence, br.Text(world.vqa_prompt(item.question))])
    return br.assemble(lm, sequences, pad_left=True)


def compare(label: str, lm, batch: br.Batch, new_tokens: int, stop: tuple, repeats: int) -> None:
    cached = br.generate(lm, batch, new_tokens, stop=stop).tokens
    assert greedy_without_cache(lm, batch, new_tokens, stop) == cached, f"{label}: cached and uncached tokens differ"
    naive, ours = best_times([lambda: greedy_without_cache(lm, batch, new_tokens, stop),
                              lambda: br.generate(lm, batch, new_tokens, stop=stop)], repeats, warm_up=False)
    print(f"greedy generation, {label}, batch {len(cached)}, prompts of up to {batch.inputs_embeds.shape[1]} "
          f"positions, {max(map(len, cached))} steps: no cache {naive * 1e3:.0f} ms, KV cache {ours * 1e3:.0f} ms, "
          f"speed-up x{naive / ours:.1f}")


def main() -> None:
    lm = backbones.load_lm("micro-lm")
    compare("micro-lm (default)", lm, prompts(lm, 64), 24, (".",), repeats=3)
    # Random-init: it writes no sentences, so only <eos> stops it and every row runs all the steps.
    lm = random_init_lm("micro-lm-gpu")
    compare("micro-lm-gpu architecture (random init, not pretrained)", lm, prompts(lm, 8, shots=2), 40, (),
            repeats=1)
