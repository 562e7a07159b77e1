"""The paper-esper profile's code path, end to end, on tiny random-init models of the real families (a
GPT-2 with GPT-2's tokenizer layout: byte-level BPE, <|endoftext|> as bos, eos and unk, no pad token;
an open_clip ViT) saved locally in the real formats, and a COCO Karpathy split file with rendered
microworld images: load both backbones by path, encode Karpathy's training images, train ESPER's PPO
with the profile's hyperparameters (the official code's options on) for a few steps, caption; then
caption and score a Karpathy test split as chapter 4 does with real data."""
import math

import pytest
import torch

from tiny_models import backbone_weights, gpt2_bpe, paper_profile, save_tiny_karpathy, save_tiny_open_clip, tiny_gpt2
from vlbridge import backbones, bridge, features, world
from vlbridge.book import config, recipes
from vlbridge.contracts import Backbones
from vlbridge.data import load_karpathy, open_image
from vlbridge.features import karpathy_features
from vlbridge.methods.clipcap import ClipCapConfig, fit_supervised
from vlbridge.methods.esper import Esper, EsperConfig
from vlbridge.methods.prefix import STOP, PrefixCaptioner, PrefixConfig
from vlbridge.testsets.karpathy import evaluate_karpathy_test

SPLITS = ["train", "restval", "train", "val", "restval", "test", "train", "restval"]  # 6 training images
TRAIN = 6
TEST_SPLITS = ["test", "val", "test", "train", "test", "test"]  # 4 test images among others
TEST = 4
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
    save_tiny_karpathy(root / "coco-test", TEST_SPLITS, start=300)  # other scenes than the training ones
    return root


