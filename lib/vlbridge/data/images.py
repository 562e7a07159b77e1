"""Opening image files, and finding the file a record refers to."""
from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from .errors import DataError

# Where a dataset names an image without its extension (CC3M stems, VIST photo ids).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def decode_image(source: Path | BinaryIO, where) -> Image.Image:
    """The image in `source` (a file, or a file's bytes in a BytesIO) as RGB, fully decoded, so a
    truncated file fails here and not later; any failure is a DataError that starts with `where`."""
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{where}: image file not found") from None
    # A header claiming more than twice PIL's MAX_IMAGE_PIXELS (about 179M pixels): PIL refuses it
    # before allocating, with an error that names no file.
    except Image.DecompressionBombError as error:
        raise DataError(f"{where}: image too large to decode safely ({error})") from None
    # PIL's PNG reader raises SyntaxError for some broken chunks, OSError for truncated data.
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{where}: not a readable image ({error})") from None


def open_image(path) -> Image.Image:
    """The image at `path` as RGB, fully decoded (see decode_image)."""
    path = Path(path)
    return decode_image(path, path)


def image_file(image_dir, name: str, source: Path, where: str) -> Path:
    """The file for image `name` in `image_dir`: the name itself, else the name plus a usual
    extension. A DataError names the dataset file, the record and the image file when none exists."""
    base = Path(image_dir) / name
    for candidate in (base, *(base.with_name(base.name + ext) for ext in IMAGE_EXTENSIONS)):
        if candidate.is_file():
            return candidate
    tried = "" if base.suffix else f" (also tried {', '.join(IMAGE_EXTENSIONS)})"
    raise DataError(f"{source}: {where}: image file not found: {base}{tried}")


_TRAILING_ID = re.compile(r"(\d+)$")


def images_by_id(image_dir) -> dict[int, Path]:
    """Image files of `image_dir` keyed by the number their name ends with: the only link from an
    id to a file in VisDial ('VisualDialog_val2018_000000185565.jpg', 'microworld_00000042.png')."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: image folder not found")
    found: dict[int, Path] = {}
    for path in sorted(image_dir.iterdir()):
        match = _TRAILING_ID.search(path.stem)
        if path.suffix.lower() not in IMAGE_EXTENSIONS or match is None:
            continue
        image_id = int(match.group(1))
        if image_id in found:
            raise DataError(f"{image_dir}: two images for id {image_id}: {found[image_id].name} and {path.name}")
        found[image_id] = path
    return found
