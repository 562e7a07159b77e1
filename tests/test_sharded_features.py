"""Features of a dataset's images over two gloo ranks: each rank opens and encodes only its block of the
images, and every rank ends with the features one process computes, in dataset order (CC3M TSV,
COCO Karpathy through chapter 4's reward_data, microworld scenes through chapter 3's grounding_data);
with an odd count, with fewer images than ranks, and with a broken or missing image named in the error."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from safetensors.torch import load_file, save_file

from test_distributed import free_port
from tiny_models import save_tiny_karpathy, save_tiny_open_clip
from vlbridge import backbones, distributed, world
from vlbridge.book.recipes import grounding_data, reward_data
from vlbridge.data import DataError
from vlbridge.features import cc3m_pairs
from vlbridge.world.export import export

CC3M_IMAGES = 7  # odd: the ranks' blocks are 4 and 3 images
KARPATHY_SPLITS = ["train", "val", "restval", "train", "train", "test", "restval"]  # 5 to train on: train + restval
SCENES = 5


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny open_clip, a CC3M TSV with its images, a Karpathy split with its images; and copies of
    the TSV's folder with an unreadable image in each rank's block, and with an image missing."""
    root = tmp_path_factory.mktemp("sharded")
    save_tiny_open_clip(root / "clip", embed_dim=16, image_size=64)  # 4x4 patches
    export("cc3m", root / "cc3m", start=0, count=CC3M_IMAGES, image_size=32)
    save_tiny_karpathy(root / "karpathy", KARPATHY_SPLITS)
    images = sorted((root / "cc3m" / "images").iterdir())
    shutil.copytree(root / "cc3m", root / "broken")
    for index in (1, 5):  # rank 0's block is images 0-3, rank 1's 4-6
        (root / "broken" / "images" / images[index].name).write_bytes(b"not an image")
    shutil.copytree(root / "cc3m", root / "missing")
    (root / "missing" / "images" / images[3].name).unlink()
    return root


def opened_by(compute):
    """(compute()'s result, the names of the image files PIL opened while it ran, in order)."""
    opened, original = [], Image.open

    def counting(source, *args, **kwargs):
        opened.append(Path(source).name)
        return original(source, *args, **kwargs)

    Image.open = counting
    try:
        return compute(), opened
    finally:
        Image.open = original


def error_of(compute) -> str:
    try:
        compute()
    except DataError as error:
        return str(error)
    return "no error"


def features_over(ranks, root: Path) -> tuple[dict, dict]:
    """Every case's features (tensors) and what each case opened, its captions and its errors (JSON)."""
    clip = backbones.load_clip(str(root / "clip"))
    cc3m = root / "cc3m"
    tensors, found = {}, {}
    cases = {
        "cc3m": lambda: cc3m_pairs(cc3m / "cc3m.tsv", cc3m / "images", clip, batch_size=2, ranks=ranks),
        "cc3m_one": lambda: cc3m_pairs(cc3m / "cc3m.tsv", cc3m / "images", clip, limit=1, ranks=ranks),
        "karpathy": lambda: reward_data({"train_json": str(root / "karpathy" / "dataset_coco.json"),
                                         "train_images": str(root / "karpathy" / "images"), "train_scenes": 100,
                                         "image_input": "patches"}, clip, ranks),
    }
    for name, compute in cases.items():
        result, opened = opened_by(compute)
        features, captions = result if name.startswith("cc3m") else (result.features, result.captions)
        tensors[name] = features
        found[name] = {"opened": opened, "captions": captions}

    rendered, original = [], world.render_array

    def counting_render(scenes, size):
        rendered.extend(s.seed for s in scenes)
        return original(scenes, size)

    world.render_array = counting_render
    try:
        scenes = grounding_data({"train_tsv": "", "train_captions": "canonical", "train_scenes": SCENES,
                                 "image_input": "embedding"}, clip, ranks)
    finally:
        world.render_array = original
    tensors["scenes"] = scenes.features
    found["scenes"] = {"rendered": rendered, "captions": [scenes.caption_of(i, 0) for i in range(SCENES)]}

    for name in ("broken", "missing"):
        found[name] = error_of(lambda: cc3m_pairs(root / name / "cc3m.tsv", root / name / "images", clip,
                                                  batch_size=2, ranks=ranks))
    return {k: v.contiguous() for k, v in tensors.items()}, found


