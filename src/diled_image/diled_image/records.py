"""Image files on disk: find them, check them, load them (PNG / JPEG, class sub-folders as labels).

Every problem is an :class:`ImageDataError` (a ``ValueError``, so the ``diled`` command prints it as one
paragraph): it names the file, says what is wrong and how to fix it. With ``bad_files: skip`` unreadable
files are left out with a logged warning instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from diled_core import DataError
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "EXTENSIONS",
    "BadFiles",
    "ImageDataError",
    "ImageRecord",
    "find_images",
    "load_image",
    "record_image",
    "scan_images",
    "to_uint8",
]

log = logging.getLogger(__name__)
EXTENSIONS = (".png", ".jpg", ".jpeg")
BadFiles = Literal["error", "skip"]  # an unreadable file stops the run | is left out with a warning
#: PIL modes and their channel counts (others, e.g. palette "P", are converted to L or RGB)
MODE_CHANNELS = {
    "1": 1,
    "L": 1,
    "I": 1,
    "I;16": 1,
    "F": 1,
    "LA": 2,
    "RGB": 3,
    "YCbCr": 3,
    "RGBA": 4,
    "CMYK": 4,
}


class ImageDataError(DataError):
    """Bad image data: what is wrong, where (file or folder) and how to fix it, in one paragraph."""


@dataclass(frozen=True)
class ImageRecord:
    """One image file: its path, its id (the path relative to the root) and its class label (-1: none)."""

    path: Path
    id: str
    label: int


def find_images(root: str | Path, classes: list[str] | None = None) -> tuple[list[ImageRecord], list[str]]:
    """Every PNG/JPEG under ``root`` (sorted) with labels from class sub-folders at any depth: the label of
    ``root/cat/a/x.png`` is the index of ``"cat/a"`` in ``classes`` (default: the sorted class folders of
    ``root``; pass the training folder's so val/test folders get the same labels); files directly in
    ``root`` or in an unknown folder get -1. Returns the records and the class names."""
    root = Path(root)
    if not root.is_dir():
        raise ImageDataError(
            f"image folder {root} does not exist (or is not a folder); check data.init_args.root "
            "(relative paths are resolved from the folder you run diled in)."
        )
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise ImageDataError(
            f"image folder {root} holds no PNG or JPEG files ({', '.join(EXTENSIONS)}, in any sub-folder); "
            "point data.init_args.root at the folder with the images."
        )
    if classes is None:
        classes = sorted({p.parent.relative_to(root).as_posix() for p in files} - {"."})
    index = {c: i for i, c in enumerate(classes)}
    records = [
        ImageRecord(p, p.relative_to(root).as_posix(), index.get(p.parent.relative_to(root).as_posix(), -1))
        for p in files
    ]
    return records, classes


def _channel_error(path: Path, mode: str, channels: int) -> ImageDataError:
    got = MODE_CHANNELS.get(mode, "?")
    return ImageDataError(
        f"{path}: the image has {got} channel(s) (PIL mode {mode}) but the data is configured with "
        f"channels={channels}; set data.init_args.channels: {got if got in (1, 3) else 3}, or "
        "data.init_args.convert: true to convert every image to "
        f"{'grayscale' if channels == 1 else 'RGB'}."
    )


def load_image(path: Path, channels: int, convert: bool) -> Tensor:
    """Decode one file -> uint8 ``[channels, H, W]``. Raises :class:`ImageDataError` naming the file if
    it cannot be decoded (corrupt, truncated) or has another channel count (unless ``convert``)."""
    target = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != target:
                if (
                    not convert
                    and img.mode not in ("P", "I;16", "I", "1")
                    and MODE_CHANNELS.get(img.mode) != channels
                ):
                    raise _channel_error(path, img.mode, channels)
                img = img.convert(target)
            return TF.pil_to_tensor(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageDataError(
            f"{path}: cannot decode the image ({type(err).__name__}: {str(err)[:160]}); the file is corrupt "
            "or truncated. Replace or delete it, or set data.init_args.bad_files: skip to leave unreadable "
            "files out with a warning."
        ) from None


def scan_images(
    records: list[ImageRecord],
    channels: int,
    convert: bool,
    resize: bool,
    size: int | None,
    bad_files: BadFiles,
) -> list[ImageRecord]:
    """Decode every file once and check it: readable, ``channels`` channels, and (unless ``resize``) all
    of one size, ``size`` × ``size`` when given. Returns the records kept (unreadable ones dropped with a
    warning when ``bad_files="skip"``)."""
    kept: list[ImageRecord] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for rec in records:
        try:
            hw = tuple(load_image(rec.path, channels, convert).shape[1:])
        except ImageDataError as err:
            if bad_files == "skip" and "cannot decode" in str(err):
                log.warning("skipping %s (bad_files: skip): %s", rec.path, err)
                continue
            raise
        if not resize:
            first = first or (rec.path, hw)  # type: ignore[assignment]
            if hw != first[1]:
                raise ImageDataError(
                    f"{rec.path} is {hw[1]}×{hw[0]} pixels but {first[0]} is "
                    f"{first[1][1]}×{first[1][0]}: the "
                    "images have mixed sizes. Set data.init_args.resize: true to resize and centre-crop "
                    "every image to image_size."
                )
            if size is not None and hw != (size, size):
                raise ImageDataError(
                    f"{rec.path} is {hw[1]}×{hw[0]} pixels but the data is configured for "
                    f"{size}×{size} images "
                    "(data.init_args.image_size, less any pad); set image_size to the images' size (square "
                    "images), or resize: true to resize and centre-crop them."
                )
        kept.append(rec)
    if not kept:
        raise ImageDataError(
            f"none of the {len(records)} image file(s) could be read (bad_files: skip left them all out); "
            "check the files under data.init_args.root."
        )
    return kept


def record_image(index: int, record: object, channels: int, convert: bool) -> tuple[Tensor, str]:
    """One raw record of the Python API -> (uint8 ``[channels, H, W]``, its id): an image file (a path,
    decoded as the data's files are) or a uint8 tensor ``[C, H, W]`` (torchvision's convention, e.g.
    ``torchvision.io.read_image``). Anything else is an :class:`ImageDataError` naming the record."""
    if isinstance(record, (str, Path)):
        if not Path(record).is_file():
            raise ImageDataError(
                f"record {index}: there is no image file at {record} (relative paths are resolved from "
                f"{Path.cwd()}); give the path of a PNG or JPEG file, or a uint8 tensor [C, H, W]."
            )
        return load_image(Path(record), channels, convert), str(record)
    where = f"record {index}"
    if not isinstance(record, Tensor):
        raise ImageDataError(
            f"{where} is a {type(record).__name__}; image records are file paths or uint8 tensors "
            "[C, H, W] (torchvision.io.read_image gives one)."
        )
    shape = tuple(record.shape)
    if record.dtype != torch.uint8 or record.ndim != 3:
        raise ImageDataError(
            f"{where} is a {record.dtype} tensor of shape {shape}; image records are uint8 tensors "
            "[C, H, W] with values 0-255 (from [0, 1] floats: (x * 255).round().to(torch.uint8); "
            "from [H, W, C] arrays: .permute(2, 0, 1))."
        )
    if shape[0] != channels:
        if shape[-1] == channels:
            fix = "it looks like [H, W, C]: use x.permute(2, 0, 1)"
        elif channels == 3:
            fix = "x.expand(3, -1, -1) makes RGB from grayscale"
        else:
            fix = "x.float().mean(0, keepdim=True).round().to(torch.uint8) makes grayscale"
        raise ImageDataError(
            f"{where} has {shape[0]} channel(s) (shape {shape}) but the data is configured with "
            f"channels={channels}; give [{channels}, H, W] tensors ({fix})."
        )
    return record.cpu(), f"record{index}"


def to_uint8(images: Tensor) -> Tensor:
    """Images float in [-1, 1] ``[..., C, H, W]`` -> uint8 0-255 (rounded, clamped), on the CPU."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_float(images: Tensor) -> Tensor:
    """uint8 ``[..., C, H, W]`` -> float in [-1, 1]."""
    return images.to(torch.float32) / 127.5 - 1.0
