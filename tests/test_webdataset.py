"""img2dataset's webdataset shards (built here exactly as img2dataset lays them out), read back whole,
split over ranks so each sample is read once, and refused with a DataError naming the tar and key when
broken; and `split_for_rank`, which splits in-memory datasets the same exactly-once way."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlbridge.data import (
    DataError,
    WebDatasetRecord,
    load_webdataset,
    read_shard,
    shard_paths,
    shards_for_rank,
    split_for_rank,
)
from vlbridge.data.webdataset import expand_braces

OOM_SAMPLES = 4  # img2dataset's oom_sample_per_shard for 10000 samples per shard; oom_shard_count is 5


def image_bytes(width: int, height: int, fmt: str = "JPEG", seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def sample_key(shard: int, index: int) -> str:
    """img2dataset's key: shard * 10**oom_sample_per_shard + index, zero-padded to 5 + 4 digits."""
    return str(shard * 10**OOM_SAMPLES + index).zfill(5 + OOM_SAMPLES)


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(folder: Path, shard: int, samples: list[dict], *, drop: tuple[str, ...] = ()) -> Path:
    """`folder/{shard:05d}.tar` as img2dataset writes it: per sample {key}.jpg, {key}.json, {key}.txt
    (webdataset's TarWriter writes a sample's files in sorted extension order), and beside it
    `{shard:05d}_stats.json` and a `{shard:05d}.parquet`. `drop` leaves out members by name."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{shard:05d}.tar"
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            key, ext = sample["key"], sample.get("ext", "jpg")
            meta = {"url": f"https://example.com/{key}.jpg", "caption": sample["caption"], "key": key,
                    "status": "success", "error_message": None, "width": sample["size"][0],
                    "height": sample["size"][1], "original_width": 2 * sample["size"][0],
                    "original_height": 2 * sample["size"][1], "exif": "{}"}
            files = {ext: sample["image"], "json": json.dumps(meta, indent=4).encode(),
                     "txt": sample["caption"].encode("utf-8")}
            for extension in sorted(files):
                if f"{key}.{extension}" not in drop:
                    add_member(tar, f"{key}.{extension}", files[extension])
    stats = {"count": len(samples), "successes": len(samples), "failed_to_download": 0, "failed_to_resize": 0}
    (folder / f"{shard:05d}_stats.json").write_text(json.dumps(stats))
    (folder / f"{shard:05d}.parquet").write_bytes(b"PAR1 not read by the loader PAR1")
    return path


def make_samples(shard: int, count: int) -> list[dict]:
    samples = []
    for index in range(count):
        size = (8 + index, 6 + shard)
        samples.append({"key": sample_key(shard, index), "caption": f"shard {shard} sample {index}: a café ☕",
                        "size": size, "image": image_bytes(*size, seed=100 * shard + index)})
    return samples


@pytest.fixture
def two_shards(tmp_path) -> Path:
    folder = tmp_path / "cc3m"
    write_shard(folder, 0, make_samples(0, 3))
    write_shard(folder, 1, make_samples(1, 2))
    return folder


# ------------------------------------------------------------------------------ reading


def test_round_trip_keys_captions_images_and_meta(tmp_path):
    samples = make_samples(0, 3)
    path = write_shard(tmp_path, 0, samples)
    records = list(read_shard(path))
    assert [r.key for r in records] == ["000000000", "000000001", "000000002"]
    assert [r.caption for r in records] == [s["caption"] for s in samples]
    assert [r.image.size for r in records] == [(8, 6), (9, 6), (10, 6)]
    assert all(isinstance(r, WebDatasetRecord) and r.image.mode == "RGB" for r in records)
    assert records[1].meta["url"] == "https://example.com/000000001.jpg"
    assert records[1].meta["status"] == "success" and records[1].meta["width"] == 9
    key, image, caption, meta = records[0]  # unpacks in the documented order
    assert (key, caption, meta["key"]) == ("000000000", samples[0]["caption"], "000000000")


def test_png_and_webp_shards_decode_losslessly_and_meta_is_optional(tmp_path):
    """img2dataset's --encode_format png / webp name the image member by that extension; PNG is
    lossless, so the pixels must come back exactly."""
    pixels = np.random.default_rng(7).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    samples = [{"key": "000000000", "caption": "png", "size": (7, 5), "image": png.getvalue(), "ext": "png"},
               {"key": "000000001", "caption": "webp", "size": (4, 4), "image": image_bytes(4, 4, "WEBP"),
                "ext": "webp"}]
    path = write_shard(tmp_path, 0, samples, drop=("000000001.json",))
    first, second = read_shard(path)
    assert np.array_equal(np.asarray(first.image), pixels)
    assert second.caption == "webp" and second.image.size == (4, 4) and second.meta == {}


def test_empty_shard_gives_no_samples(tmp_path):
    """A shard where every download failed: img2dataset still writes the tar, with no members."""
    path = write_shard(tmp_path, 0, [])
    assert path.stat().st_size > 0
    assert list(read_shard(path)) == []


# ------------------------------------------------------------------------------ which shards, which rank


def test_folder_lists_tars_only_in_order(two_shards):
    assert [p.name for p in shard_paths(two_shards)] == ["00000.tar", "00001.tar"]  # not _stats.json, .parquet
    assert shard_paths(two_shards / "00001.tar") == [two_shards / "00001.tar"]


def test_two_shards_over_two_ranks_read_every_sample_once(two_shards):
    ranks = [load_webdataset(two_shards, rank=rank, world=2) for rank in range(2)]
    assert [[r.key for r in records] for records in ranks] == [
        ["000000000", "000000001", "000000002"], ["000010000", "000010001"]]
    assert all(r.caption.startswith(f"shard {rank} ") for rank, records in enumerate(ranks) for r in records)
    one_rank = load_webdataset(two_shards)
    assert sorted(r.key for records in ranks for r in records) == sorted(r.key for r in one_rank)
    assert len(one_rank) == 5


def test_shards_for_rank_deals_round_robin_and_needs_a_shard_per_rank(tmp_path):
    paths = [tmp_path / f"{i:05d}.tar" for i in range(5)]
    dealt = [shards_for_rank(paths, rank, 2) for rank in range(2)]
    assert dealt == [paths[0::2], paths[1::2]]
    assert sorted(p for part in dealt for p in part) == paths
    with pytest.raises(DataError, match=r"2 shard\(s\).*for 3 ranks.*at most 2 ranks"):
        shards_for_rank(paths[:2], 0, 3)
    with pytest.raises(ValueError, match="rank"):
        shards_for_rank(paths, 2, 2)


def test_load_webdataset_limit_stops_early(two_shards):
    assert [r.key for r in load_webdataset(two_shards, limit=4)] == [
        "000000000", "000000001", "000000002", "000010000"]
    assert load_webdataset(two_shards, limit=0) == []


def test_brace_patterns(two_shards):
    pattern = f"{two_shards}/{{00000..00001}}.tar"
    assert shard_paths(pattern) == [two_shards / "00000.tar", two_shards / "00001.tar"]
    assert [r.key for r in load_webdataset(pattern, rank=1, world=2)] == ["000010000", "000010001"]
    assert expand_braces("s/{00008..00011}.tar") == ["s/00008.tar", "s/00009.tar", "s/00010.tar", "s/00011.tar"]
    assert expand_braces("{8..10}") == ["8", "9", "10"]  # no leading zero: no padding
    assert expand_braces("{train,val}-{0..1}.tar") == ["train-0.tar", "train-1.tar", "val-0.tar", "val-1.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_brace_pattern_errors_name_what_is_wrong(two_shards):
    with pytest.raises(DataError, match=r"1 of the 3 shards it names are missing: .*00002\.tar"):
        shard_paths(f"{two_shards}/{{00000..00002}}.tar")
    with pytest.raises(DataError, match="nested"):
        shard_paths(f"{two_shards}/{{0,{{1..2}}}}.tar")
    with pytest.raises(DataError, match="unbalanced"):
        shard_paths(f"{two_shards}/{{00000..00001.tar")
    with pytest.raises(DataError, match="neither a range"):
        shard_paths(f"{two_shards}/{{00000}}.tar")
    with pytest.raises(DataError, match="more than once"):
        shard_paths(f"{two_shards}/{{00000,00000}}.tar")


def test_missing_folder_or_empty_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        shard_paths(tmp_path / "nowhere")
    (tmp_path / "00000_stats.json").write_text("{}")
    with pytest.raises(DataError, match=r"no \.tar shards"):
        shard_paths(tmp_path)


# ------------------------------------------------------------------------------ broken shards


def test_missing_caption_names_tar_and_key(tmp_path):
    path = write_shard(tmp_path, 0, make_samples(0, 3), drop=("000000001.txt",))
    records = read_shard(path)
    assert next(records).key == "000000000"  # samples before the broken one still stream
    with pytest.raises(DataError, match=rf"{path}: key '000000001': no caption 000000001\.txt"):
        next(records)


def test_missing_image_names_tar_and_key(tmp_path):
    path = write_shard(tmp_path, 0, make_samples(0, 2), drop=("000000001.jpg",))
    with pytest.raises(DataError, match=rf"{path}: key '000000001': no image"):
        list(read_shard(path))


def test_unreadable_image_and_caption_name_the_member(tmp_path):
    bad_image = make_samples(0, 1)
    bad_image[0]["image"] = b"\xff\xd8 not really a jpeg"
    path = write_shard(tmp_path / "a", 0, bad_image)
    with pytest.raises(DataError, match=r"key '000000000': 000000000\.jpg: not a readable image"):
        list(read_shard(path))
    path = tmp_path / "b.tar"
    with tarfile.open(path, "w") as tar:
        add_member(tar, "000000000.jpg", image_bytes(4, 4))
        add_member(tar, "000000000.txt", "café".encode("latin-1"))
    with pytest.raises(DataError, match=r"000000000\.txt is not UTF-8"):
        list(read_shard(path))


def test_decompression_bomb_is_a_data_error(tmp_path, monkeypatch):
    path = write_shard(tmp_path, 0, make_samples(0, 1))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 8x6 = 48 pixels > 2 * 10: PIL's error, not its warning
    with pytest.raises(DataError, match=r"key '000000000'.*too large to decode safely"):
        list(read_shard(path))


def test_scattered_sample_files_are_refused(tmp_path):
    path = tmp_path / "scattered.tar"
    with tarfile.open(path, "w") as tar:
        add_member(tar, "000000000.jpg", image_bytes(4, 4))
        add_member(tar, "000000001.jpg", image_bytes(4, 4))
        add_member(tar, "000000001.txt", b"one")
        add_member(tar, "000000000.txt", b"zero")
    with pytest.raises(DataError, match=rf"{path}: key '000000000'"):
        list(read_shard(path))


def test_not_a_tar_and_missing_shard(tmp_path):
    path = tmp_path / "00000.tar"
    path.write_bytes(b"<html>403 Forbidden</html>" * 40)
    with pytest.raises(DataError, match=rf"{path}: not a readable tar file"):
        list(read_shard(path))
    with pytest.raises(DataError, match="shard not found"):
        list(read_shard(tmp_path / "00001.tar"))


@pytest.mark.parametrize(
    ("where", "message"),
    [("inside an image", r"not a readable tar file \(unexpected end of data\)"),
     ("at a member boundary", r"the tar ends early, at byte \d+, without its end-of-archive block"),
     ("inside a header", r"the tar ends early, at byte \d+, without its end-of-archive block"),
     ("after the last member", r"the tar ends early, at byte \d+, without its end-of-archive block")])
def test_truncated_tar_is_a_data_error(tmp_path, where, message):
    """tarfile itself only notices a cut inside a member's data; a cut between members or inside a
    header would silently drop the last samples, which the end-of-archive check catches."""
    whole = write_shard(tmp_path / "whole", 0, make_samples(0, 3))
    with tarfile.open(whole) as tar:
        members = tar.getmembers()
    last_jpg, last_txt = members[-3], members[-1]  # the last sample's jpg, json, txt
    assert last_jpg.name == "000000002.jpg" and last_txt.name == "000000002.txt"
    end = last_txt.offset_data + tarfile.BLOCKSIZE  # the txt's data fits one block
    cut = {"inside an image": last_jpg.offset_data + last_jpg.size // 2, "at a member boundary": last_txt.offset,
           "inside a header": last_txt.offset + 100, "after the last member": end}[where]
    data = whole.read_bytes()
    assert data[end:].strip(b"\0") == b""  # what is cut in the last case is only the end-of-archive zeros
    path = tmp_path / "00000.tar"
    path.write_bytes(data[:cut])
    with pytest.raises(DataError, match=rf"{path}: {message}"):
        list(read_shard(path))
    assert len(list(read_shard(whole))) == 3


# ------------------------------------------------------------------------------ split_for_rank


@pytest.mark.parametrize("n_items", [0, 1, 2, 3, 7, 10, 11, 100, 101])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_split_for_rank_reads_every_index_exactly_once(n_items, world):
    parts = [split_for_rank(n_items, rank, world) for rank in range(world)]
    assert [i for part in parts for i in part] == list(range(n_items))  # contiguous, in rank order, once each
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_split_for_rank_examples_and_bad_arguments():
    # The first n % world ranks take one more (the rule a training step's batch is split by, too).
    assert [list(split_for_rank(10, rank, 3)) for rank in range(3)] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [len(split_for_rank(2, rank, 4)) for rank in range(4)] == [1, 1, 0, 0]
    for rank, world in [(-1, 2), (2, 2), (0, 0), (0, 1.5), (True, 2)]:
        with pytest.raises(ValueError):
            split_for_rank(10, rank, world)
    with pytest.raises(ValueError, match="n_items"):
        split_for_rank(-1, 0, 1)
