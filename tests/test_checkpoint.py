"""Bridge checkpoints: only the trainable parts are saved, a round trip gives the same model, and every
way a load can go wrong (other backbones, another config, missing or mismatched files) is a clear error
that leaves the module as it was."""
import copy
import dataclasses
import json

import pytest
import torch
from safetensors import safe_open

from vlbridge import backbones, checkpoint, world
from vlbridge.checkpoint import CheckpointError, CheckpointNotFoundError
from vlbridge.methods.fromage import Fromage, FromageConfig

NAMES = {"clip": "micro-clip-smoke", "lm": "micro-lm-smoke"}


@pytest.fixture(scope="module")
def trained():
    clip, lm = backbones.load_clip(NAMES["clip"]), backbones.load_lm(NAMES["lm"])
    pool = world.scenes(0, 32)
    embeddings = clip.encode_images(world.render_array(pool, clip.image_size))
    model = Fromage(clip, lm, FromageConfig(steps=4, batch_size=8, lr=1e-2, image_tokens=2))
    model.fit(embeddings, lambda i, step: world.caption(pool[i], world.scene_rng(pool[i].seed, step)))
    return model, clip, lm, embeddings


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    model, clip, lm, _ = trained
    folder = tmp_path_factory.mktemp("bridge")
    checkpoint.save(folder, model, dataclasses.asdict(model.config), NAMES, checkpoint.backbone_dims(clip, lm))
    return folder


def fresh(trained, **config) -> Fromage:
    model, clip, lm, _ = trained
    return Fromage(clip, lm, dataclasses.replace(model.config, **config))


def state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_round_trip_gives_the_same_parameters_captions_and_retrieval(trained, saved):
    model, clip, lm, embeddings = trained
    meta = json.loads((saved / "bridge.json").read_text())
    assert meta["format"] == 1 and meta["method"] == "Fromage" and meta["backbones"] == NAMES
    assert meta["dims"] == {"clip_embed_dim": clip.embed_dim, "lm_hidden_size": lm.embed_dim,
                            "lm_vocab_size": lm.model.get_input_embeddings().num_embeddings}
    again = Fromage(clip, lm, FromageConfig(**checkpoint.read_meta(saved)["config"]))
    assert not all(torch.equal(a, b) for a, b in zip(again.parameters(), model.parameters()))
    config = checkpoint.load(saved, again, NAMES, checkpoint.backbone_dims(clip, lm))
    assert config == dataclasses.asdict(model.config)
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        assert torch.equal(a, b), name
    assert again.caption(embeddings[:3], max_new_tokens=8) == model.caption(embeddings[:3], max_new_tokens=8)
    queries = ["a red circle .", ["there is", embeddings[0], "a blue square ."]]
    assert torch.equal(again.text_retrieval(queries), model.text_retrieval(queries))
    assert torch.equal(again.image_retrieval(embeddings), model.image_retrieval(embeddings))


def test_only_the_bridge_is_saved_never_the_backbones(trained, saved):
    model, clip, lm, _ = trained
    with safe_open(str(saved / "bridge.safetensors"), "pt") as f:
        keys = set(f.keys())
        sizes = sum(f.get_tensor(k).numel() for k in keys)
    assert keys == {name for name, _ in model.named_parameters()}
    assert not any(k.startswith(("lm.", "clip.", "model.")) for k in keys)
    assert sizes == model.trainable_parameters()
    assert sizes < sum(p.numel() for p in lm.model.parameters()) / 2
    assert (saved / "bridge.safetensors").stat().st_size < 4 * sizes + 4096  # fp32 + a small header


