"""The methods' table is what chapter 6 scores: a fourth method, added with a row of the table and a
saved model, shows up in chapter 6's scoreboard (smoke profile) with no edit to the chapter."""
import json

import pytest

import vlbridge.methods
from inprocess import run_cells, torch_settings
from vlbridge import backbones
from vlbridge.book import config, store
from vlbridge.methods import METHODS, Method, Saved, prefix_captions, saved_models
from vlbridge.methods.prefix import PrefixCaptioner, PrefixConfig

TOY = Method("a toy method: an untrained prefix captioner", "toy", PrefixCaptioner, lambda *args: {}, "03_grounding",
             (Saved("toy", "toy captioner", PrefixCaptioner.load, prefix_captions),))


def test_every_saved_name_is_unique_and_every_row_loads_with_one_signature():
    names = [s.name for _, s in saved_models()]
    assert len(names) == len(set(names)) == 10
    assert all(callable(s.load) for _, s in saved_models())
    assert [s.name for _, s in saved_models(METHODS + (TOY,))][-1] == "toy"


@pytest.fixture(scope="module")
def scoreboard_with_a_toy(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    with torch_settings(), pytest.MonkeyPatch.context() as patch:
        patch.setenv("VLBRIDGE_RESULTS", str(results))
        for chapter in ("03_grounding", "04_reward_rl", "05_feedback"):  # what chapter 6 loads
            run_cells(chapter, config.merged_parameters(chapter, "smoke"))
        clip, lm = backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")
        toy = PrefixCaptioner(lm, PrefixConfig("micro-clip-smoke:embedding", clip.embed_dim, prefix_tokens=2,
                                               max_new_tokens=8))
        store.save_trained("03_grounding", "toy", config.merged_parameters("03_grounding", "smoke"), toy.save,
                           {"train_seconds": 0.0, "captioned_images": 0})
        patch.setattr(vlbridge.methods, "METHODS", METHODS + (TOY,))
        run_cells("06_evaluation", config.merged_parameters("06_evaluation", "smoke"))
    return json.loads((results / "smoke" / "scoreboard.json").read_text()), toy.trainable_parameters()


def test_a_fourth_method_appears_in_chapter_6s_captioning_and_cost_tables(scoreboard_with_a_toy):
    scoreboard, toy_size = scoreboard_with_a_toy
    captioning, cost = scoreboard["captioning"]["rows"], scoreboard["cost"]["rows"]
    book = ["no image (the LM alone)", "FROMAGe", "ClipCap (supervised)", "ESPER, PPO", "ESPER, GRPO"]
    assert set(captioning) == {*book, "toy captioner"}  # the book's methods keep their rows
    assert "toy captioner" in cost and len(cost) == 9
    f1 = captioning["toy captioner"]["attr_f1"]  # a value with its bootstrap interval
    assert 0.0 <= f1["lo"] <= f1["value"] <= f1["hi"] <= 1.0
    trainable, captioned = cost["toy captioner"]["trainable"], cost["toy captioner"]["captioned_images"]
    assert trainable["value"] == toy_size > 0 and captioned["value"] == 0
    assert trainable["lo"] is None and trainable["hi"] is None  # counts, not estimates: no interval
