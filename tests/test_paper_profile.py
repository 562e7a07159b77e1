"""The paper-fromage profile's code path, end to end, on tiny random-init models of the real families
(an OPT with a byte-level BPE tokenizer, an open_clip ViT) saved locally in the real formats, and a
CC3M TSV in FROMAGe's layout with rendered microworld images: load both backbones in bf16 by path,
encode the TSV's images, train FROMAGe with the profile's hyperparameters for a few steps, caption
and retrieve."""

import pytest
import torch

from tiny_models import backbone_weights, byte_level_bpe, paper_profile, save_tiny_open_clip, tiny_opt
from vlbridge import backbones, world
from vlbridge.book import config
from vlbridge.data import DataError
from vlbridge.features import cc3m_pairs
from vlbridge.methods.fromage import Fromage, FromageConfig
from vlbridge.world.export import export

IMAGES = 6


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Folders as a user would have them: an OPT model folder, an open_clip folder, CC3M TSV + images."""
    root = tmp_path_factory.mktemp("paper")
    texts = [world.caption(s, world.scene_rng(s.seed, 1)) for s in world.scenes(0, 300)]
    tokenizer = byte_level_bpe(texts)
    tiny_opt(tokenizer, hidden_size=32).save_pretrained(root / "opt")
    tokenizer.save_pretrained(root / "opt")
    save_tiny_open_clip(root / "clip", embed_dim=16, image_size=32)
    export("cc3m", root / "cc3m", start=0, count=IMAGES, image_size=32)
    return root


def test_the_profile_holds_the_papers_values():
    profile = paper_profile("paper-fromage")
    assert set(profile) == {"description", "common", "03_grounding"}
    assert profile["common"] == {"seed": 0, "threads": 8, "device": "cuda", "dtype": "bfloat16",
                                  "clip_model": "ViT-L-14/openai", "lm_model": "facebook/opt-6.7b"}
    section = profile["03_grounding"]
    assert [section[k] for k in ("image_tokens", "retrieval_dim", "batch_size", "lr")] == [1, 256, 180, 3e-4]
    assert section["train_tsv"] and section["train_images"]


def test_the_profile_validates_against_chapter_03():
    if "03_grounding" not in config.chapters():
        pytest.skip("book/03_grounding.py does not exist yet: profile sections are validated against chapters")
    merged = config.merged_parameters("03_grounding", "paper-fromage")
    expected = paper_profile("paper-fromage")["common"] | paper_profile("paper-fromage")["03_grounding"]
    assert {k: merged[k] for k in expected} == expected


def test_dtype_must_be_a_known_name():
    for loader in (backbones.load_lm, backbones.load_clip):
        with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16, got 'bf16'"):
            loader("micro-lm-smoke", dtype="bf16")


def test_paper_path_end_to_end_in_bf16(local):
    """bf16 runs on CPU here (recent PyTorch has bf16 CPU kernels for all of it) and fast at this size,
    so this is the paper's precision: frozen backbones in bf16, the trained parts in float32."""
    profile = paper_profile("paper-fromage")
    dtype = profile["common"]["dtype"]
    lm = backbones.load_lm(str(local / "opt"), dtype=dtype)
    clip = backbones.load_clip(str(local / "clip"), dtype=dtype)
    assert lm.model.dtype == torch.bfloat16 and clip.model.visual.conv1.weight.dtype == torch.bfloat16
    assert type(lm.model).__name__ == "OPTForCausalLM"

    embeddings, captions = cc3m_pairs(local / "cc3m" / "cc3m.tsv", local / "cc3m" / "images", clip, batch_size=4)
    assert embeddings.shape == (IMAGES, 16) and embeddings.dtype == torch.float32 and len(captions) == IMAGES
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(IMAGES), atol=1e-2)

    section = profile["03_grounding"]
    paper = {k: section[k] for k in ("image_input", "image_tokens", "bridge", "retrieval_dim", "lr",
                                        "weight_decay")}
    model = Fromage(clip, lm, FromageConfig(**paper, steps=5, batch_size=4, warmup_steps=1))
    frozen = {k: v.clone() for k, v in backbone_weights(lm, clip).items()}
    log = model.fit(embeddings, lambda i, step: captions[i])
    assert all(len(log[k]) == 5 and all(map(torch.isfinite, torch.tensor(log[k]))) for k in
               ("caption", "ret_text", "contrastive", "total"))
    after = backbone_weights(lm, clip)
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad is None for p in [*lm.model.parameters(), *clip.model.parameters()])

    written = model.caption(embeddings[:2], max_new_tokens=6)
    assert len(written) == 2 and all(isinstance(c, str) for c in written)
    queries = model.text_retrieval(captions[:2])
    assert queries.shape == (2, 256) and queries.dtype == torch.float32
    assert torch.allclose(queries.norm(dim=1), torch.ones(2), atol=1e-5)
    ranking = (queries @ model.image_retrieval(embeddings).T).argsort(dim=1, descending=True)
    assert ranking.shape == (2, IMAGES) and all(sorted(r) == list(range(IMAGES)) for r in ranking.tolist())


def test_cc3m_pairs_errors_name_the_missing_thing(local, tmp_path):
    clip = backbones.load_clip(str(local / "clip"))
    tsv, images = local / "cc3m" / "cc3m.tsv", local / "cc3m" / "images"
    with pytest.raises(DataError, match="image folder not found"):
        cc3m_pairs(tsv, tmp_path / "nowhere", clip)
    broken = tmp_path / "broken.tsv"
    broken.write_text("caption\timage\na red circle .\tno_such_image\n")
    with pytest.raises(DataError, match=r"line 2: image file not found: .*no_such_image"):
        cc3m_pairs(broken, images, clip)
    gcc = tmp_path / "gcc.tsv"
    gcc.write_text("a red circle .\thttp://example.com/a.jpg\n")
    with pytest.raises(DataError, match="not FROMAGe's layout"):
        cc3m_pairs(gcc, images, clip)
    embeddings, captions = cc3m_pairs(tsv, images, clip, limit=2)
    assert embeddings.shape == (2, 16) and len(captions) == 2
