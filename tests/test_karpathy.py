"""The COCO Karpathy split loader (`dataset_coco.json`) on a file the test writes in the real schema,
over rendered microworld scenes (no real data is copied), and on bad input: every error names the
file, the entry and the key."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_models import save_tiny_karpathy, save_tiny_open_clip
from vlbridge import backbones, world
from vlbridge.data import (
    KARPATHY_SPLITS,
    DataError,
    ImageCaptionDataset,
    KarpathyRecord,
    load_karpathy,
    open_image,
)
from vlbridge.features import image_features, karpathy_features

SPLITS = ["train", "restval", "val", "test", "train", "restval", "test", "train"]


@pytest.fixture(scope="module")
def karpathy(tmp_path_factory) -> Path:
    return save_tiny_karpathy(tmp_path_factory.mktemp("karpathy"), SPLITS)


def edited(source: Path, folder: Path, change) -> Path:
    """A copy of the JSON at `source`, in `folder`, after change(data)."""
    data = json.loads(source.read_text())
    change(data)
    path = folder / "dataset_coco.json"
    path.write_text(json.dumps(data))
    return path


def test_default_is_karpathys_training_set(karpathy):
    records = load_karpathy(karpathy)
    assert [r.split for r in records] == ["train", "restval", "train", "restval", "train"]  # file order
    assert [r.cocoid for r in records] == [0, 1, 4, 5, 7]
    assert all(isinstance(r, KarpathyRecord) and r.image_path is None for r in records)
    assert records[0].file_name == "COCO_train2014_000000000000.jpg"
    assert records[1].file_name == "COCO_val2014_000000000001.jpg"  # restval lives in val2014


def test_captions_are_the_raw_sentences_stripped(karpathy):
    entry = json.loads(karpathy.read_text())["images"][0]
    (record, *_) = load_karpathy(karpathy)
    assert record.captions == tuple(s["raw"].strip() for s in entry["sentences"])
    assert len(record.captions) == 5 and any(s["raw"].endswith(" ") for s in entry["sentences"])
    assert not any(c != c.strip() for c in record.captions)
    scene = world.sample_scene(0)
    assert record.captions[0].lower().replace(".", " .") == world.caption(scene, world.scene_rng(0, 0))


def test_splits_select_and_a_single_name_works(karpathy):
    assert [r.cocoid for r in load_karpathy(karpathy, splits=("test",))] == [3, 6]
    assert [r.cocoid for r in load_karpathy(karpathy, splits="val")] == [2]
    assert [r.cocoid for r in load_karpathy(karpathy, splits=KARPATHY_SPLITS)] == list(range(len(SPLITS)))


@pytest.mark.parametrize("splits", [("training",), ("train", "dev"), (), "all"])
def test_unknown_split_argument_is_a_clear_error(karpathy, splits):
    with pytest.raises(ValueError, match=r"splits must be some of train, restval, val, test .*train \+ restval"):
        load_karpathy(karpathy, splits=splits)


def test_image_paths_follow_filepath_and_open(karpathy):
    root = karpathy.parent / "images"
    records = load_karpathy(karpathy, root, splits=KARPATHY_SPLITS)
    for record, split in zip(records, SPLITS, strict=True):
        folder = "train2014" if split == "train" else "val2014"
        assert record.image_path == root / folder / record.file_name
    image = open_image(records[2].image_path)
    expected = np.asarray(world.render(world.sample_scene(2), 32), dtype=np.float32)
    assert image.size == (32, 32)
    assert np.abs(np.asarray(image, dtype=np.float32) - expected).mean() < 8  # a JPEG of that rendering


def test_records_feed_the_image_caption_dataset(karpathy):
    dataset = ImageCaptionDataset(load_karpathy(karpathy, karpathy.parent / "images", splits="test"))
    assert len(dataset) == 2 * 5
    image, caption = dataset[5]
    assert image.shape == (3, 32, 32) and caption == load_karpathy(karpathy, splits="test")[1].captions[0]


@pytest.mark.parametrize("image_input", ["embedding", "patches"])
def test_features_are_encoded_in_batches_like_all_at_once(karpathy, tmp_path, image_input):
    clip = backbones.load_clip(str(save_tiny_open_clip(tmp_path / "clip", embed_dim=16, image_size=64)))  # 4x4 patches
    records = load_karpathy(karpathy, karpathy.parent / "images", splits=KARPATHY_SPLITS)
    whole = image_features(clip, [open_image(r.image_path) for r in records], image_input)
    batched = karpathy_features(records, clip, image_input, batch_size=3)
    assert batched.shape == whole.shape == (len(SPLITS), whole.shape[1]) and batched.dtype == torch.float32
    assert torch.allclose(batched, whole, atol=1e-5)
    with pytest.raises(DataError, match=r"5 records have no image file \(cocoid 0, ...\): pass image_root"):
        karpathy_features(load_karpathy(karpathy), clip)


def test_missing_image_of_a_wanted_split_is_named(karpathy, tmp_path):
    source = edited(karpathy, tmp_path, lambda data: None)
    root = karpathy.parent / "images"
    (tmp_path / "images" / "val2014").mkdir(parents=True)  # val2014 is empty: restval, val, test missing
    (tmp_path / "images" / "train2014").symlink_to(root / "train2014")
    assert len(load_karpathy(source, tmp_path / "images", splits="train")) == 3  # unwanted splits: not looked at
    with pytest.raises(DataError, match=r"images\[1\]: image file not found: .*val2014/COCO_val2014_000000000001.jpg") \
            as error:
        load_karpathy(source, tmp_path / "images")
    assert str(source) in str(error.value)


def test_missing_file_and_invalid_json_are_named(tmp_path):
    with pytest.raises(DataError, match="file not found") as error:
        load_karpathy(tmp_path / "nowhere" / "dataset_coco.json")
    assert str(tmp_path / "nowhere" / "dataset_coco.json") in str(error.value)
    broken = tmp_path / "dataset_coco.json"
    broken.write_text('{"images": [')
    with pytest.raises(DataError, match="not valid JSON"):
        load_karpathy(broken)


def _delete(entry: int, key: str, sentence: int | None = None):
    def change(data):
        target = data["images"][entry]
        del (target if sentence is None else target["sentences"][sentence])[key]
    return change


def _set(entry: int, key: str, value):
    def change(data):
        data["images"][entry][key] = value
    return change


@pytest.mark.parametrize("change, message", [
    (lambda data: data.pop("images"), r"top level: missing key 'images'"),
    (_delete(2, "split"), r"images\[2\]: missing key 'split'"),
    (_delete(3, "cocoid"), r"images\[3\]: missing key 'cocoid'"),
    (_delete(0, "filepath"), r"images\[0\]: missing key 'filepath'"),
    (_delete(6, "filename"), r"images\[6\]: missing key 'filename'"),
    (_delete(4, "sentences"), r"images\[4\]: missing key 'sentences'"),
    (_delete(1, "raw", sentence=2), r"images\[1\], sentences\[2\]: missing key 'raw'"),
    (_set(5, "cocoid", "5"), r"images\[5\]: key 'cocoid' should be int, got str"),
    (_set(2, "sentences", "a red circle"), r"images\[2\]: key 'sentences' should be list, got str"),
    (_set(7, "split", "training"),
     r"images\[7\]: key 'split' should be one of train, restval, val, test, got 'training'"),
    (_set(3, "cocoid", 1), r"images\[3\]: cocoid 1 appears twice \(also images\[1\]\)"),
])
def test_bad_entries_name_file_entry_and_key(karpathy, tmp_path, change, message):
    source = edited(karpathy, tmp_path, change)
    with pytest.raises(DataError, match=message) as error:
        load_karpathy(source, splits="test")  # entries of every split are checked, wanted or not
    assert str(source) in str(error.value)
