"""The paper-fromage profile's code path, end to end, on tiny random-init models of the real families
(an OPT with a byte-level BPE tokenizer, an open_clip ViT) saved locally in the real formats, and a
CC3M TSV in FROMAGe's layout with rendered microworld images: load both backbones in bf16 by path,
encode the TSV's images, train FROMAGe with the profile's hyperparameters for a few steps, caption
and retrieve; and evaluate it on the paper's test sets (VIST, VisDial) exported in their real formats."""

import json
import shutil

import pytest
import torch

from tiny_models import backbone_weights, byte_level_bpe, paper_profile, save_tiny_open_clip, tiny_opt
from vlbridge import backbones, world
from vlbridge.book import config, recipes
from vlbridge.data import DataError, load_visdial
from vlbridge.features import cc3m_pairs, image_file_features
from vlbridge.methods.fromage import Fromage, FromageConfig
from vlbridge.testsets import fromage as fb
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


def test_the_profile_trains_as_the_official_code_and_names_the_papers_test_sets():
    section = paper_profile("paper-fromage")["03_grounding"]
    assert (section["interleave_per"], section["tied_ret"], section["max_caption_tokens"]) == ("batch", True, 24)
    assert all(section[k].startswith("data/vist/") for k in ("vist_json", "vist_images"))
    assert all(section[k].startswith("data/visdial/") for k in ("visdial_json", "visdial_images", "visdial_dense"))


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


STORIES, DIALOGS = 4, 3


@pytest.fixture(scope="module")
def test_sets(local):
    """VIST SIS and VisDial 1.0 as exported, and a dense relevance file in VisDial's layout grading
    round 3 (round_id counts from 1) of each dialog: its true answer 1, the next option 0.5."""
    export("vist", local / "vist", start=100, count=STORIES, image_size=32)
    export("visdial", local / "visdial", start=200, count=DIALOGS, image_size=32)
    dialogs = json.loads((local / "visdial" / "visdial.json").read_text())["data"]["dialogs"]
    dense = []
    for d in dialogs:
        true = d["dialog"][2]["gt_index"]
        grades = [0.0] * 100
        grades[true], grades[(true + 1) % 100] = 1.0, 0.5
        dense.append({"image_id": d["image_id"], "round_id": 3, "gt_relevance": grades})
    (local / "visdial" / "dense.json").write_text(json.dumps(dense))
    return {"vist_json": str(local / "vist" / "sis.json"), "vist_images": str(local / "vist" / "images"),
            "visdial_json": str(local / "visdial" / "visdial.json"),
            "visdial_images": str(local / "visdial" / "images"), "visdial_dense": str(local / "visdial" / "dense.json")}


def test_the_papers_evaluations_end_to_end(local, test_sets):
    """The profile's training options reach the model; a briefly trained model is then evaluated on
    every test set: each metric is a rate, recall grows with k, and the paper's numbers are printed."""
    lm, clip = backbones.load_lm(str(local / "opt")), backbones.load_clip(str(local / "clip"))
    params = config.merged_parameters("03_grounding", "paper-fromage") | {
        "steps": 2, "batch_size": 4, "retrieval_batch_size": 4, "warmup_steps": 1, "micro_batch": 0}
    model = Fromage(clip, lm, recipes.fromage_config(params))
    assert (model.config.interleave_per, model.config.tied_ret, model.config.max_caption_tokens) == ("batch", True, 24)
    embeddings, captions = cc3m_pairs(local / "cc3m" / "cc3m.tsv", local / "cc3m" / "images", clip)
    model.fit(embeddings, lambda i, step: captions[i])

    result = fb.fromage_benchmarks(model, clip, **test_sets)
    tasks = ("vist_1cap", "vist_5cap", "vist_5cap4img", "vist_1cap_clip", "vist_5cap_clip", "visdial_t2i",
             "visdial_t2i_clip", "visdial_t2i_by_image", "visdial_it2t")
    recalls = [f"{task}_r{k}" for task in tasks for k in (1, 5, 10)]
    assert set(result.metrics) == {*recalls, "visdial_it2t_mrr", "visdial_it2t_ndcg"}
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
    for task in tasks:
        assert result.metrics[f"{task}_r1"] <= result.metrics[f"{task}_r5"] <= result.metrics[f"{task}_r10"], task
    # Every story's five pictures are candidates (less, for each story, its own first four).
    assert result.counts == {"VIST stories": STORIES, "VIST candidate pictures": 5 * STORIES,
                             "VisDial dialogs": DIALOGS, "VisDial rounds": 10 * DIALOGS}
    table = result.table()
    assert f"{fb.PAPER['vist_5cap4img_r1']:.4f}" in table and f"{fb.PAPER['visdial_it2t_ndcg']:.4f}" in table
    assert "the paper's" in table and "NDCG: not computed" not in table
    without_dense = fb.fromage_benchmarks(model, clip, visdial_json=test_sets["visdial_json"],
                                       visdial_images=test_sets["visdial_images"])
    assert "visdial_it2t_ndcg" not in without_dense.metrics and "NDCG: not computed" in without_dense.table()


