"""Predict-task outputs -> PNG files, batch by batch (the image side of ``diled predict``).

Files per task (rank r > 0 adds ``.rank<r>``, named by :func:`diled_core.rank_file`):

=============  ===================================================================================
reconstruct    ``reconstructions.png``: a grid of input / reconstruction pairs (the first
               ``grid_images`` images); ``reconstructions/<id>.png``: every reconstruction
generate       ``samples.png`` (grid); ``samples/<index>.png``
encode         ``embeddings.csv`` (id, label, [prediction], mu_0 …), ``embeddings.npy`` (μ),
               ``embeddings_xT.npy`` (the DDIM-inverted latent code, with ``--prediction.invert``)
interpolate    ``interpolations.png``: one row per pair (start, decoded points, end);
               ``interpolations/pair<p>_alpha<α>.png``
optimise       ``optimised.png``: input, reconstruction, optimised (triples); ``optimised/<id>.png``
transfer       ``transfers.png``: input / manipulated pairs; ``transfers/<id>_to<target class>.png``
=============  ===================================================================================

Grids keep at most ``grid_images`` images in memory; per-image files are written as they come into a
hidden folder that is renamed into place when the task ends (removed if it fails).
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path
from typing import Callable

import torch
from diled_core import ArrayWriter, Batch, PredictTask, RecordWriter, rank_file
from torch import Tensor
from torchvision.utils import make_grid, save_image

__all__ = ["EmbeddingsWriter", "ImageFilesWriter", "ImageGridWriter", "task_writers"]

#: outputs -> (images [n, C, H, W] in display order, images per grid row)
Arrange = Callable[[Batch], tuple[Tensor, int]]


def _unit(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


class ImageGridWriter(RecordWriter):
    """One PNG grid of the first ``capacity`` images that ``arrange`` lays out, ``nrow`` per row."""

    def __init__(self, path: Path, arrange: Arrange, capacity: int = 64) -> None:
        super().__init__()
        self.file = self.open(path, "wb")
        self.arrange, self.capacity = arrange, capacity
        self.rows: list[Tensor] = []
        self.kept, self.nrow = 0, 8

    def write(self, outputs: Batch) -> None:
        if self.kept >= self.capacity:
            return
        images, self.nrow = self.arrange(outputs)
        images = images[: self.capacity - self.kept]
        self.rows.append(_unit(images))
        self.kept += len(images)

    def finish(self) -> None:
        if self.rows:
            grid = make_grid(torch.cat(self.rows), nrow=self.nrow, padding=2, pad_value=1.0)
            save_image(grid, self.file, format="png")


def _safe(name: str) -> str:
    """A file stem from an example id: its image extension dropped, other characters than letters,
    digits, ``.``, ``_`` and ``-`` replaced (``cats/a b.jpg`` -> ``cats_a_b``)."""
    name = re.sub(r"\.(png|jpe?g)$", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


class ImageFilesWriter(RecordWriter):
    """One PNG per row into the folder ``path`` (written to ``.<name>.tmp/``, renamed on close), and
    ``path/files.csv`` listing each file with its row name. ``name(outputs) -> list[str]`` gives each
    row's name (an example id, a sample index ...); ``images(outputs)`` the images. :meth:`close`
    returns the manifest only, so ``metrics.json`` stays small however many images were written."""

    def __init__(
        self, path: Path, images: Callable[[Batch], Tensor], name: Callable[[Batch], list[str]]
    ) -> None:
        super().__init__()
        self.path, self.images, self.name = path, images, name
        self.tmp = path.with_name(f".{path.name}.tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.manifest = open(self.tmp / "files.csv", "w", newline="", encoding="utf-8")
        self.rows = csv.writer(self.manifest)
        self.rows.writerow(["file", "name"])

    def write(self, outputs: Batch) -> None:
        for image, name in zip(_unit(self.images(outputs)), self.name(outputs)):
            save_image(image, self.tmp / f"{_safe(name)}.png")
            self.rows.writerow([f"{_safe(name)}.png", name])

    def close(self) -> list[Path]:
        super().close()
        self.manifest.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.tmp.rename(self.path)
        return [self.path / "files.csv"]

    def abort(self) -> None:
        super().abort()
        self.manifest.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class EmbeddingsWriter(RecordWriter):
    """``embeddings.csv`` (id, label, [prediction], mu_0 …), ``embeddings.npy`` and, when the outputs have
    ``x_T``, ``embeddings_xT.npy``; rows stream in as they come."""

    def __init__(self, out_dir: Path, rank: int) -> None:
        super().__init__()
        self.out_dir, self.rank = out_dir, rank
        self.csv = csv.writer(self.open(rank_file(out_dir, "embeddings.csv", rank), newline=""))
        self.arrays: dict[str, ArrayWriter] = {}
        self.header = False

    def _array(self, key: str, name: str, value: Tensor) -> None:
        if key not in self.arrays:
            self.arrays[key] = self.part(ArrayWriter(rank_file(self.out_dir, name, self.rank)))
        self.arrays[key].write(value)

    def write(self, outputs: Batch) -> None:
        mu, pred = outputs["mu"], outputs.get("prediction")
        if not self.header:
            self.csv.writerow(
                [
                    "id",
                    "label",
                    *(["prediction"] if pred is not None else []),
                    *(f"mu_{i}" for i in range(mu.shape[1])),
                ]
            )
            self.header = True
        labels = outputs["input"]["label"].tolist()
        for i, rid in enumerate(outputs["input"]["id"]):
            extra = [f"{float(pred[i]):.6g}"] if pred is not None else []
            self.csv.writerow([rid, labels[i], *extra, *(f"{v:.6g}" for v in mu[i].tolist())])
        self._array("mu", "embeddings.npy", mu)
        if "x_T" in outputs:
            self._array("x_T", "embeddings_xT.npy", outputs["x_T"])


def _pairs(o: Batch) -> tuple[Tensor, int]:
    return torch.stack([o["input"]["image"], o["output"]["image"]], 1).flatten(0, 1), 8


def _paths(o: Batch) -> tuple[Tensor, int]:
    """Interpolation rows: each pair's start, its decoded points, its end."""
    pair, rows = o["pair"], []
    points = int((pair == pair[0]).sum())
    for start in range(0, len(pair), points):
        rows += [
            o["input_a"]["image"][start : start + 1],
            o["output"]["image"][start : start + points],
            o["input_b"]["image"][start : start + 1],
        ]
    return torch.cat(rows), points + 2


