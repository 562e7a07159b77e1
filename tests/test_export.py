"""Microworld export: every format round-trips through its `vlbridge.data` loader to the world's
truth, matches the real dataset's schema, and a failed export leaves nothing behind."""
from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

import vlbridge.world.export as export_module
from vlbridge.data import (
    load_audio_captions,
    load_cc3m_tsv,
    load_coco_captions,
    load_esp,
    load_visdial,
    load_vist_sis,
    load_vqax,
    open_image,
    read_wav,
)
from vlbridge.world import (
    SAMPLE_RATE,
    STYLES,
    caption,
    dialogue,
    render,
    render_sound,
    sample_scene,
    scene_rng,
    story,
    styled_caption,
    vqa_item,
)
from vlbridge.world.export import CAPTION_STREAM, EXPORT_FORMATS, STYLE_STREAM, export

START, COUNT, SIZE = 40, 6, 24
SEEDS = range(START, START + COUNT)
FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "formats"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """Each format exported once, into a folder of its own."""
    root = tmp_path_factory.mktemp("exports")
    for fmt in EXPORT_FORMATS:
        export(fmt, root / fmt, START, COUNT, image_size=SIZE, captions_per_image=3)
    return {fmt: root / fmt for fmt in EXPORT_FORMATS}


@pytest.fixture(scope="module")
def real_formats() -> Path:
    if not FORMATS.is_dir():
        pytest.skip(f"real dataset excerpts not found at {FORMATS} (CI has them at ../shared/formats)")
    return FORMATS


def pixels_of(path: Path) -> np.ndarray:
    return np.asarray(open_image(path))


def rendered(scene) -> np.ndarray:
    return np.asarray(render(scene, SIZE))


# ------------------------------------------------------------------------------------ round trips


def test_coco_round_trip(exported):
    records = load_coco_captions(exported["coco"] / "captions.json", exported["coco"] / "images")
    assert [r.image_id for r in records] == list(SEEDS)
    assert len({c for r in records for c in r.captions}) > 2 * COUNT  # one stream per caption: paraphrases
    for record in records:
        scene = sample_scene(record.image_id)
        truth = tuple(caption(scene, scene_rng(record.image_id, CAPTION_STREAM + k)) for k in range(3))
        assert record.captions == truth
        assert record.file_name == f"microworld_{record.image_id:08d}.png"
        np.testing.assert_array_equal(pixels_of(record.image_path), rendered(scene))


def test_cc3m_round_trip(exported):
    records = load_cc3m_tsv(exported["cc3m"] / "cc3m.tsv", exported["cc3m"] / "images")
    assert [r.image for r in records] == [f"microworld_{seed:08d}" for seed in SEEDS]
    for record, seed in zip(records, SEEDS):
        assert record.caption == caption(sample_scene(seed), scene_rng(seed, CAPTION_STREAM))
        np.testing.assert_array_equal(pixels_of(record.image_path), rendered(sample_scene(seed)))


def test_vist_round_trip(exported):
    records = load_vist_sis(exported["vist"] / "sis.json", exported["vist"] / "images")
    assert [r.story_id for r in records] == [str(seed) for seed in SEEDS]
    for record, seed in zip(records, SEEDS):
        told = story(seed)
        assert record.sentences == told.sentences
        assert len(record.image_paths) == len(told.scenes) == 5
        for path, scene in zip(record.image_paths, told.scenes):
            np.testing.assert_array_equal(pixels_of(path), rendered(scene))


def test_visdial_round_trip(exported):
    records = load_visdial(exported["visdial"] / "visdial.json", exported["visdial"] / "images")
    assert [r.image_id for r in records] == list(SEEDS)
    for record in records:
        truth = dialogue(record.image_id)
        assert record.caption == truth.caption
        assert [(r.question, r.answer) for r in record.rounds] == [
            (q.removesuffix(" ?"), a.removesuffix(" .")) for q, a in truth.rounds]
        for turn in record.rounds:
            assert len(turn.options) == len(set(turn.options)) == 100
            assert turn.options[turn.gt_index] == turn.answer
        np.testing.assert_array_equal(pixels_of(record.image_path), rendered(truth.scene))


def test_visdial_pads_the_answer_pool_to_100_options(tmp_path):
    export("visdial", tmp_path, 7, 1)  # one dialogue: at most 10 answers of its own
    (record,) = load_visdial(tmp_path / "visdial.json")
    assert all(len(set(turn.options)) == 100 for turn in record.rounds)
    assert len({turn.gt_index for turn in record.rounds}) > 1  # the true answer is not always first


def test_vqax_round_trip(exported):
    records = load_vqax(exported["vqax"] / "vqax.json", exported["vqax"] / "images")
    assert [r.question_id for r in records] == list(SEEDS)
    for record in records:
        item = vqa_item(record.question_id)
        assert (record.question, record.answer, record.explanations) == (item.question, item.answer, (item.rationale,))
        assert record.image_id == str(item.seed)
        np.testing.assert_array_equal(pixels_of(record.image_path), rendered(item.scene))


