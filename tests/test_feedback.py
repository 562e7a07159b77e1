"""ILLUME's feedback loop on the smoke backbones: sampling, judging, tuning only the bridge (or LoRA
adapters on a copy of the LM), the decisions a critic leaves in its log, and bad input."""
from dataclasses import replace

import pytest
import torch

from vlbridge import backbones, world
from vlbridge.contracts import Backbones
from vlbridge.critics import DecisionLog, FeedbackItem, RecordedCritic, WorldCritic, world_items
from vlbridge.eval import vqa_scores
from vlbridge.methods import illume
from vlbridge.methods.fromage import Fromage, FromageConfig
from vlbridge.resume import RunCheckpoints
from vlbridge.training import Run

CONFIG = illume.FeedbackConfig(samples=3, temperatures=(0.3, 1.0), max_new_tokens=12, rounds=2, items_per_round=6,
                           steps_per_round=4, batch_size=8, lr=1e-2, warmup_steps=1)


class KeepFirst:
    """Keeps the first candidate of every item: the kept pool is then known in advance."""
    name = "keep-first"

    def judge(self, item, candidates):
        return [i == 0 for i in range(len(candidates))]


@pytest.fixture(scope="module")
def grounded():
    clip, lm = backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")
    torch.manual_seed(0)
    model = Fromage(clip, lm, FromageConfig(image_tokens=2))
    items = world_items(0, 16)
    features = model.features(world.render_array([it.scene for it in items], clip.image_size))
    return model, items, features