def _triples(o: Batch) -> tuple[Tensor, int]:
    return torch.stack([o["input"]["image"], o["reconstruction"]["image"], o["output"]["image"]], 1).flatten(
        0, 1
    ), 6


def task_writers(
    task: PredictTask, out_dir: Path, rank: int, *, grid_images: int = 64, image_files: bool = True
) -> list[RecordWriter]:
    """One rank's writers of ``task`` (see the module docstring)."""
    if task == "encode":
        return [EmbeddingsWriter(out_dir, rank)]
    name, arrange, stems = {
        "reconstruct": ("reconstructions", _pairs, lambda o: list(o["input"]["id"])),
        "generate": (
            "samples",
            lambda o: (o["output"]["image"], 8),
            lambda o: [f"{i:06d}" for i in o["index"].tolist()],
        ),
        "interpolate": (
            "interpolations",
            _paths,
            lambda o: [f"pair{p:05d}_alpha{a:.3f}" for p, a in zip(o["pair"].tolist(), o["alpha"].tolist())],
        ),
        "optimise": ("optimised", _triples, lambda o: list(o["input"]["id"])),
        "transfer": (
            "transfers",
            _pairs,
            lambda o: [f"{_safe(i)}_to{t}" for i, t in zip(o["input"]["id"], o["target"].tolist())],
        ),
    }[task]
    writers: list[RecordWriter] = [
        ImageGridWriter(rank_file(out_dir, f"{name}.png", rank), arrange, grid_images)
    ]
    if image_files:
        writers.append(
            ImageFilesWriter(rank_file(out_dir, name, rank), lambda o: o["output"]["image"], stems)
        )
    return writers
