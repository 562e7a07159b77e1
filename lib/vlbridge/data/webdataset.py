"""img2dataset's webdataset output, the form CC3M (and LAION, SBU, ...) is downloaded in: a folder of
tars `00000.tar`, `00001.tar`, ..., each beside its `00000_stats.json` and `00000.parquet` (not read
here). A tar holds, per downloaded sample, files sharing a key: `000000000.jpg` (`.png` or `.webp`
under img2dataset's --encode_format), `000000000.txt` (the caption, UTF-8) and `000000000.json` (url,
caption, key, status, width, height, ...). Failed downloads appear in the parquet only, not the tar.

Read with the standard library's tarfile, a sample at a time, and without the `webdataset` package:
the format is just tar plus a naming rule, and the rule is the webdataset one (a sample's files are
consecutive members and share everything up to the first dot of their name)."""
from __future__ import annotations

import io
import itertools
import json
import re
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image

from .errors import DataError
from .images import decode_image
from .jsonfile import decode_text, is_int
from .sharding import check_rank

# img2dataset's --encode_format choices (jpg by default), and jpeg as other webdataset writers spell it.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSION = "txt"
META_EXTENSION = "json"


class WebDatasetRecord(NamedTuple):
    """One sample; a tuple so that `for key, image, caption, meta in read_shard(path)` reads it."""

    key: str  # img2dataset's: shard number then index in the shard, zero-padded ('000010042')
    image: Image.Image  # RGB, fully decoded
    caption: str
    meta: dict[str, Any]  # the sample's .json ({} without one): url, status, width, height, ...


# ------------------------------------------------------------------------------ which shards


_BRACE_GROUP = re.compile(r"(\{[^{}]*\})")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def _alternatives(group: str, pattern: str) -> list[str]:
    """'{00008..00010}' -> ['00008', '00009', '00010']; '{a,b}' -> ['a', 'b']. A bound written with a
    leading zero pads every number to the wider bound's width, as braceexpand (webdataset's) does."""
    body = group[1:-1]
    match = _RANGE.fullmatch(body)
    if match:
        low, high = match.groups()
        padded = any(len(bound) > 1 and bound.startswith("0") for bound in (low, high))
        width = max(len(low), len(high)) if padded else 0
        step = 1 if int(low) <= int(high) else -1
        return [f"{n:0{width}d}" for n in range(int(low), int(high) + step, step)]
    if "," in body:
        return body.split(",")
    raise DataError(f"{pattern}: {group} is neither a range like {{00000..00009}} nor a list like {{a,b}}")