def test_esp_round_trip(exported):
    records = load_esp(exported["esp"] / "esp.json", exported["esp"] / "images")
    assert [r.image_id for r in records] == list(SEEDS)
    for record in records:
        scene = sample_scene(record.image_id)
        assert record.captions == {style: styled_caption(scene, style, scene_rng(record.image_id, STYLE_STREAM + i))
                                   for i, style in enumerate(STYLES)}
        np.testing.assert_array_equal(pixels_of(record.image_path), rendered(scene))


def test_wav_round_trip(exported):
    records = load_audio_captions(exported["wav"] / "audio.json", exported["wav"] / "audio")
    assert [r.seed for r in records] == list(SEEDS)
    for record in records:
        scene = sample_scene(record.seed)
        assert record.caption == caption(scene, scene_rng(record.seed, CAPTION_STREAM))
        with wave.open(str(record.audio_path)) as file:
            assert (file.getnchannels(), file.getsampwidth(), file.getframerate()) == (2, 2, SAMPLE_RATE)
        samples, rate = read_wav(record.audio_path)
        assert rate == SAMPLE_RATE and samples.dtype == np.float32
        np.testing.assert_allclose(samples, render_sound(scene), rtol=0, atol=0.5 / 32767 + 1e-7)


# ----------------------------------------------------------------------- schemas of the real files


def shape(value):
    """The structure of a JSON value: key sets and value types, lists by their first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@pytest.mark.parametrize("fmt, ours, real", [
    ("coco", "captions.json", "coco_captions_val2014.subset.json"),
    ("vist", "sis.json", "vist_sis_PARTIAL_from_code_comments.json"),
    ("visdial", "visdial.json", "visdial_1.0_val.subset.json"),
    ("esp", "esp.json", "esper_esp_dataset_v_0_2.subset.json"),
])
def test_json_schema_matches_the_real_file(exported, real_formats, fmt, ours, real):
    assert shape(json.loads((exported[fmt] / ours).read_text())) == shape(json.loads((real_formats / real).read_text()))


def test_vqax_entry_schema_matches_nlx_gpt(exported, real_formats):
    def first_entry(path):
        data = json.loads(path.read_text())
        key = next(iter(data))
        assert key.isdigit()
        return shape(data[key])

    real = real_formats / "vqaX_test.nlxgpt_format.subset.json"
    assert first_entry(exported["vqax"] / "vqax.json") == first_entry(real)
    entry = next(iter(json.loads((exported["vqax"] / "vqax.json").read_text()).values()))
    assert [a["answer_id"] for a in entry["answers"]] == list(range(1, 11))


def test_cc3m_header_is_fromages(exported, real_formats):
    ours = (exported["cc3m"] / "cc3m.tsv").read_text().splitlines()[0]
    assert ours == (real_formats / "cc3m_fromage_train.tsv").read_text().splitlines()[0] == "caption\timage"


def test_esp_licenses_is_a_dict(exported):
    assert json.loads((exported["esp"] / "esp.json").read_text())["licenses"] == {}


# --------------------------------------------------------------------------------- the writing


def files_under(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_returns_exactly_the_files_written(tmp_path):
    written = export("coco", tmp_path / "out", 3, 2)
    assert sorted(written) == sorted(tmp_path / "out" / p for p in files_under(tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the staging folder is gone


def test_export_is_deterministic(tmp_path):
    export("visdial", tmp_path / "a", 0, 3)
    export("visdial", tmp_path / "b", 0, 3)
    assert files_under(tmp_path / "a") == files_under(tmp_path / "b")


def test_formats_can_share_an_output_folder(tmp_path):
    export("coco", tmp_path, 0, 2)
    export("esp", tmp_path, 0, 2)
    assert (tmp_path / "captions.json").is_file() and (tmp_path / "esp.json").is_file()
    assert len(load_esp(tmp_path / "esp.json", tmp_path / "images")) == 2


def test_unknown_format_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"'mscoco'.*coco, cc3m, vist, visdial, vqax, esp, wav"):
        export("mscoco", tmp_path / "out", 0, 1)
    assert not (tmp_path / "out").exists()


def test_bad_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="count=0"):
        export("coco", tmp_path / "out", 0, 0)


def failing_renderer(monkeypatch, after: int):
    calls = []

    def render_then_fail(scene, size):
        calls.append(scene)
        if len(calls) > after:
            raise RuntimeError("renderer broke")
        return render(scene, size)

    monkeypatch.setattr(export_module, "render", render_then_fail)


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    failing_renderer(monkeypatch, after=3)
    with pytest.raises(RuntimeError, match="renderer broke"):
        export("coco", tmp_path / "out", 0, 10)
    assert list(tmp_path.iterdir()) == []


def test_failed_export_keeps_an_earlier_one_intact(tmp_path, monkeypatch):
    export("coco", tmp_path / "out", 100, 2)
    before = files_under(tmp_path / "out")
    failing_renderer(monkeypatch, after=3)
    with pytest.raises(RuntimeError, match="renderer broke"):
        export("coco", tmp_path / "out", 0, 10)
    assert files_under(tmp_path / "out") == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
