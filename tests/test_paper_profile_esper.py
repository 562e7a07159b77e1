"""The paper-esper profile's code path, end to end, on tiny random-init models of the real families (a
GPT-2 with GPT-2's tokenizer layout: byte-level BPE, <|endoftext|> as bos, eos and unk, no pad token;
an open_clip ViT) saved locally in the real formats, and a COCO Karpathy split file with rendered
microworld images: load both backbones by path, encode Karpathy's training images, train ESPER's PPO
with the profile's hyperparameters for a few steps, caption."""

import pytest
import torch

from tiny_models import backbone_weights, gpt2_bpe, paper_profile, save_tiny_karpathy, save_tiny_open_clip, tiny_gpt2
from vlbridge import backbones, bridge, features, world
from vlbridge.book import config
from vlbridge.contracts import Backbones
from vlbridge.data import load_karpathy, open_image
from vlbridge.features import karpathy_features
from vlbridge.methods.esper import Esper, EsperConfig
from vlbridge.methods.prefix import STOP, PrefixCaptioner, PrefixConfig

SPLITS = ["train", "restval", "train", "val", "restval", "test", "train", "restval"]  # 6 training images
TRAIN = 6
CLIP_DIM = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models run on one thread


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Folders as a user would have them: a GPT-2 model folder, an open_clip folder, COCO with
    Karpathy's split file."""
    root = tmp_path_factory.mktemp("paper-esper")
    tokenizer = gpt2_bpe([world.caption(s, world.scene_rng(s.seed, 1)) for s in world.scenes(0, 300)])
    tiny_gpt2(tokenizer, hidden_size=32).save_pretrained(root / "gpt2")
    tokenizer.save_pretrained(root / "gpt2")
    save_tiny_open_clip(root / "clip", embed_dim=CLIP_DIM, image_size=32)
    save_tiny_karpathy(root / "coco", SPLITS)
    return root


def test_the_profile_holds_the_papers_values():
    profile = paper_profile("paper-esper")
    assert set(profile) == {"description", "common", "04_reward_rl"}
    assert profile["common"] == {"seed": 0, "threads": 8, "device": "cuda", "dtype": "float32",
                                  "clip_model": "ViT-B-32/openai", "lm_model": "gpt2"}
    section = profile["04_reward_rl"]
    paper = {"image_input": "embedding", "prefix_tokens": 10, "max_new_tokens": 20, "episodes": 128,
             "temperature": 0.7, "kl_coef": 0.15, "contrastive_reward": False, "reward_scale": 50.0,
             "reward_shift": 0.2, "lr": 1e-5,
             "warmup_steps": 100, "epochs": 4, "minibatches": 16, "clip_range": 0.2, "gae_gamma": 1.0,
             "gae_lambda": 0.95, "train_scenes": 113287}
    assert {k: section[k] for k in paper} == paper
    assert section["episodes"] % section["minibatches"] == 0  # minibatches of 8 captions
    assert section["train_json"].endswith("dataset_coco.json") and section["train_images"]
    assert "grpo_group" not in section  # the paper's algorithm is PPO: one caption per image


def test_the_profile_validates_against_chapter_04():
    if "04_reward_rl" not in config.chapters():
        pytest.skip("book/04_reward_rl.py does not exist yet: profile sections are validated against chapters")
    merged = config.merged_parameters("04_reward_rl", "paper-esper")
    expected = paper_profile("paper-esper")["common"] | paper_profile("paper-esper")["04_reward_rl"]
    assert {k: merged[k] for k in expected} == expected


def test_gpt2_without_a_pad_token_loads_for_batching(local):
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(local / "gpt2")
    assert saved.pad_token is None and saved.bos_token == saved.eos_token == saved.unk_token == "<|endoftext|>"
    lm = backbones.load_lm(str(local / "gpt2"))
    assert type(lm.model).__name__ == "GPT2LMHeadModel" and lm.model.config.pad_token_id is None
    tok = lm.tokenizer
    assert tok.pad_token_id == tok.eos_token_id == tok.bos_token_id  # load_hf_lm pads with <|endoftext|>
    assert lm.context_length == 64  # GPT-2's n_positions
    stops = bridge.stop_token_ids(tok, STOP)  # "." and " ." ("Ġ."), "!", "#", <|endoftext|>
    assert tok.eos_token_id in stops and tok.convert_tokens_to_ids("Ġ.") in stops and len(stops) >= 4