def expand_braces(pattern: str) -> list[str]:
    """'shards/{00000..00002}.tar' -> ['shards/00000.tar', 'shards/00001.tar', 'shards/00002.tar'].
    Several groups give every combination, the first group varying slowest; groups do not nest."""
    parts = _BRACE_GROUP.split(pattern)
    literals = parts[::2]
    if any("{" in literal or "}" in literal for literal in literals):
        raise DataError(f"{pattern}: unbalanced or nested braces "
                        "(write ranges like {00000..00009}, lists like {a,b})")
    choices = [[part] if i % 2 == 0 else _alternatives(part, pattern) for i, part in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def shard_paths(source) -> list[Path]:
    """The shards `source` names: a folder (its *.tar files, in name order, which is img2dataset's
    numbering since it zero-pads), one tar file, or a brace pattern 'shards/{00000..00009}.tar'.
    Every shard must exist: a missing one would quietly drop its samples from every epoch."""
    text = str(source)
    if "{" in text or "}" in text:
        paths = [Path(name) for name in expand_braces(text)]
        repeated = sorted(str(p) for p, count in Counter(paths).items() if count > 1)
        if repeated:
            raise DataError(f"{text}: names a shard more than once ({', '.join(repeated[:3])}), "
                            "so it would be read twice")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise DataError(f"{text}: {len(missing)} of the {len(paths)} shards it names are missing: {shown}")
        return paths
    path = Path(source)
    if path.is_dir():
        paths = sorted(p for p in path.glob("*.tar") if p.is_file())
        if not paths:
            raise DataError(f"{path}: no .tar shards in the folder "
                            "(img2dataset's webdataset output has 00000.tar, 00001.tar, ...)")
        return paths
    if path.is_file():
        return [path]
    raise DataError(f"{path}: not found (expected a folder of .tar shards, a .tar file or a pattern like "
                    "shards/{00000..00009}.tar)")


def shards_for_rank(paths: Iterable[Path], rank: int, world: int) -> list[Path]:
    """The shards `rank` of `world` reads: every world-th one from the rank's own, so each shard (and
    so each sample) is read by exactly one rank per epoch. Shards hold different numbers of samples
    (failed downloads, the short last shard), so the ranks' sample counts differ: the training loop
    must stop all ranks at the same step. Fewer shards than ranks is an error, not an idle rank that
    would leave the others waiting at their first all-reduce."""
    check_rank(rank, world)
    paths = list(paths)
    if len(paths) < world:
        names = ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        raise DataError(f"{len(paths)} shard(s) ({names or 'none'}) for {world} ranks: each rank reads whole shards, "
                        f"so use at most {len(paths)} ranks or re-shard with a smaller --number_sample_per_shard")
    return paths[rank::world]


# ------------------------------------------------------------------------------ reading a shard


def _key_and_extension(name: str) -> tuple[str, str] | None:
    """'000000042.jpg' -> ('000000042', 'jpg'); 'a/b.seg.png' -> ('a/b', 'seg.png'), webdataset's rule:
    the key is the folder plus the name up to its first dot. None for a name without one."""
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    if not dot or not stem or not extension:
        return None
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def _record(path: Path, key: str, files: dict[str, bytes]) -> WebDatasetRecord:
    """A sample from its files by extension; extensions other than the image, txt and json are
    ignored (other tools add e.g. embeddings to the same key)."""
    where = f"{path}: key {key!r}"
    has = ", ".join(f"{key}.{extension}" for extension in files)
    images = [extension for extension in IMAGE_EXTENSIONS if extension in files]
    if len(images) != 1:
        problem = "no image" if not images else "more than one image"
        raise DataError(f"{where}: {problem} (expected one of {', '.join(IMAGE_EXTENSIONS)}; has {has})")
    if CAPTION_EXTENSION not in files:
        raise DataError(f"{where}: no caption {key}.{CAPTION_EXTENSION} (has {has}; img2dataset writes one "
                        "when given a caption column)")
    caption = decode_text(files[CAPTION_EXTENSION], f"{where}: {key}.{CAPTION_EXTENSION}")
    meta: Any = {}
    if META_EXTENSION in files:
        text = decode_text(files[META_EXTENSION], f"{where}: {key}.{META_EXTENSION}")
        try:
            meta = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: {key}.{META_EXTENSION} is not valid JSON ({error})") from None
        if not isinstance(meta, dict):
            raise DataError(f"{where}: {key}.{META_EXTENSION} should be a JSON object, got {type(meta).__name__}")
    image = decode_image(io.BytesIO(files[images[0]]), f"{where}: {key}.{images[0]}")
    return WebDatasetRecord(key, image, caption, meta)


def _check_complete(tar: tarfile.TarFile, file, path: Path) -> None:
    """tarfile stops without a word when the data ends at, or inside, a member's header, so a shard cut
    short between samples (an interrupted copy or download) would lose its last samples silently. A
    whole tar has a block of zeros after its last member: check that it is there."""
    end = tar.offset  # where tarfile stopped reading headers
    file.seek(end)
    if file.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
        raise DataError(f"{path}: the tar ends early, at byte {end}, without its end-of-archive block "
                        "(a copy or download cut short, or a corrupt header)")


def _samples(tar: tarfile.TarFile, file, path: Path) -> Iterator[WebDatasetRecord]:
    seen: set[str] = set()
    key, files = None, {}
    for member in tar:
        if not member.isfile():  # folders, links: img2dataset writes none, and they hold no sample data
            continue
        named = _key_and_extension(member.name)
        if named is None:
            raise DataError(f"{path}: member {member.name!r} has no key.extension name, so belongs to no sample "
                            "(expected names like 000000000.jpg, 000000000.txt, 000000000.json)")
        member_key, extension = named
        if member_key != key:
            if key is not None:
                yield _record(path, key, files)
            if member_key in seen:
                raise DataError(f"{path}: key {member_key!r}: its files are not consecutive in the tar (a sample's "
                                "files must follow each other, as img2dataset and webdataset write them)")
            seen.add(member_key)
            key, files = member_key, {}
        if extension in files:
            raise DataError(f"{path}: key {key!r}: two {extension} files")
        files[extension] = tar.extractfile(member).read()
    _check_complete(tar, file, path)  # before the last sample, which a cut could have left partial
    if key is not None:
        yield _record(path, key, files)


def read_shard(path) -> Iterator[WebDatasetRecord]:
    """The samples of one tar, in order, read one at a time. Strict: a sample without its image or
    caption, an unreadable image, a truncated or non-tar file are DataErrors naming the tar (and key).
    A tar with no members (img2dataset's shard where every download failed) gives no samples."""
    path = Path(path)
    try:
        with open(path, "rb") as file, tarfile.open(fileobj=file, mode="r:") as tar:
            yield from _samples(tar, file, path)
    except FileNotFoundError:
        raise DataError(f"{path}: shard not found") from None
    except (tarfile.TarError, OSError) as error:
        raise DataError(f"{path}: not a readable tar file ({error})") from None


def load_webdataset(source, rank: int = 0, world: int = 1, limit: int | None = None) -> list[WebDatasetRecord]:
    """The samples of `rank`'s shards of `source` (see `shard_paths`, `shards_for_rank`), at most
    `limit` of them, in memory. For a whole CC3M, stream `read_shard` over the rank's shards instead."""
    if limit is not None and not (is_int(limit) and limit >= 0):
        raise ValueError(f"limit should be None or an int >= 0, got {limit!r}")
    shards = shards_for_rank(shard_paths(source), rank, world)
    samples = itertools.chain.from_iterable(read_shard(path) for path in shards)
    return list(itertools.islice(samples, limit))
