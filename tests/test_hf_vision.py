"""Hugging Face CLIP and SigLIP (transformers' CLIPModel, SiglipModel) behind FrozenCLIP's contract:
tiny random-init models saved in the real format (nothing is downloaded), named the ways a profile
names them, checked output by output, then trained on by FROMAGe and ESPER as a chapter would."""
import numpy as np
import pytest
import torch

from tiny_models import gpt2_bpe, save_tiny_hf_clip, save_tiny_open_clip, tiny_gpt2
from vlbridge import backbones, world
from vlbridge.backbones.hf_clip import HFCLIP, hf_source
from vlbridge.contracts import Backbones
from vlbridge.methods.esper import Esper, EsperConfig
from vlbridge.methods.fromage import Fromage, FromageConfig
from vlbridge.methods.prefix import PrefixCaptioner, PrefixConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models run on one thread


@pytest.fixture(scope="module", params=["clip", "siglip"])
def folder(request, tmp_path_factory):
    return save_tiny_hf_clip(tmp_path_factory.mktemp("hf") / request.param, request.param)


@pytest.fixture(scope="module")
def clip(folder):
    return backbones.load_clip(f"hf:{folder}")


@pytest.fixture(scope="module")
def lm():
    return backbones.load_lm("micro-lm-smoke")


def images(n: int, size: int = 32) -> np.ndarray:
    return world.render_array(world.scenes(0, n), size)


# ---------------------------------------------------------------------------- names
def test_a_folder_or_hf_prefix_loads_transformers_and_open_clip_names_stay_open_clips(folder, tmp_path):
    assert hf_source(f"hf:{folder}") == str(folder) and hf_source(str(folder)) == str(folder)
    plain = backbones.load_clip(str(folder))
    assert isinstance(plain, HFCLIP) and plain.name == str(folder) and backbones.is_frozen(plain.model)
    assert plain.family == folder.name
    # open_clip's names and folders never reach transformers, even a folder that has a config.json too.
    both = save_tiny_open_clip(tmp_path / "both")
    (both / "config.json").write_text((folder / "config.json").read_text())
    for name in ("ViT-B-32/openai", "hf-hub:laion/CLIP-ViT-B-32", f"local-dir:{folder}", str(both)):
        assert hf_source(name) is None, name
    assert not isinstance(backbones.load_clip(str(both)), HFCLIP)