def test_gpt2_left_padding_and_teacher_forcing_agree(local):
    """GPT-2 has learned absolute positions: a left-padded batch (prompts of different lengths) must
    give each row what it gives alone, and the teacher-forced pass (right-padded) the same
    log-probabilities as sampling."""
    lm = backbones.load_lm(str(local / "gpt2"))
    torch.manual_seed(0)
    captioner = PrefixCaptioner(lm, PrefixConfig(encoder="random", feature_dim=CLIP_DIM, prefix_tokens=10,
                                                 max_new_tokens=8))
    conditions = torch.randn(3, CLIP_DIM)
    prompts = ["there is", "a picture of a red square and", "a"]
    batch = captioner.sample(conditions, prompts)
    alone = [captioner.sample(conditions[i:i + 1], [p]) for i, p in enumerate(prompts)]
    assert batch.tokens == [a.tokens[0] for a in alone]
    for row, a in enumerate(alone):
        assert torch.allclose(batch.logprobs[row, :a.logprobs.shape[1]], a.logprobs[0], atol=1e-5)
    logp, _, mask = captioner.continuation(conditions, prompts, batch.tokens)
    assert torch.allclose(logp, batch.logprobs[:, :logp.shape[1]] * mask, atol=1e-5)


def test_paper_path_end_to_end(local, tmp_path):
    profile = paper_profile("paper-esper")
    common, section = profile["common"], profile["04_reward_rl"]
    lm = backbones.load_lm(str(local / "gpt2"), dtype=common["dtype"])
    clip = backbones.load_clip(f"local-dir:{local / 'clip'}", dtype=common["dtype"])
    assert lm.model.dtype == torch.float32 and clip.model.visual.conv1.weight.dtype == torch.float32

    records = load_karpathy(local / "coco" / "dataset_coco.json", local / "coco" / "images")[:section["train_scenes"]]
    assert len(records) == TRAIN and {r.split for r in records} == {"train", "restval"}
    feats = karpathy_features(records, clip, section["image_input"], batch_size=4)  # as many batches as needed
    whole = features.image_features(clip, [open_image(r.image_path) for r in records], section["image_input"])
    assert torch.allclose(feats, whole, atol=1e-5)
    assert feats.shape == (TRAIN, CLIP_DIM) and feats.dtype == torch.float32
    assert torch.allclose(feats.norm(dim=1), torch.ones(TRAIN), atol=1e-5)

    captioner = PrefixCaptioner(lm, PrefixConfig(
        encoder=f"{common['clip_model']}:{section['image_input']}", feature_dim=feats.shape[1],
        prefix_tokens=section["prefix_tokens"], max_new_tokens=section["max_new_tokens"]))
    paper = dict(temperature=section["temperature"], kl_coef=section["kl_coef"], lr=section["lr"],
                 contrastive=section["contrastive_reward"], reward_scale=section["reward_scale"],
                 reward_shift=section["reward_shift"],
                 epochs=section["epochs"], clip_range=section["clip_range"], gamma=section["gae_gamma"],
                 lam=section["gae_lambda"])
    model = Esper(captioner, clip, EsperConfig(algorithm="ppo", steps=2, batch_size=4, samples=1, minibatches=2,
                                               warmup_steps=1, **paper))
    frozen = {k: v.clone() for k, v in backbone_weights(lm, clip).items()}
    mapper = {k: v.clone() for k, v in captioner.mapper.state_dict().items()}
    log = model.fit(feats, feats[:, :clip.embed_dim])

    assert all(len(log[k]) == 2 and all(map(torch.isfinite, torch.tensor(log[k]))) for k in
               ("reward", "kl", "length", "policy", "value", "total"))
    assert all(1 <= n <= section["max_new_tokens"] for n in log["length"])
    after = backbone_weights(lm, clip)
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    assert all(p.grad is None for p in [*lm.model.parameters(), *clip.model.parameters()])
    assert any(not torch.equal(mapper[k], v) for k, v in captioner.mapper.state_dict().items())
    assert all(p.dtype == torch.float32 for p in model.parameters())

    written = captioner.caption(feats[:3])
    assert len(written) == 3 and all(isinstance(c, str) for c in written)
    captioner.save(tmp_path / "mapper")
    assert PrefixCaptioner.load(tmp_path / "mapper", Backbones(clip, lm)).caption(feats[:3]) == written
