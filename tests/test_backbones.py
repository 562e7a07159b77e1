"""Frozen backbones: real loading paths on tiny models saved in real formats, the stand-ins'
deterministic cached pretraining, frozen-stays-frozen, and clear errors for missing checkpoints."""
import json

import pytest
import torch

from vlbridge import backbones, world
from vlbridge.backbones import BackboneNotFoundError
from vlbridge.backbones.cache import cached_path
from vlbridge.backbones.corpus import DOCUMENT_KINDS, lm_document
from vlbridge.backbones.tokenizer import fast_token_ids

SMOKE_CLIP, SMOKE_LM = "micro-clip-smoke", "micro-lm-smoke"


@pytest.fixture(scope="module")
def clip():
    return backbones.load_clip(SMOKE_CLIP)


@pytest.fixture(scope="module")
def lm():
    return backbones.load_lm(SMOKE_LM)


def test_tokenizer_covers_every_word_the_world_writes_and_round_trips(lm):
    tok = lm.tokenizer
    for kind in DOCUMENT_KINDS:
        for seed in range(world.HELDOUT_START, world.HELDOUT_START + 300):
            doc = lm_document(seed, kind)
            ids = tok(doc).input_ids
            assert tok.unk_token_id not in ids, doc
            assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
            assert tok.decode(ids, skip_special_tokens=True) == doc


def test_fast_token_ids_equal_the_standard_tokenizer_and_keep_eos_when_truncating(lm):
    texts = ["a red circle", lm_document(7, "dialogue")]
    fast = fast_token_ids(lm.tokenizer, texts, 16)
    slow = lm.tokenizer(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt").input_ids
    assert torch.equal(fast, slow)
    assert fast[1, -1] == lm.tokenizer.eos_token_id  # truncated, yet it still ends in <eos> (CLIP pools there)
    assert lm.tokenizer("a red circle").input_ids == lm.tokenizer(["a red circle"]).input_ids[0]  # no state left


def test_stand_ins_are_saved_in_the_real_formats_and_loaded_by_the_real_loaders(clip, lm):
    clip_dir = cached_path("micro-clip", backbones.recipe(SMOKE_CLIP))
    files = {p.name for p in clip_dir.iterdir()}
    assert {"open_clip_config.json", "open_clip_model.safetensors", "tokenizer.json"} <= files
    again = backbones.load_clip(f"local-dir:{clip_dir}")
    images = world.render_array(world.scenes(0, 4), clip.image_size)
    assert torch.equal(again.encode_images(images), clip.encode_images(images))
    lm_dir = cached_path("micro-lm", backbones.recipe(SMOKE_LM))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in lm_dir.iterdir()}
    assert backbones.load_lm(str(lm_dir)).model.config.num_hidden_layers == lm.model.config.num_hidden_layers


def test_clip_embeddings_are_normalised_and_batched_identically(clip):
    images = world.render_array(world.scenes(0, 10), clip.image_size)
    emb = clip.encode_images(images)
    assert emb.shape == (10, clip.embed_dim)
    assert torch.allclose(emb.norm(dim=1), torch.ones(10), atol=1e-5)
    assert torch.allclose(clip.encode_images(images, batch_size=3), emb, atol=1e-6)
    texts = clip.encode_texts(["a red circle", "there is a big blue square at the top left ."])
    assert texts.shape == (2, clip.embed_dim)
    with pytest.raises(ValueError, match="no texts"):
        clip.encode_texts([])


def test_pretraining_is_deterministic(tmp_path, monkeypatch, lm):
    """The same recipe built again into an empty cache gives bit-identical weights."""
    monkeypatch.setenv("VLBRIDGE_CACHE", str(tmp_path))
    rebuilt = backbones.load_lm(SMOKE_LM)
    for (name, a), (_, b) in zip(lm.model.state_dict().items(), rebuilt.model.state_dict().items()):
        assert torch.equal(a, b), name
    log = json.loads((cached_path("micro-lm", backbones.recipe(SMOKE_LM)) / "training_log.json").read_text())
    assert log == backbones.training_log(SMOKE_LM)