def _run_rank(rank: int, world_size: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        tensors, found = features_over(distributed.current(), Path(root))
        save_file(tensors, os.path.join(root, f"rank{rank}.safetensors"))
        Path(root, f"rank{rank}.json").write_text(json.dumps(found))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(folder):
    """"single" (one process) and "rank0", "rank1" (two): (tensors, the rest)."""
    mp.spawn(_run_rank, args=(2, free_port(), str(folder)), nprocs=2, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = features_over(distributed.SINGLE, folder)
    finally:
        torch.set_num_threads(threads)
    return {"single": single} | {f"rank{r}": (load_file(folder / f"rank{r}.safetensors"),
                                              json.loads((folder / f"rank{r}.json").read_text())) for r in range(2)}


@pytest.mark.parametrize("case", ["cc3m", "cc3m_one", "karpathy", "scenes"])
def test_every_rank_gets_the_one_process_features_in_dataset_order(results, case):
    single = results["single"][0][case]
    assert single.shape[0] == {"cc3m": CC3M_IMAGES, "cc3m_one": 1, "karpathy": 5, "scenes": SCENES}[case]
    for rank in ("rank0", "rank1"):
        features, found = results[rank]
        assert features[case].shape == single.shape and features[case].dtype == single.dtype
        # A rank's batches start at its block's start, not where one process's do, and a batch of other
        # images may change the last bits (up to 1.2e-7 here); rows in another order differ far more.
        torch.testing.assert_close(features[case], single, rtol=1e-5, atol=1e-6)
        if case == "cc3m":  # batches of 2 from images 0 and 4: the very batches one process encodes
            assert torch.equal(features[case], single), "the gather changed bits"
        assert found[case]["captions"] == results["single"][1][case]["captions"]  # every rank reads them all


@pytest.mark.parametrize("case", ["cc3m", "cc3m_one", "karpathy"])
def test_each_image_file_is_opened_by_exactly_one_rank(results, case):
    everything = results["single"][1][case]["opened"]
    assert len(everything) == len(set(everything)) == results["single"][0][case].shape[0]
    rank0, rank1 = (results[rank][1][case]["opened"] for rank in ("rank0", "rank1"))
    assert rank0 + rank1 == everything  # rank 0 the first block, rank 1 the rest, none twice
    assert len(rank0) == len(rank1) + 1  # odd counts: rank 0's block is the longer


def test_each_scene_is_rendered_by_exactly_one_rank(results):
    assert results["single"][1]["scenes"]["rendered"] == list(range(SCENES))
    assert results["rank0"][1]["scenes"]["rendered"] == [0, 1, 2]
    assert results["rank1"][1]["scenes"]["rendered"] == [3, 4]


def test_a_broken_image_is_named_by_the_rank_that_opens_it(results, folder):
    """Each rank's block holds a broken image, so each rank fails on its own (were only one rank's
    broken, the other would wait in the gather until the launcher, torchrun or mp.spawn, stops it)."""
    images = results["single"][1]["cc3m"]["opened"]  # the files' names, in dataset order
    for name, index in {"single": 1, "rank0": 1, "rank1": 5}.items():
        error = results[name][1]["broken"]
        assert error.startswith(f"{folder / 'broken' / 'images' / images[index]}: not a readable image"), error


def test_a_missing_image_is_named_on_every_rank(results, folder):
    """Every rank checks that all the files exist before any is encoded: none waits for another."""
    stem = Path(results["single"][1]["cc3m"]["opened"][3]).stem
    for name in ("single", "rank0", "rank1"):
        error = results[name][1]["missing"]
        assert f"line 5: image file not found: {folder / 'missing' / 'images' / stem} (also tried" in error, error