class Oracle:
    """A stand-in model that knows the answers: it scores each round's true answer 0, the option the
    dense file grades 0.5 next (-1), the rest -2; and its [RET] for dialogue i is image i's embedding."""

    def __init__(self, dialogs, dense):
        self.scores = {}
        for d in dialogs:
            for r, turn in enumerate(d.rounds):
                self.scores[fb.answer_context(d, r), f" {turn.answer}"] = 0.0
            graded_round, grades = dense[d.image_id]
            half = grades.index(0.5)
            self.scores[fb.answer_context(d, graded_round), f" {d.rounds[graded_round].options[half]}"] = -1.0

    def log_likelihood(self, contexts, continuations, batch_size):
        return torch.tensor([self.scores.get((c[-1], t), -2.0) for c, t in zip(contexts, continuations)])

    def text_retrieval(self, texts, batch_size):
        return torch.eye(len(texts))

    def image_retrieval(self, features):
        return torch.eye(len(features))


def test_a_model_that_knows_the_answers_scores_one_everywhere(local, test_sets):
    """R@k, MRR and VisDial's NDCG (over the options with relevance > 0) are 1 for a model that ranks
    the truth first and the dense file's grades in order; CLIP's own retrieval is a rate."""
    clip = backbones.load_clip(str(local / "clip"))
    dialogs = load_visdial(test_sets["visdial_json"], test_sets["visdial_images"])
    dense = fb.load_visdial_dense(test_sets["visdial_dense"])
    oracle = Oracle(dialogs, dense)
    features = image_file_features(clip, [d.image_path for d in dialogs])
    answers = fb.visdial_answer_ranking(oracle, dialogs, features, dense)
    assert answers == {"visdial_it2t_r1": 1.0, "visdial_it2t_r5": 1.0, "visdial_it2t_r10": 1.0,
                       "visdial_it2t_mrr": 1.0, "visdial_it2t_ndcg": pytest.approx(1.0)}
    retrieval = fb.visdial_image_retrieval(oracle, clip, dialogs, features)
    assert all(retrieval[f"{task}_r1"] == 1.0 for task in ("visdial_t2i", "visdial_t2i_by_image"))
    assert 0.0 <= retrieval["visdial_t2i_clip_r1"] <= 1.0
    # Ranked the other way round, the graded option first, NDCG drops below 1: it reads the grades.
    swapped = {key: -1.0 - value for key, value in oracle.scores.items()}
    oracle.scores = swapped
    assert fb.visdial_answer_ranking(oracle, dialogs, features, dense)["visdial_it2t_ndcg"] < 1.0


def test_the_dense_relevance_file_is_checked(tmp_path, test_sets):
    bad = tmp_path / "dense.json"
    for entries, message in [({"image_id": 1}, "expected a list"),
                             ([{"image_id": 1, "round_id": 0, "gt_relevance": [1]}], "round_id counts rounds from 1"),
                             ([{"image_id": 1, "round_id": 1, "gt_relevance": [-1]}], "numbers >= 0"),
                             ([{"image_id": 1, "gt_relevance": [1]}], "round_id")]:
        bad.write_text(json.dumps(entries))
        with pytest.raises(DataError, match=message):
            fb.load_visdial_dense(bad)
    dialogs = load_visdial(test_sets["visdial_json"])
    bad.write_text(json.dumps([{"image_id": dialogs[0].image_id, "round_id": 11, "gt_relevance": [1.0] * 100}]))
    with pytest.raises(DataError, match="does not fit its dialog"):
        fb.visdial_answer_ranking(None, dialogs[:1], torch.zeros(1, 16), fb.load_visdial_dense(bad))  # before scoring


def test_vist_skips_the_stories_whose_pictures_are_gone_and_ranks_every_picture_left(test_sets, tmp_path):
    """As the official code: a story with a picture missing (gone from Flickr) is not asked, and every
    picture that is there stays a candidate, that story's others too."""
    images = tmp_path / "images"
    shutil.copytree(test_sets["vist_images"], images)
    stories, pictures = fb.vist_with_pictures(test_sets["vist_json"], test_sets["vist_images"])
    (images / f"{stories[1].image_ids[2]}.png").unlink()
    fewer, left = fb.vist_with_pictures(test_sets["vist_json"], images)
    assert [s.story_id for s in fewer] == [s.story_id for i, s in enumerate(stories) if i != 1]
    assert list(left) == [photo for photo in pictures if photo != stories[1].image_ids[2]]
    with pytest.raises(DataError, match="no story has all its pictures in"):
        fb.vist_with_pictures(test_sets["vist_json"], tmp_path / "nowhere")
