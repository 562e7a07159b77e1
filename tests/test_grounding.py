"""FROMAGe's training step and inference API on the smoke backbones (the chapter that evaluates it
is still to come: see the notes on the Grounding issue)."""
import pytest
import torch

from vlbridge import backbones, world
from vlbridge.methods.grounding import RET, Fromage, FromageConfig


@pytest.fixture(scope="module")
def trained():
    clip, lm = backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")
    pool = world.scenes(0, 64)
    embeddings = clip.encode_images(world.render_array(pool, clip.image_size))
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    model = Fromage(clip.embed_dim, lm, FromageConfig(steps=30, batch_size=16, lr=1e-2))
    log = model.fit(embeddings, lambda i, step: world.caption(pool[i], world.scene_rng(pool[i].seed, step)))
    return model, lm, embeddings, log, before


def test_training_lowers_every_loss_and_leaves_the_lm_untouched(trained):
    model, lm, _, log, before = trained
    for name in ("caption", "ret_text", "contrastive"):
        assert sum(log[name][-5:]) < sum(log[name][:5]), name
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert model.trainable_parameters() == sum(p.numel() for p in model.parameters())
    assert not any(p is q for p in model.parameters() for q in lm.model.parameters())


def test_inference_api_captions_retrieves_and_interleaves(trained):
    model, _, embeddings, _, _ = trained
    captions = model.caption(embeddings[:3])
    assert len(captions) == 3 and all(isinstance(c, str) and c for c in captions)
    queries = model.text_retrieval(["a red circle .", ["there is", embeddings[0], "a blue square ."]])
    assert queries.shape == (2, model.config.retrieval_dim)
    assert torch.allclose(queries.norm(dim=1), torch.ones(2), atol=1e-5)
    pieces = model.generate_interleaved(["a picture :", embeddings[1]], embeddings[:8], max_new_tokens=8)
    assert all(isinstance(p, str) or 0 <= p < 8 for p in pieces)
    with pytest.raises(TypeError, match="interleaved inputs are str or CLIP embeddings"):
        model.text_retrieval([["text", torch.zeros(3)]])


def test_without_ret_retrieval_reads_the_last_text_token(trained):
    model, lm, embeddings, _, _ = trained
    ablation = Fromage(model.clip_dim, lm, FromageConfig(use_ret=False))
    assert ablation.text_retrieval(["a red circle ."]).shape == (1, ablation.config.retrieval_dim)
    with pytest.raises(ValueError, match="must end with text"):
        ablation.text_retrieval([["a picture", embeddings[0]]])
    assert RET in model.extra.names
