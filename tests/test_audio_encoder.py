"""The audio encoder (audio_encoder.py): stereo log-mel features, an encoder into CLIP's image space trained
by distillation from the frozen CLIP, deterministic for a seed, and clear errors for bad input."""
from types import SimpleNamespace

import pytest
import torch

from vlbridge import audio_encoder as audio
from vlbridge import backbones, world
from vlbridge.contracts import Backbones

SMOKE_CLIP = "micro-clip-smoke"
TRAIN = dict(steps=12, batch_size=32, lr=3e-3, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models run on one thread


@pytest.fixture(scope="module")
def clip():
    return backbones.load_clip(SMOKE_CLIP)


@pytest.fixture(scope="module")
def train_scenes():
    return world.scenes(0, 200)


@pytest.fixture(scope="module")
def trained(clip, train_scenes):
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    encoder, log = audio.train_audio_encoder(clip, train_scenes, **TRAIN)
    return encoder, log, before


def test_sound_features_are_stereo_log_mels_of_each_scene():
    scenes = world.scenes(world.HELDOUT_START, 6)
    features = audio.sound_features(scenes)
    assert features.shape == (6, audio.CHANNELS, audio.N_MELS, audio.FRAMES) and features.dtype == torch.float32
    for scene, row in zip(scenes, features):  # the de-duplicated batch gives exactly the per-scene log-mels
        assert torch.equal(row, torch.from_numpy(world.log_mel(world.render_sound(scene))))


def test_embeddings_have_clip_width_and_unit_norm(clip, trained):
    encoder, _, _ = trained
    held_out = world.scenes(world.HELDOUT_START, 20)
    emb = audio.audio_embeddings(encoder, held_out)
    assert emb.shape == (20, clip.embed_dim) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(20), atol=1e-5)
    assert torch.allclose(emb, audio.audio_embeddings(encoder, audio.sound_features(held_out)), atol=1e-6)
    assert sum(p.numel() for p in encoder.parameters()) < 400_000


def test_training_is_deterministic(clip, train_scenes, trained):
    """A second training, given the sounds the first computed for itself, gives the same weights."""
    encoder, log, _ = trained
    again, log_again = audio.train_audio_encoder(clip, train_scenes, sounds=audio.sound_features(train_scenes),
                                                 **TRAIN)
    first, second = encoder.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert log["total"] == log_again["total"]


def test_training_loss_falls_and_is_logged(trained):
    _, log, _ = trained
    assert log["steps"] == TRAIN["steps"] and len(log["total"]) == TRAIN["steps"]
    assert {"cosine", "infonce", "seconds"} <= set(log)
    assert sum(log["total"][-3:]) / 3 < sum(log["total"][:3]) / 3


def test_encoder_is_trained_and_clip_untouched(clip, trained):
    encoder, _, before = trained
    after = clip.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in clip.model.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TRAIN["seed"])
        fresh = audio.AudioEncoder(clip.embed_dim)  # the weights training started from
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), encoder.state_dict().values()))
    assert all(p.requires_grad for p in encoder.parameters())


def test_bad_input_is_a_clear_error(clip, trained):
    encoder, _, _ = trained
    with pytest.raises(ValueError, match="no scenes"):
        audio.sound_features([])
    with pytest.raises(ValueError, match="wrap it"):
        audio.sound_features(world.sample_scene(1))
    with pytest.raises(ValueError, match="no scenes"):
        audio.train_audio_encoder(clip, [], steps=2)
    with pytest.raises(ValueError, match="3 scenes but sounds for 2"):
        audio.train_audio_encoder(clip, world.scenes(0, 3), steps=2, sounds=audio.sound_features(world.scenes(0, 2)))
    with pytest.raises(ValueError, match=r"\[N, 2, 40, frames\].*got shape \[3, 40, 63\]"):
        audio.audio_embeddings(encoder, torch.zeros(3, 40, 63))
    with pytest.raises(ValueError, match=r"\[N, 2, 40, frames\].*got shape \[3, 1, 40, 63\]"):
        encoder(torch.zeros(3, 1, 40, 63))
    with pytest.raises(ValueError, match="empty batch"):
        encoder(torch.zeros(0, 2, 40, 63))
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        encoder([[0.0]])


def test_a_saved_encoder_loads_with_the_same_embeddings_and_only_for_its_clip(clip, trained, tmp_path):
    from vlbridge.checkpoint import CheckpointError

    encoder = trained[0]
    encoder.save(tmp_path / "encoder")
    loaded = audio.AudioEncoder.load(tmp_path / "encoder", Backbones(clip, None))
    sounds = world.scenes(world.HELDOUT_START, 8)
    assert torch.equal(audio.audio_embeddings(loaded, sounds), audio.audio_embeddings(encoder, sounds))
    other = SimpleNamespace(name="another-clip", embed_dim=clip.embed_dim, device=clip.device)
    with pytest.raises(CheckpointError, match="trained on clip 'micro-clip-smoke', not 'another-clip'"):
        audio.AudioEncoder.load(tmp_path / "encoder", Backbones(other, None))



@pytest.mark.parametrize("frames, bins", [(9, 9), (47, 9), (50, 9), (101, 9), (20, 3), (7, 5)])
def test_the_cuda_pooling_averages_the_windows_adaptive_pooling_does(frames, bins):
    """On CUDA the encoder pools time with a matrix product (adaptive pooling has no deterministic
    backward there); the windows, with overlaps where frames do not divide, must be the same."""
    x = torch.randn(3, 4, frames, generator=torch.Generator().manual_seed(frames))
    pooled = x @ audio.time_bin_weights(frames, bins, x)
    torch.testing.assert_close(pooled, torch.nn.functional.adaptive_avg_pool1d(x, bins), rtol=1e-6, atol=1e-6)