def test_the_profile_holds_the_papers_values():
    profile = paper_profile("paper-esper")
    assert set(profile) == {"description", "common", "04_reward_rl"}
    assert profile["common"] == {"seed": 0, "threads": 8, "device": "cuda", "dtype": "float32",
                                  "clip_model": "ViT-B-32/openai", "lm_model": "gpt2"}
    section = profile["04_reward_rl"]
    paper = {"image_input": "embedding", "prefix_tokens": 10, "max_new_tokens": 20, "episodes": 128,
             "temperature": 0.7, "kl_coef": 0.15, "contrastive_reward": False, "reward_scale": 50.0,
             "reward_shift": 0.2, "lr": 1e-5, "test_images": 5000,
             # the official code's choices (train/code/: policy.py:109-112, esper.yml:21-23, lightning.py:1140-1142)
             "exact_length": True, "logprobs_at_unit_temperature": True, "entropy_reward_coef": 0.1,
             "entropy_reward_threshold": 70.0, "entropy_reward_bias": 3.0, "weight_decay": 0.01,
             "adam_beta2": 0.999, "clip_gradients": False,
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


def test_the_profile_turns_on_the_official_training_and_the_book_keeps_its_own():
    """recipes.esper_config carries each option to EsperConfig: on in the paper profile, and at the
    book's behaviour (T log-probs, stop at a sentence end, no entropy reward, AdamW (0.9, 0.95)
    without decay, clipping at 1) by default."""
    if "04_reward_rl" not in config.chapters():
        pytest.skip("book/04_reward_rl.py does not exist yet")
    paper = recipes.esper_config(config.merged_parameters("04_reward_rl", "paper-esper"), "ppo")
    assert (paper.temperature, paper.logprob_temperature, paper.exact_length) == (0.7, 1.0, True)
    assert (paper.entropy_reward_coef, paper.entropy_reward_threshold, paper.entropy_reward_bias) == (0.1, 70.0, 3.0)
    assert (paper.weight_decay, paper.betas, paper.clip_grad) == (0.01, (0.9, 0.999), None)
    book = recipes.esper_config(config.merged_parameters("04_reward_rl", "default"), "ppo")
    assert (book.logprob_temperature, book.exact_length, book.entropy_reward_coef, book.entropy_reward_bias) == (
        None, False, 0.0, 0.0)
    assert (book.weight_decay, book.betas, book.clip_grad) == (0.0, (0.9, 0.95), 1.0)


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
    paper = recipes.esper_config(config.merged_parameters("04_reward_rl", "paper-esper"), "ppo")
    model = Esper(captioner, clip, EsperConfig(**(vars(paper) | dict(steps=2, batch_size=4, minibatches=2,
                                                                     warmup_steps=1))))
    frozen = {k: v.clone() for k, v in backbone_weights(lm, clip).items()}
    mapper = {k: v.clone() for k, v in captioner.mapper.state_dict().items()}
    log = model.fit(feats, feats[:, :clip.embed_dim])

    assert all(len(log[k]) == 2 and all(map(torch.isfinite, torch.tensor(log[k]))) for k in
               ("reward", "kl", "length", "policy", "value", "total"))
    assert log["length"] == [section["max_new_tokens"]] * 2  # exact_length: every caption 20 tokens
    after = backbone_weights(lm, clip)
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    assert all(p.grad is None for p in [*lm.model.parameters(), *clip.model.parameters()])
    assert any(not torch.equal(mapper[k], v) for k, v in captioner.mapper.state_dict().items())
    assert all(p.dtype == torch.float32 for p in model.parameters())

    written = captioner.caption(feats[:3])
    assert len(written) == 3 and all(isinstance(c, str) for c in written)
    captioner.save(tmp_path / "mapper")
    assert PrefixCaptioner.load(tmp_path / "mapper", Backbones(clip, lm)).caption(feats[:3]) == written


def test_the_karpathy_test_split_is_captioned_and_scored_end_to_end(local, capsys):
    """Chapter 4's last section with real data: every model captions each Karpathy test image (and
    only those), greedily, and is scored against the image's five references."""
    profile = paper_profile("paper-esper")
    section = profile["04_reward_rl"]
    lm = backbones.load_lm(str(local / "gpt2"))
    clip = backbones.load_clip(f"local-dir:{local / 'clip'}")
    captioners = {}
    for seed, name in enumerate(("ClipCap", "ESPER-GRPO", "ESPER-PPO")):  # three different mappers
        torch.manual_seed(seed)
        captioners[name] = PrefixCaptioner(lm, PrefixConfig(
            encoder=f"{profile['common']['clip_model']}:{section['image_input']}", feature_dim=CLIP_DIM,
            prefix_tokens=section["prefix_tokens"], max_new_tokens=section["max_new_tokens"]))
    json_path, images = local / "coco-test" / "dataset_coco.json", local / "coco-test" / "images"
    result = evaluate_karpathy_test(captioners, clip, json_path, images, section["image_input"], section["test_images"])

    assert [r.split for r in result.records] == ["test"] * TEST
    assert [r.cocoid for r in result.records] == [300, 302, 304, 305]  # the test entries, in file order
    assert all(len(r.captions) == 5 for r in result.records)
    assert set(result.captions) == set(result.scores) == set(captioners)
    for name, captions in result.captions.items():
        features = features_of(result.records, clip, section["image_input"])
        assert captions == captioners[name].caption(features)  # greedy, after the chapter's prompt
        scores = result.scores[name]
        assert set(scores) == {"bleu4", "meteor", "cider", "clipscore"}  # java is installed: METEOR runs
        assert all(math.isfinite(v) for v in scores.values())
        assert 0 <= scores["bleu4"] <= 1 and 0 <= scores["meteor"] <= 1 and 0 <= scores["cider"] <= 10
        assert 0 <= scores["clipscore"] <= 2.5
    table = capsys.readouterr().out
    assert f"COCO Karpathy test, {TEST} images" in table
    assert table.count("the paper reports") == 2  # ClipCap's and ESPER-PPO's rows; GRPO is the book's own
    assert "ESPER (Yu, Chung et al., arXiv 2205.12630)" in table and "ClipCap (Mokady et al. 2021" in table

    fewer = evaluate_karpathy_test({"ClipCap": captioners["ClipCap"]}, clip, json_path, images,
                                   section["image_input"], 2)
    assert [r.cocoid for r in fewer.records] == [300, 302]
    assert fewer.captions["ClipCap"] == result.captions["ClipCap"][:2]


def features_of(records, clip, image_input):
    return features.image_features(clip, [open_image(r.image_path) for r in records], image_input)


def test_clipcap_is_stopped_by_the_karpathy_val_images_captions(local):
    """With real data, the upper bound's held-out loss is on Karpathy's val split: only its images
    (the one val entry of SPLITS), with their first caption, and training logs that loss and can stop."""
    profile = paper_profile("paper-esper")
    p = config.merged_parameters("04_reward_rl", "paper-esper") | {
        "train_json": str(local / "coco" / "dataset_coco.json"), "train_images": str(local / "coco" / "images"),
        "clip_model": f"local-dir:{local / 'clip'}", "validation_scenes": 5}
    lm = backbones.load_lm(str(local / "gpt2"))
    clip = backbones.load_clip(p["clip_model"])
    rows, captions = recipes.captioned_pictures(p, clip, held_out=True)
    val = load_karpathy(local / "coco" / "dataset_coco.json", local / "coco" / "images", splits=("val",))
    assert len(rows) == len(captions) == 1 and captions == [val[0].captions[0]]
    assert torch.allclose(rows, features_of(val, clip, profile["04_reward_rl"]["image_input"]), atol=1e-5)

    captioner = PrefixCaptioner(lm, PrefixConfig(f"{p['clip_model']}:{p['image_input']}", rows.shape[1],
                                                 p["prefix_tokens"], max_new_tokens=p["max_new_tokens"]))
    train = features_of(load_karpathy(local / "coco" / "dataset_coco.json", local / "coco" / "images")[:TRAIN],
                        clip, p["image_input"])
    log = fit_supervised(captioner, train, lambda i, step: "a red circle .",
                         ClipCapConfig(steps=40, lr=1e-2, validation_every=2, patience=1, min_delta=10.0),
                         validation=(rows, captions))
    assert log["steps"] == 4 and log["validation_step"] == [2, 4]  # no loss beats the first by 10 nats: stopped
    assert all(math.isfinite(v) and v > 0 for v in log["validation"])