def test_a_name_in_the_local_hf_cache_loads_without_a_prefix(folder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--tiny-org--tiny-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hf_source("tiny-org/tiny-clip") == "tiny-org/tiny-clip"
    clip = backbones.load_clip("tiny-org/tiny-clip")
    assert isinstance(clip, HFCLIP) and clip.name == "tiny-org/tiny-clip"
    assert hf_source("tiny-org/not-cached") is None  # falls through to open_clip, as before


def test_what_is_not_here_says_what_to_download_and_where(tmp_path):
    with pytest.raises(backbones.BackboneNotFoundError,
                       match=r"not available offline.*hf download nobody/no-clip --local-dir checkpoints/no-clip.*"
                             r"clip_model: hf:checkpoints/no-clip"):
        backbones.load_clip("hf:nobody/no-clip")
    with pytest.raises(backbones.BackboneNotFoundError, match="folder .*no-such-folder does not exist"):
        backbones.load_clip(f"hf:{tmp_path / 'no-such-folder'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(backbones.BackboneNotFoundError, match="has no config.json"):
        backbones.load_clip(f"hf:{tmp_path / 'empty'}")
    tokenizer = gpt2_bpe(["a red circle ."] * 10, vocab_size=270)
    tiny_gpt2(tokenizer).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="is a 'gpt2' model, not one of clip, siglip"):
        backbones.load_clip(f"hf:{tmp_path / 'gpt2'}")


# ---------------------------------------------------------------------------- the contract
def test_encoders_give_cpu_float32_unit_vectors_of_the_right_shapes(clip):
    assert clip.image_size == 32 and clip.embed_dim == (16 if clip.family == "clip" else 32)
    pictures = images(3)
    embeddings = clip.encode_images(pictures)
    again, patches = clip.encode_images_and_patches(pictures)
    texts = clip.encode_texts(["a red circle .", "a big blue square at the top left ."])
    for x, shape in ((embeddings, (3, clip.embed_dim)), (patches, (3, 16, 32)), (texts, (2, clip.embed_dim))):
        assert x.shape == shape and x.dtype == torch.float32 and x.device.type == "cpu"
        assert torch.allclose(x.norm(dim=-1), torch.ones(shape[:-1]), atol=1e-5)
    assert torch.allclose(embeddings, again, atol=1e-6)
    with pytest.raises(ValueError, match=r"patch grid is 4x4, smaller than 5x5") as e:
        clip.encode_images_and_patches(pictures, min_grid=5)
    assert clip.name in str(e.value)


def test_pil_and_uint8_images_give_the_same_embedding(clip):
    arrays = images(4)
    pil = [world.render(s, 32) for s in world.scenes(0, 4)]
    assert torch.allclose(clip.encode_images(pil), clip.encode_images(arrays), atol=1e-5)
    bigger = images(4, 64)  # resized to the model's size, as FrozenCLIP does
    assert clip.encode_images(bigger).shape == (4, clip.embed_dim)
    with pytest.raises(ValueError, match="PIL images must be RGB"):
        clip.encode_images([pil[0].convert("L")])
    with pytest.raises(ValueError, match="RGBA"):
        clip.encode_images(np.zeros((2, 32, 32, 4), dtype=np.uint8))


def test_texts_are_checked_and_padded_as_the_model_was_trained(clip):
    short, long = "a red circle .", "a big blue square at the top left and a small red circle ."
    ids = clip.tokenize([short, long])
    if clip.family == "siglip":  # always max_length: SigLIP pools the last position
        assert ids.shape[1] == clip.context_length
    else:
        assert ids.shape[1] == len(clip.tokenize([long])[0]) < clip.context_length
    # Either way a text's embedding does not depend on what it is batched with.
    assert torch.allclose(clip.encode_texts([short, long])[0], clip.encode_texts([short])[0], atol=1e-5)
    assert clip.tokenize(["red " * 100]).shape[1] == clip.context_length  # truncated
    with pytest.raises(ValueError, match="takes a list of texts"):
        clip.encode_texts("a red circle .")
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        clip.encode_texts(["a red circle .", " "])


def test_bfloat16_weights_still_give_float32_on_the_cpu(folder, clip):
    half = backbones.load_clip(f"hf:{folder}", dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    pictures = images(2)
    out = half.encode_images(pictures)
    assert out.dtype == torch.float32 and torch.allclose(out, clip.encode_images(pictures), atol=0.05)
    assert half.encode_texts(["a red circle ."]).dtype == torch.float32


def test_on_a_device_the_model_moves_and_the_outputs_come_back_to_the_cpu(folder):
    from device_guard import VIRTUAL, virtual_device

    with virtual_device() as guard:
        clip = backbones.load_clip(f"hf:{folder}", device=VIRTUAL.type)
        assert all(guard.on_device(p) for p in clip.model.parameters())
        outputs = [clip.encode_images(images(2)), *clip.encode_images_and_patches(images(2)),
                   clip.encode_texts(["a red circle ."])]
        assert not any(guard.on_device(x) for x in outputs)


# ---------------------------------------------------------------------------- the methods on it
@pytest.mark.parametrize("image_input", ["embedding", "patches"])
def test_fromage_trains_captions_retrieves_and_reloads(clip, lm, image_input, tmp_path):
    pool = world.scenes(0, 8)
    model = Fromage(clip, lm, FromageConfig(steps=3, batch_size=4, warmup_steps=1, image_input=image_input))
    features = model.features(world.render_array(pool, clip.image_size))
    log = model.fit(features, lambda i, step: world.caption(pool[i], world.scene_rng(pool[i].seed, step)))
    assert len(log["caption"]) == 3
    captions = model.caption(features[:2], max_new_tokens=6)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert model.retrieve_images(["a red circle ."], features, k=3).shape == (1, 3)
    assert model.text_retrieval(["a red circle ."]).shape == (1, model.config.retrieval_dim)
    model.save(tmp_path)
    reloaded = Fromage.load(tmp_path, Backbones(clip, lm))
    assert reloaded.caption(features[:2], max_new_tokens=6) == captions


def test_esper_trains_and_captions(clip, lm):
    features = clip.encode_images(images(4))
    torch.manual_seed(0)
    captioner = PrefixCaptioner(lm, PrefixConfig(f"{clip.name}:embedding", clip.embed_dim, max_new_tokens=4))
    model = Esper(captioner, clip, EsperConfig(steps=3, batch_size=2, samples=2, warmup_steps=0))
    log = model.fit(features, features)
    assert log["steps"] == 3 and all(np.isfinite(log["reward"]))
    captions = captioner.caption(features)
    assert len(captions) == 4 and all(isinstance(c, str) for c in captions)