def state(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sampling_gives_n_rationales_per_item_reproducibly(grounded):
    model, items, features = grounded
    draw = [illume.sample_rationales(model, features[:4], items[:4], CONFIG, torch.Generator().manual_seed(1))
            for _ in range(2)]
    assert draw[0] == draw[1]
    assert [len(c) for c in draw[0]] == [CONFIG.samples] * 4
    assert all(isinstance(r, str) and not r.endswith(".") for c in draw[0] for r in c)


def test_the_loop_tunes_a_copy_of_the_bridge_and_never_the_lm(grounded):
    model, items, features = grounded
    lm_before, bridge_before = state(model.lm.model), state(model.image_to_lm)
    loop = illume.FeedbackLoop(model, features, items, CONFIG)
    logs = loop.run(KeepFirst(), evaluate=lambda m: vqa_scores(illume.answer(m, features[:4], items[:4]), items[:4],
                                                               WorldCritic()))
    assert [log.round for log in logs] == [0, 1, 2]
    for log in logs[1:]:
        assert (log.judged, log.candidates, log.kept) == (6, 18, 6)  # KeepFirst keeps one of three
        assert log.accept_rate == pytest.approx(1 / 3)
        assert set(log.evaluation) == {"answer_acc", "rationale_acc"}
        assert len(log.train["loss"]) == CONFIG.steps_per_round
    # Empty samples are never kept, and a rationale is kept at most once per item.
    assert len(loop.kept) == sum(bool(cands[0]) for r in (1, 2) for cands in loop.candidates(r)[1])
    assert same(state(model.lm.model), lm_before) and same(state(model.image_to_lm), bridge_before)
    assert loop.model.lm is model.lm and loop.model.clip is model.clip  # shared, not copied
    assert not same(state(loop.model.image_to_lm), bridge_before)


def test_lora_adapters_train_on_a_copy_of_the_lm(grounded):
    model, items, features = grounded
    lm_before = state(model.lm.model)
    loop = illume.FeedbackLoop(model, features, items, replace(CONFIG, lora_rank=2, rounds=1))
    adapters = {n: p.clone() for n, p in loop.model.lm.model.named_parameters() if "lora_" in n}
    assert adapters and all(p.requires_grad for n, p in loop.model.lm.model.named_parameters() if "lora_" in n)
    loop.learn(1, KeepFirst())
    after = dict(loop.model.lm.model.named_parameters())
    assert any(not torch.equal(adapters[n], after[n]) for n in adapters if "lora_B" in n)  # B starts at 0
    assert same(state(model.lm.model), lm_before)  # the shared LM has no adapters and did not move
    adapted = loop.model.lm.model.state_dict()
    for key, value in lm_before.items():  # nor did the copy's own weights (peft wraps them as base_layer)
        module, leaf = key.rsplit(".", 1)
        assert torch.equal(adapted.get(key, adapted.get(f"{module}.base_layer.{leaf}")), value), key


def test_a_tuned_model_saves_and_loads_with_its_adapters(grounded, tmp_path):
    model, items, features = grounded
    for rank in (0, 2):
        config = replace(CONFIG, lora_rank=rank, rounds=1)
        loop = illume.FeedbackLoop(model, features, items, config)
        loop.learn(1, KeepFirst())
        illume.save_tuned(loop.model, tmp_path / f"r{rank}", config)
        assert (tmp_path / f"r{rank}" / illume.LORA).is_dir() == (rank > 0)
        lm_before = state(model.lm.model)
        loaded = illume.load_tuned(tmp_path / f"r{rank}", Backbones(model.clip, model.lm))
        assert same(state(model.lm.model), lm_before)  # adapters go on a copy, never on the shared LM
        assert illume.answer(loaded, features[:6], items[:6]) == illume.answer(loop.model, features[:6], items[:6])


def test_tuning_with_adapters_resumes_as_a_run_never_stopped(grounded, tmp_path):
    """A tuning run's checkpoints hold the LoRA adapters too (they live in the LM's copy, not in the
    bridge): resumed from step 1 of 4, it ends with the weights of a run never stopped."""
    model, items, features = grounded
    config = replace(CONFIG, lora_rank=2)

    def tuned(checkpoints=None) -> dict:
        copy = illume.tunable_copy(model, config)
        illume.tune(copy, features, items, illume.gold_rationales(items)[:4], illume.answer_only(items), config,
                    steps=4, run=Run(checkpoints=checkpoints))
        return {name: p.detach().clone() for name, p in illume.trainable_module(copy).named_parameters()}

    whole = tuned()
    assert any("lora_B" in name and p.abs().sum() > 0 for name, p in whole.items())  # B starts at 0: tuned
    tuned(RunCheckpoints(tmp_path, every=2))  # saves after step 1 (the last step, 3, needs none)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000001"]
    assert same(tuned(RunCheckpoints(tmp_path, every=2, resume=True, say=lambda text: None)), whole)


def test_a_human_round_replays_the_decisions_in_the_log(grounded, tmp_path):
    model, items, features = grounded
    log = DecisionLog(tmp_path / "decisions.jsonl")
    first = illume.FeedbackLoop(model, features, items, replace(CONFIG, rounds=1))
    first.run(KeepFirst(), decisions=log)
    assert len(log.decisions(1)) == CONFIG.items_per_round
    # The same round again, judged from the log (as a person's panel leaves it): the same pool.
    second = illume.FeedbackLoop(model, features, items, replace(CONFIG, rounds=1))
    second.learn(1, RecordedCritic(log, 1))
    assert second.kept == first.kept
    assert same(state(second.model.image_to_lm), state(first.model.image_to_lm))


def test_sft_on_gold_rationales_lowers_the_loss(grounded):
    model, items, features = grounded
    _, log = illume.sft(model, features, items, replace(CONFIG, lr=3e-2), steps=30, labelled=8)
    assert sum(log["loss"][-5:]) < sum(log["loss"][:5])


def test_bad_input_is_refused_with_a_clear_message(grounded):
    model, items, features = grounded
    with pytest.raises(ValueError, match="need 200 items; got 16"):
        illume.FeedbackLoop(model, features, items, replace(CONFIG, rounds=2, items_per_round=100))
    with pytest.raises(ValueError, match="16 feature rows but 15 items"):
        illume.FeedbackLoop(model, features, items[:15], CONFIG)
    with pytest.raises(ValueError, match="got no items"):
        illume.answer(model, features[:0], [])
    loop = illume.FeedbackLoop(model, features, items, CONFIG)
    with pytest.raises(ValueError, match="round must be between 1 and 2"):
        loop.candidates(3)

    class Mute:
        def judge(self, item, candidates):
            return []

    with pytest.raises(ValueError, match="returned 0 decisions for 3 candidates of item 0"):
        loop.learn(1, Mute())

    class KeepNothing:
        def judge(self, item, candidates):
            return [False] * len(candidates)

    # Nothing kept yet: the round tunes on the answers alone.
    assert illume.FeedbackLoop(model, features, items, CONFIG).learn(1, KeepNothing()).kept == 0
    with pytest.raises(ValueError, match="nothing to tune on"):
        illume.tune(model, features, items, [], [], CONFIG, steps=1)
    with pytest.raises(ValueError, match="labelled must be between 1 and 16"):
        illume.sft(model, features, items, CONFIG, steps=1, labelled=0)
    unexplained = [FeedbackItem("q1", "what ?", "red")]
    with pytest.raises(ValueError, match="e.g. q1"):
        illume.sft(model, features[:1], unexplained, CONFIG, steps=1)
