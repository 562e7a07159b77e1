"""ILLUME's feedback loop on the smoke backbones: sampling, judging, tuning only the bridge (or LoRA
adapters on a copy of the LM), the decisions a critic leaves in its log, and bad input."""
from dataclasses import replace

import pytest
import torch

from vlbridge import backbones, training, world
from vlbridge import bridge as br
from vlbridge.bridge import Text
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


# ------------------------------------------------------------------ options that train as ILLUME's code does


def test_the_rationale_loss_is_weighted_by_answer_only_rows_over_rationale_rows(grounded):
    """ILLUME's loss (tuning/vqax_magma_ILLUME_tuning.py:79-82, 208): the answer-only rows' mean plus
    (answer-only rows / rationale rows) x the rationale rows' mean."""
    model, items, features = grounded
    kept = illume.gold_rationales(items)[:3]
    answers = illume.answer_only(items)[3:8]
    examples = kept + answers
    asked = illume._prompts(model, features[[e.index for e in examples]], [items[e.index] for e in examples])
    sequences = [[*q, Text(e.answer if e.rationale is None else world.explained(e.answer, e.rationale), learn=True)]
                 for q, e in zip(asked, examples)]
    with torch.no_grad():
        parts = illume.weighted_loss(model.lm, sequences, [e.rationale is not None for e in examples], 5 / 3)
        rationale_alone = br.teacher_forced_loss(model.lm, sequences[:3])
        answers_alone = br.teacher_forced_loss(model.lm, sequences[3:])
    assert parts["rationale_loss"].item() == pytest.approx(rationale_alone.item(), rel=1e-5)
    assert parts["answer_loss"].item() == pytest.approx(answers_alone.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx(answers_alone.item() + 5 / 3 * rationale_alone.item(), rel=1e-5)

    # In tuning, the weight is the step's answer-only rows over its rationale rows: 8 rows at 3 answers
    # per rationale are 2 rationale rows and 6 answer rows, a weight of 3.
    config = replace(CONFIG, answer_only_per_rationale=3.0, weight_rationale_loss=True)
    log = illume.tune(illume.tunable_copy(model, config), features, items, kept, illume.answer_only(items), config,
                      steps=2)
    for total, answer_part, rationale_part in zip(log["loss"], log["answer_loss"], log["rationale_loss"]):
        assert total == pytest.approx(answer_part + 3.0 * rationale_part, abs=1e-5)
    assert "answer_loss" not in illume.tune(illume.tunable_copy(model, CONFIG), features, items, kept,
                                            illume.answer_only(items), CONFIG, steps=1)  # the default: one mean


def test_samples_per_temperature_takes_n_at_each_temperature(grounded):
    """ILLUME's code samples n at every temperature (vqax_magma_eval.py:154-167); by default N in all."""
    model, items, features = grounded
    config = replace(CONFIG, temperatures=(1e-4, 1.0), samples_per_temperature=True)
    drawn = illume.sample_rationales(model, features[:3], items[:3], config, torch.Generator().manual_seed(1))
    assert config.candidates == 6 and [len(c) for c in drawn] == [6] * 3
    # Even slots come from the near-greedy temperature: the same text three times per item.
    assert all(len(set(c[0::2])) == 1 for c in drawn)
    assert replace(CONFIG, temperatures=(1e-4, 1.0)).candidates == CONFIG.samples


def test_the_magma_prompt_writes_and_reads_illume_s_spelling():
    magma, micro = illume.PROMPTS["magma"], illume.PROMPTS["microworld"]
    assert magma.ask("what is he doing?") == "Q: what is he doing? A:"
    assert magma.ask("what is he doing?", "surfing") == "Q: what is he doing? A: surfing, seeing that"
    assert magma.split(" " + magma.explained("surfing", "he is on a wave")) == ("surfing", "he is on a wave")
    assert magma.split("surfing") == ("surfing", None)
    # The microworld's spelling is the world's own (the book's default, unchanged).
    assert (micro.ask, micro.explained, micro.split) == (world.vqa_prompt, world.explained, world.split_answer)
    with pytest.raises(ValueError, match="prompt must be one of 'microworld', 'magma', got 'qa'"):
        illume.FeedbackConfig(prompt="qa")


def test_with_tune_bridge_false_only_the_adapters_move(grounded):
    """ILLUME's code trains MAGMA's adapters only (tuning.py:131-145); weight decay must not move the bridge."""
    model, items, features = grounded
    config = replace(CONFIG, rounds=1, lora_rank=2, tune_bridge=False, weight_decay=0.2)
    loop = illume.FeedbackLoop(model, features, items, config)
    bridge = state(loop.model.image_to_lm)
    adapters = {n: p.clone() for n, p in loop.model.lm.model.named_parameters() if "lora_B" in n}
    loop.learn(1, KeepFirst())
    assert same(state(loop.model.image_to_lm), bridge)
    after = dict(loop.model.lm.model.named_parameters())
    assert any(not torch.equal(adapters[n], after[n]) for n in adapters)
    assert all(p.requires_grad for p in illume.tunable_copy(model, CONFIG).image_to_lm.parameters())  # the default
    with pytest.raises(ValueError, match="tune_bridge False leaves nothing to tune unless lora_rank > 0"):
        replace(CONFIG, tune_bridge=False)


def test_tuning_uses_the_configured_adamw_betas_and_weight_decay(grounded, monkeypatch):
    model, items, features = grounded
    made = []
    monkeypatch.setattr(illume, "adamw", lambda *args: made.append(training.adamw(*args)) or made[-1])
    config = replace(CONFIG, betas=(0.9, 0.99), weight_decay=0.2)
    illume.tune(illume.tunable_copy(model, config), features, items, [], illume.answer_only(items), config, steps=1)
    groups = made[0].param_groups
    assert [g["betas"] for g in groups] == [(0.9, 0.99)] * 2
    assert [g["weight_decay"] for g in groups] == [0.2, 0.0]  # matrices decay, biases and norms do not
    assert CONFIG.betas == (0.9, 0.95) and CONFIG.weight_decay == 0.0  # the book's, unchanged
