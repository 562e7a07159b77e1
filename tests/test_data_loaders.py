"""The `vlbridge.data` loaders on the real dataset excerpts (../shared/formats), on bad input
(every error names the file and what was expected), and the image-caption Dataset."""
from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vlbridge.data import (
    DataError,
    ImageCaptionDataset,
    collate_image_captions,
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
from vlbridge.world.sound import write_wav

FORMATS = Path(__file__).resolve().parents[1].parent / "shared" / "formats"


@pytest.fixture(scope="module")
def real() -> Path:
    if not FORMATS.is_dir():
        pytest.skip(f"real dataset excerpts not found at {FORMATS} (CI has them at ../shared/formats)")
    return FORMATS


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def write_png(path: Path, size: int = 8, colour=(200, 30, 40)) -> Path:
    Image.new("RGB", (size, size), colour).save(path)
    return path


# ------------------------------------------------------------------------------ real excerpts


def test_real_coco_captions(real):
    records = load_coco_captions(real / "coco_captions_val2014.subset.json")
    assert [r.image_id for r in records] == [318219, 574769, 60623]
    assert sum(len(r.captions) for r in records) == 15
    assert all(len(r.captions) == 5 and r.image_path is None for r in records)
    assert records[2].file_name == "COCO_val2014_000000060623.jpg"
    assert records[2].captions[0] == "A young girl inhales with the intent of blowing out a candle."
    assert not any(c.endswith(" ") for r in records for c in r.captions)


def test_real_cc3m_fromage(real, tmp_path):
    records = load_cc3m_tsv(real / "cc3m_fromage_train.tsv")
    assert [r.image for r in records] == ["0_1595581236", "3_2841214833", "5_2227185927", "8_1666482269"]
    assert records[1].caption == "the player staring intently at a computer screen ."
    for record in records:  # FROMAGe's stems name files whose extension the TSV leaves out
        write_png(tmp_path / f"{record.image}.jpg")
    assert [r.image_path.name for r in load_cc3m_tsv(real / "cc3m_fromage_train.tsv", tmp_path)] == [
        f"{r.image}.jpg" for r in records]


def test_real_cc3m_gcc(real, tmp_path):
    records = load_cc3m_tsv(real / "cc3m_gcc_validation.first10.tsv", image_dir=tmp_path)
    assert len(records) == 10
    assert all(r.image.startswith(("http://", "https://")) and r.image_path is None for r in records)
    fromage = load_cc3m_tsv(real / "cc3m_fromage_train.tsv")  # its stems start with the GCC row index
    assert [r.caption for r in fromage] == [records[int(r.image.split("_")[0])].caption for r in fromage]


def test_real_vist_partial(real):
    (record,) = load_vist_sis(real / "vist_sis_PARTIAL_from_code_comments.json")
    assert record.story_id == "45530"
    assert record.sentences == ("the local parish holds a craft show each year .",)
    assert record.image_ids == ("1741642",) and record.image_paths is None


def test_real_visdial(real):
    records = load_visdial(real / "visdial_1.0_val.subset.json")
    assert [r.image_id for r in records] == [185565, 284024]
    assert [len(r.rounds) for r in records] == [10, 10]
    assert records[0].caption == "a bedroom is filled with lots of posters and a busy computer desk"
    for turn in (turn for r in records for turn in r.rounds):
        assert len(turn.options) == 100 and turn.options[turn.gt_index] == turn.answer
        assert not turn.question.endswith("?")


def reorder_keys(value):
    """The same JSON with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {key: reorder_keys(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reorder_keys(item) for item in value]
    return value


def test_visdial_does_not_rely_on_key_order(real, tmp_path):
    source = real / "visdial_1.0_val.subset.json"
    reordered = write_json(tmp_path / "reordered.json", reorder_keys(json.loads(source.read_text())))
    assert load_visdial(reordered) == load_visdial(source)


def test_real_vqax_nlx_gpt(real):
    records = load_vqax(real / "vqaX_test.nlxgpt_format.subset.json")
    assert [r.question_id for r in records] == [262284001, 393372017, 262386025, 262471003, 21900002]
    assert all(len(r.explanations) == 3 for r in records)
    first = records[0]
    assert (first.question, first.answer, first.image_id) == ("What is this?", "shower", "262284")
    assert first.image_name == "COCO_val2014_000000262284.jpg"


def test_real_vqax_illume(real):
    records = load_vqax(real / "vqax_illume_split_test.subset.json")
    assert [r.question_id for r in records] == [456558005, 462807004, 425634002, 303706004, 482800009]
    assert [r.answer for r in records] == ["no", "pizza", "no", "kitchen", "frisbee"]
    assert all(len(r.explanations) == 3 for r in records)
    assert records[0].image_id == "456558" and records[0].image_name == "COCO_val2014_000000456558.jpg"
    assert records[0].explanations[0] == "he is wearing a suit and tie."


def test_illume_rows_find_their_image_in_val2014_or_train2014(real, tmp_path):
    """VQA-X's train questions are about COCO train2014 images: a loader that only built val2014 names
    could not load ILLUME's train split with its images."""
    records = load_vqax(real / "vqax_illume_split_test.subset.json")
    ids = [int(r.image_id) for r in records]
    write_png(tmp_path / f"COCO_train2014_{ids[0]:012d}.jpg")
    for image_id in ids[1:]:
        write_png(tmp_path / f"COCO_val2014_{image_id:012d}.jpg")
    found = load_vqax(real / "vqax_illume_split_test.subset.json", tmp_path)
    assert found[0].image_path == tmp_path / f"COCO_train2014_{ids[0]:012d}.jpg"
    assert [r.image_name for r in found[1:]] == [f"COCO_val2014_{i:012d}.jpg" for i in ids[1:]]
    (tmp_path / f"COCO_train2014_{ids[0]:012d}.jpg").unlink()
    with pytest.raises(DataError, match=rf"row '0': image file not found: neither .*COCO_val2014_{ids[0]:012d}.jpg "
                                        rf"nor COCO_train2014_{ids[0]:012d}.jpg"):
        load_vqax(real / "vqax_illume_split_test.subset.json", tmp_path)


def test_real_esp(real):
    records = {r.image_id: r for r in load_esp(real / "esper_esp_dataset_v_0_2.subset.json")}
    assert len(records) == 5
    assert set(records[9156].captions) == {"news", "blog", "story", "instruction", "social"}  # id 0
    assert set(records[24343].captions) == {"blog", "story", "instruction", "social"}  # id 1: no news
    assert set(records[69138].captions) == {"social", "news"}  # id 2
    assert records[69138].captions["news"] == "An appealing image of a truck leaving a traffic light sign."
    assert records[69138].file_name == "COCO_val2014_000000069138.jpg"


# ------------------------------------------------------------------------- small own fixtures


def coco_fixture(folder: Path, captions=("a red square .", "a big red square .")) -> Path:
    write_png(folder / "one.png")
    return write_json(folder / "captions.json", {
        "info": {}, "licenses": [],
        "images": [{"id": 1, "file_name": "one.png", "height": 8, "width": 8}],
        "annotations": [{"image_id": 1, "id": i, "caption": c} for i, c in enumerate(captions)],
    })


def visdial_fixture(folder: Path, answer_index: int = 1) -> Path:
    rounds = [{"question": 0, "answer": 0, "gt_index": 0, "answer_options": [0, 1]},
              {"question": 1, "answer": answer_index, "gt_index": 1, "answer_options": [0, 1]}]
    return write_json(folder / "visdial.json", {"version": "1.0", "split": "test", "data": {
        "dialogs": [{"image_id": 7, "caption": "a square", "dialog": rounds}],
        "questions": ["is it red", "how many"], "answers": ["yes", "one"]}})


def test_own_fixtures_load(tmp_path):
    (record,) = load_coco_captions(coco_fixture(tmp_path), tmp_path)
    assert record.captions == ("a red square .", "a big red square .") and record.image_path == tmp_path / "one.png"
    write_png(tmp_path / "VisualDialog_val2018_000000000007.jpg")
    (dialog,) = load_visdial(visdial_fixture(tmp_path), tmp_path)
    assert [(t.question, t.answer) for t in dialog.rounds] == [("is it red", "yes"), ("how many", "one")]
    assert dialog.image_path.name == "VisualDialog_val2018_000000000007.jpg"


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("loader", [load_coco_captions, load_cc3m_tsv, load_vist_sis, load_visdial, load_vqax,
                                    load_esp, load_audio_captions])
def test_missing_file_is_named(tmp_path, loader):
    missing = tmp_path / "nowhere" / "data.json"
    with pytest.raises(DataError, match="file not found") as error:
        loader(missing)
    assert str(missing) in str(error.value)


def test_invalid_json_is_named(tmp_path):
    broken = tmp_path / "captions.json"
    broken.write_text('{"images": [')
    with pytest.raises(DataError, match="not valid JSON") as error:
        load_coco_captions(broken)
    assert str(broken) in str(error.value)


def test_corrupt_png_is_named(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG this is not an image at all" * 4)
    with pytest.raises(DataError, match="not a readable image") as error:
        open_image(garbage)
    assert str(garbage) in str(error.value)


def test_truncated_png_is_named(tmp_path):
    whole = write_png(tmp_path / "whole.png", size=64, colour=(1, 2, 3))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError) as error:
        open_image(cut)
    assert str(cut) in str(error.value)


def test_missing_image_file_is_named(tmp_path):
    with pytest.raises(DataError, match="image file not found") as error:
        open_image(tmp_path / "absent.png")
    assert str(tmp_path / "absent.png") in str(error.value)


def test_missing_referenced_image_is_named(tmp_path):
    source = coco_fixture(tmp_path)
    (tmp_path / "one.png").unlink()
    with pytest.raises(DataError, match="image file not found") as error:
        load_coco_captions(source, tmp_path)
    assert str(source) in str(error.value) and str(tmp_path / "one.png") in str(error.value)
    assert "images[0]" in str(error.value)


def test_missing_cc3m_image_names_stem_and_line(tmp_path):
    tsv = tmp_path / "cc3m.tsv"
    tsv.write_text("caption\timage\na red square .\tsquare_1\n")
    with pytest.raises(DataError, match=r"line 2: image file not found: .*square_1 \(also tried .png") as error:
        load_cc3m_tsv(tsv, tmp_path)
    assert str(tsv) in str(error.value)


def test_visdial_without_its_image_is_named(tmp_path):
    source = visdial_fixture(tmp_path)
    write_png(tmp_path / "microworld_00000008.png")
    with pytest.raises(DataError, match=r"dialog 0 \(image_id 7\): no image file for id 7"):
        load_visdial(source, tmp_path)


def test_corrupt_wav_is_named(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEnot really audio")
    with pytest.raises(DataError, match="not a readable WAV file") as error:
        read_wav(broken)
    assert str(broken) in str(error.value)
    with pytest.raises(DataError, match="audio file not found") as error:
        read_wav(tmp_path / "absent.wav")
    assert str(tmp_path / "absent.wav") in str(error.value)


def test_truncated_wav_is_named(tmp_path):
    whole = write_wav(tmp_path / "whole.wav", np.zeros((2, 101), np.float32), 8000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated WAV data") as error:
        read_wav(cut)
    assert str(cut) in str(error.value)


def test_wav_must_be_16_bit(tmp_path):
    path = tmp_path / "eight_bit.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(1), out.setframerate(8000)
        out.writeframes(bytes(100))
    with pytest.raises(DataError, match="expected 16-bit PCM samples, got 8-bit") as error:
        read_wav(path)
    assert str(path) in str(error.value)


def test_wav_round_trip_is_exact_to_16_bits(tmp_path):
    samples = np.random.default_rng(1).uniform(-1, 1, (2, 500)).astype(np.float32)
    back, rate = read_wav(write_wav(tmp_path / "noise.wav", samples, 16000), sample_rate=16000)
    assert rate == 16000 and back.shape == (2, 500)
    assert np.abs(back - samples).max() <= 0.5 / 32767 + 1e-7


def test_missing_referenced_audio_is_named(tmp_path):
    manifest = write_json(tmp_path / "audio.json", [{"seed": 1, "file_name": "gone.wav", "caption": "a square ."}])
    with pytest.raises(DataError, match=r"entry 0: audio file not found: .*gone.wav"):
        load_audio_captions(manifest, tmp_path)


def test_tsv_row_with_wrong_field_count_names_file_and_line(tmp_path):
    tsv = tmp_path / "cc3m.tsv"
    tsv.write_text("caption\timage\na red square .\tsquare_1\na caption without an image\n")
    expected = r"line 3: expected 2 tab-separated fields \(caption<TAB>image\), got 1"
    with pytest.raises(DataError, match=expected) as error:
        load_cc3m_tsv(tsv)
    assert str(tsv) in str(error.value)


def test_json_missing_key_names_key_record_and_file(tmp_path):
    source = coco_fixture(tmp_path)
    data = json.loads(source.read_text())
    del data["annotations"][1]["caption"]
    write_json(source, data)
    with pytest.raises(DataError, match=r"annotations\[1\]: missing key 'caption'") as error:
        load_coco_captions(source)
    assert str(source) in str(error.value)


def test_json_wrong_type_is_named(tmp_path):
    source = coco_fixture(tmp_path)
    data = json.loads(source.read_text())
    data["images"][0]["id"] = "1"
    write_json(source, data)
    with pytest.raises(DataError, match=r"images\[0\]: key 'id' should be int, got str"):
        load_coco_captions(source)


def test_annotation_of_an_unknown_image_is_named(tmp_path):
    source = write_json(tmp_path / "esp.json", {"info": {}, "licenses": {}, "images": [],
                                                "annotations": [{"image_id": 5, "id": 0, "caption_sns": "hi"}]})
    with pytest.raises(DataError, match=r"annotations\[0\]: image_id 5 is not in 'images'"):
        load_esp(source)


def test_vist_annotation_must_be_a_one_element_list(tmp_path):
    source = write_json(tmp_path / "sis.json", {"images": [], "albums": [], "annotations": [{"story_id": "1"}]})
    with pytest.raises(DataError, match=r"annotations\[0\]: expected a one-element list"):
        load_vist_sis(source)


def test_visdial_index_out_of_range_names_dialog_and_round(tmp_path):
    source = visdial_fixture(tmp_path, answer_index=9)
    with pytest.raises(DataError, match=r"dialog 0 \(image_id 7\), round 1: answer index 9 out of range") as error:
        load_visdial(source)
    assert str(source) in str(error.value)


def test_visdial_wrong_gt_index_is_named(tmp_path):
    source = visdial_fixture(tmp_path, answer_index=0)  # round 1's options[gt_index] is 'one', not 'yes'
    with pytest.raises(DataError, match=r"round 1: answer_options\[gt_index\] is not the answer"):
        load_visdial(source)


def test_illume_row_missing_in_a_column_is_named(tmp_path):
    columns = {"image_id": {"0": 1, "1": 2}, "question_id": {"0": 1001, "1": 2001},
               "question": {"0": "What?", "1": "Why?"}, "multiple_choice_answer": {"0": "yes"},
               "explanation": {"0": "because.", "1": "so."}}
    source = write_json(tmp_path / "test.json", columns)
    with pytest.raises(DataError, match=r"column 'multiple_choice_answer': missing key '1'"):
        load_vqax(source)


# --------------------------------------------------------------------------------- the Dataset


def test_image_caption_dataset_and_collate(tmp_path):
    colours = [(255, 0, 0), (0, 0, 255)]
    for i, colour in enumerate(colours):
        write_png(tmp_path / f"img_{i}.png", colour=colour)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("caption\timage\na red one\timg_0\na blue one\timg_1\n")
    dataset = ImageCaptionDataset(load_cc3m_tsv(tsv, tmp_path))
    image, caption = dataset[1]
    assert caption == "a blue one" and image.shape == (3, 8, 8) and image.dtype == torch.float32
    assert torch.equal(image[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    images, captions = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_image_captions)))
    assert images.shape == (2, 3, 8, 8) and captions == ["a red one", "a blue one"]


def test_dataset_flattens_captions_per_image(tmp_path):
    dataset = ImageCaptionDataset(load_coco_captions(coco_fixture(tmp_path), tmp_path))
    assert [dataset[i][1] for i in range(len(dataset))] == ["a red square .", "a big red square ."]


def test_dataset_takes_every_style_of_an_esp_record(tmp_path):
    write_png(tmp_path / "one.png")
    source = write_json(tmp_path / "esp.json", {
        "info": {}, "licenses": {}, "images": [{"id": 1, "file_name": "one.png"}],
        "annotations": [{"image_id": 1, "id": 0, "caption_sns": "omg", "caption_news": "breaking"}]})
    dataset = ImageCaptionDataset(load_esp(source, tmp_path))
    assert sorted(caption for _, caption in dataset) == ["breaking", "omg"]


def test_dataset_needs_image_files(real):
    with pytest.raises(DataError, match="pass image_dir to the loader"):
        ImageCaptionDataset(load_coco_captions(real / "coco_captions_val2014.subset.json"))


def test_collate_refuses_mixed_sizes():
    batch = [(torch.zeros(3, 8, 8), "a"), (torch.zeros(3, 4, 4), "b")]
    with pytest.raises(DataError, match="resizing transform"):
        collate_image_captions(batch)