def test_other_backbones_are_refused_by_name_and_by_dims(trained, saved):
    model, clip, lm, _ = trained
    module = fresh(trained)
    before = state(module)
    with pytest.raises(CheckpointError, match="bridge.json: this bridge was trained on lm 'micro-lm-smoke', "
                                              "not 'micro-lm'; load it with the same backbones"):
        checkpoint.load(saved, module, {**NAMES, "lm": "micro-lm"})
    with pytest.raises(CheckpointError, match="trained on clip 'micro-clip-smoke', but no clip was given"):
        checkpoint.load(saved, module, {"lm": NAMES["lm"]})
    with pytest.raises(CheckpointError, match=r"with lm_vocab_size \d+, the given ones have 4"):
        checkpoint.load(saved, module, NAMES, {**checkpoint.backbone_dims(clip, lm), "lm_vocab_size": 4})
    assert all(torch.equal(before[k], v) for k, v in module.named_parameters())


def test_another_config_is_an_error_naming_the_parameter_and_both_shapes(trained, saved):
    module = fresh(trained, image_tokens=3)
    before = state(module)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(saved, module, NAMES)
    message = str(info.value)
    assert "bridge.safetensors" in message and "'image_to_lm.net.weight'" in message
    rows = module.image_to_lm.net.weight.shape[0]
    assert f"saved with shape ({rows // 3 * 2}, " in message and f"this Fromage has ({rows}, " in message
    assert all(torch.equal(before[k], v) for k, v in module.named_parameters())  # nothing half-loaded
    with pytest.raises(CheckpointError, match="this is a Fromage bridge, not a Linear"):
        checkpoint.load(saved, torch.nn.Linear(2, 2), NAMES)


def test_missing_files_say_where_and_what(trained, saved, tmp_path):
    with pytest.raises(CheckpointNotFoundError, match=r"nowhere: the folder does not exist \(expected bridge.json "
                                                      "and bridge.safetensors"):
        checkpoint.load(tmp_path / "nowhere", torch.nn.Linear(2, 2), NAMES)
    with pytest.raises(FileNotFoundError, match="there is no bridge.json"):
        checkpoint.read_meta(tmp_path)
    (tmp_path / "bridge.json").write_bytes((saved / "bridge.json").read_bytes())
    with pytest.raises(CheckpointNotFoundError, match="holds bridge.json but not bridge.safetensors"):
        checkpoint.load(tmp_path, fresh(trained), NAMES)


def test_tensors_from_another_save_are_detected_and_bad_configs_write_nothing(trained, saved, tmp_path):
    model, *_ = trained
    for name in ("bridge.json", "bridge.safetensors"):
        (tmp_path / name).write_bytes((saved / name).read_bytes())
    other = fresh(trained)
    checkpoint.save(tmp_path / "other", other, {}, NAMES)
    (tmp_path / "bridge.safetensors").write_bytes((tmp_path / "other" / "bridge.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="is not the file .*bridge.json was saved with"):
        checkpoint.load(tmp_path, fresh(trained), NAMES)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        checkpoint.save(tmp_path / "bad", model, {"when": object()}, NAMES)
    assert not (tmp_path / "bad").exists()


def test_a_weights_fingerprint_is_of_the_frozen_weights_rounded_to_bfloat16_in_any_order(monkeypatch):
    from vlbridge import distributed

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Linear(20, 5)).requires_grad_(False)
    digest = checkpoint.weights_fingerprint(model)
    assert len(digest) == 64 and checkpoint.weights_fingerprint(copy.deepcopy(model).bfloat16()) == digest
    assert checkpoint.weights_fingerprint(torch.nn.Sequential(model[1], model[0])) == digest  # order, names
    adapted = copy.deepcopy(model)
    adapted.lora = torch.nn.Linear(20, 2)  # trainable: a LoRA adapter is the tuned model's, not the backbone's
    assert checkpoint.weights_fingerprint(adapted) == digest
    monkeypatch.setattr(distributed, "_CHUNK", 7)  # read 7 elements at a time (a 7B LM's: 2**24)
    assert checkpoint.weights_fingerprint(model) == digest
    with torch.no_grad():
        model[0].weight[3, 4] += 0.01
    assert checkpoint.weights_fingerprint(model) != digest
    assert checkpoint.weights_fingerprint(torch.nn.Linear(2, 2)) is None  # nothing frozen: nothing to bind to