def test_frozen_backbones_stay_frozen_under_a_training_step_on_top(clip, lm):
    """No gradients reach them, .train() on a parent keeps them in eval mode, and a training step of
    a module built on top leaves their weights bit-identical."""
    assert backbones.is_frozen(clip.model) and backbones.is_frozen(lm.model)
    before = {k: v.clone() for k, v in [*clip.model.state_dict().items(), *lm.model.state_dict().items()]}

    class Bridge(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip, self.lm = clip.model, lm.model  # registered as children on purpose
            self.map = torch.nn.Linear(clip.embed_dim, lm.embed_dim)

    bridge = Bridge().train()
    assert not clip.model.training and not lm.model.training
    images = world.render_array(world.scenes(0, 8), clip.image_size)
    prefix = bridge.map(clip.model.encode_image(clip.pixels(images), normalize=True))[:, None]
    ids = lm.tokenizer(["a red circle ."] * 8, return_tensors="pt").input_ids
    embeds = torch.cat([prefix, lm.embed(ids)], 1)
    loss = lm.model(inputs_embeds=embeds).logits.logsumexp(-1).mean()
    optimizer = torch.optim.SGD([p for p in bridge.parameters() if p.requires_grad], lr=1.0)
    loss.backward()
    optimizer.step()
    assert bridge.map.weight.grad is not None
    assert all(p.grad is None for p in [*clip.model.parameters(), *lm.model.parameters()])
    after = {k: v for k, v in [*clip.model.state_dict().items(), *lm.model.state_dict().items()]}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_real_architectures_load_from_local_folders(tmp_path):
    """A tiny random-init OPT and GPT-2, saved with save_pretrained, load through load_hf_lm."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from tiny_models import tiny_opt
    from vlbridge.backbones.tokenizer import train_tokenizer

    tok = train_tokenizer(["a red circle at the top .", "a blue square ."])
    for name, model in (
        ("opt", tiny_opt(tok, hidden_size=16)),
        ("gpt2", GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=32))),
    ):
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
        loaded = backbones.load_lm(str(tmp_path / name))
        assert backbones.is_frozen(loaded.model) and loaded.embed_dim == 16
        assert isinstance(loaded.tokenizer, PreTrainedTokenizerFast) or hasattr(loaded.tokenizer, "decode")


@pytest.mark.parametrize("loader, name, words", [
    (backbones.load_lm, "facebook/opt-6.7b", ["not available offline", "hf download facebook/opt-6.7b", "lm_model:"]),
    (backbones.load_clip, "ViT-L-14/openai", ["not available offline", "local-dir:", "clip_model:"]),
    (backbones.load_clip, "no-such-recipe.json", ["recipe file no-such-recipe.json does not exist", "micro-clip"]),
])
def test_missing_checkpoints_say_what_to_download_and_where(loader, name, words):
    with pytest.raises(BackboneNotFoundError) as info:
        loader(name)
    for word in words:
        assert word in str(info.value)


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneNotFoundError, match="has no config.json"):
        backbones.load_lm(str(tmp_path))


def test_micro_lm_samples_follow_the_grammar_better_than_chance(lm):
    """Even the 40-step smoke LM has learned the caption openers' continuations are object phrases."""
    from vlbridge.probes import generate

    out = generate(lm, ["there is"] * 4, 12, sample=False)
    assert all(o.split()[0] == "a" for o in out), out


def test_cache_key_follows_the_recipe_and_the_code(monkeypatch):
    from vlbridge.backbones import cache

    spec = backbones.recipe(SMOKE_LM)
    path = cached_path("micro-lm", spec)
    assert cached_path("micro-lm", {**spec, "train": {**spec["train"], "steps": 41}}) != path
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "edited-code")
    assert cached_path("micro-lm", spec) != path


@pytest.mark.parametrize("shape, dtype, words", [
    ((2, 32, 32, 4), "uint8", ["[2, 32, 32, 4]", "RGBA", "images[..., :3]"]),
    ((2, 32, 32, 3), "float32", ["float32 [2, 32, 32, 3]", "(images * 255).round()"]),
    ((32, 32, 3), "uint8", ["[32, 32, 3]", "add the batch dimension: images[None]"]),
    ((2, 3, 32, 32), "uint8", ["[2, 3, 32, 32]", "channels first"]),
    ((2, 32, 48, 3), "uint8", ["[2, 32, 48, 3]", "not square", "PIL images"]),
    ((0, 32, 32, 3), "uint8", ["[0, 32, 32, 3]", "no images"]),
    ((2, 32, 32, 3), "int64", ["int64", "uint8 0-255"]),
])
def test_bad_pixel_arrays_say_what_is_expected_and_what_was_given(clip, shape, dtype, words):
    import numpy as np

    for images in (np.zeros(shape, dtype=dtype), torch.from_numpy(np.zeros(shape, dtype=dtype))):
        with pytest.raises(ValueError, match=r"images must be uint8 \[N, H, W, 3\] with H == W") as info:
            clip.pixels(images)
        for word in words:
            assert word in str(info.value), str(info.value)


def test_square_arrays_of_another_size_are_resized_and_tensors_equal_arrays(clip):
    big = world.render_array(world.scenes(0, 3), 2 * clip.image_size)
    pixels = clip.pixels(big)
    assert pixels.shape == (3, 3, clip.image_size, clip.image_size)
    assert torch.equal(clip.pixels(torch.from_numpy(big)), pixels)
    small = clip.pixels(world.render_array(world.scenes(0, 3), clip.image_size))
    assert (pixels - small).abs().mean() < 0.1 * small.abs().mean()  # the same scenes, rendered at another size


def test_pil_images_must_be_rgb_and_a_list_must_hold_images(clip):
    rgb = world.render(world.scenes(0, 1)[0], 48)  # PIL, any size: CLIP's preprocess resizes and crops
    assert clip.pixels([rgb, rgb]).shape == (2, 3, clip.image_size, clip.image_size)
    assert clip.encode_images([rgb]).shape == (1, clip.embed_dim)
    for mode in ("L", "RGBA"):
        with pytest.raises(ValueError, match=rf"image 1 has mode '{mode}': use image.convert\('RGB'\)"):
            clip.pixels([rgb, rgb.convert(mode)])
    with pytest.raises(ValueError, match="no images"):
        clip.pixels([])
    with pytest.raises(ValueError, match="item 0 is ndarray; stack arrays"):
        clip.pixels([world.render_array(world.scenes(0, 1), 32)[0]])


def test_empty_or_non_text_inputs_to_encode_texts_name_the_index(clip):
    with pytest.raises(ValueError, match=r"texts\[1\] is empty \(''\)"):
        clip.encode_texts(["a red circle", "", "a blue square"])
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        clip.encode_texts(["  "])
    with pytest.raises(ValueError, match=r"texts\[1\] is NoneType, not str"):
        clip.encode_texts(["a red circle", None])
    with pytest.raises(ValueError, match=r"got one str \('a red circle'\); wrap it: \[text\]"):
        clip.encode_texts("a red circle")
