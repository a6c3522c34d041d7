"""Streaming record writers for ``diled predict``: each batch is written as it comes.

A :class:`RecordWriter` receives one output dict per batch (:meth:`RecordWriter.write`) and finishes
its files in :meth:`RecordWriter.close`. Files are written under a hidden temporary name and renamed
into place on close, so a crashed run never leaves a half-written file under the final name.
:func:`rank_file` is the one place per-rank file names are made.

:class:`TableWriter` is the default every modality gets: one CSV row per output row, with a column per
scalar (``[N]``) tensor or string list and ``key_0 … key_{k-1}`` for a ``[N, k]`` tensor, nested
dicts flattened with dots (``input.x_0``); tensors with three or more dimensions (images) go to
``<name>.<key>.npy``. A modality overrides only what is special to it (FASTA, sentences, PNG grids).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO, Any, Iterable, TypeVar

import numpy as np
from torch import Tensor

from ..contract import Batch

__all__ = ["ArrayWriter", "RecordWriter", "TableWriter", "TextWriter", "flatten_outputs", "rank_file"]

W = TypeVar("W", bound="RecordWriter")


def rank_file(out_dir: str | Path, name: str, rank: int) -> Path:
    """``out_dir/name`` on rank 0, ``out_dir/<stem>.rank<r>.<suffixes>`` on rank r > 0."""
    out_dir = Path(out_dir)
    if rank == 0:
        return out_dir / name
    stem, dot, suffix = name.partition(".")
    return out_dir / f"{stem}.rank{rank}{dot}{suffix}"


def flatten_outputs(outputs: Batch, prefix: str = "") -> dict[str, Any]:
    """Nested output dicts -> one level, keys joined with dots (``{"input": {"x": t}}`` -> ``input.x``)."""
    flat: dict[str, Any] = {}
    for key, value in outputs.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_outputs(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class _StagedFile:
    """A file written under ``.<name>.tmp`` beside its destination and renamed into place on commit."""

    def __init__(self, path: Path, mode: str, **kwargs: Any) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.file: IO = open(self.tmp, mode, **kwargs)

    def commit(self) -> Path:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        try:
            self.file.close()  # flushes what is buffered: may fail again on a full disk
        except OSError:
            pass
        finally:
            self.tmp.unlink(missing_ok=True)


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class RecordWriter:
    """Writes one rank's outputs of one task, batch by batch. Subclasses implement :meth:`write` and
    open their files with :meth:`open` (and writers they feed with :meth:`part`); :meth:`close` commits
    them all or, if one fails, none; :meth:`abort` removes them."""

    def __init__(self) -> None:
        self._files: list[_StagedFile] = []
        self._parts: list[RecordWriter] = []

    def open(self, path: Path, mode: str = "w", **kwargs: Any) -> IO:
        staged = _StagedFile(path, mode, **kwargs)
        self._files.append(staged)
        return staged.file

    def part(self, writer: W) -> W:
        """Register a writer this one feeds (e.g. an :class:`ArrayWriter`): it is closed and aborted
        with this one."""
        self._parts.append(writer)
        return writer

    def write(self, outputs: Batch) -> None:  # pragma: no cover - interface
        """Write one batch of outputs (CPU tensors, lists, nested dicts; all with the same rows)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Hook before the files are committed (e.g. write a trailer or a header)."""

    def close(self) -> list[Path]:
        """Finish and move every file (and every part's) into place; return their paths. If any fails
        (a full disk), the files already in place are removed, the rest discarded, and the error raised."""
        paths: list[Path] = []
        try:
            self.finish()
            for f in self._files:
                paths.append(f.commit())
            for part in self._parts:
                paths += part.close()
        except BaseException:
            _remove(paths)
            self.abort()
            raise
        self._files, self._parts = [], []
        return paths

    def abort(self) -> None:
        """Remove every file not yet in place (this writer's and its parts')."""
        for f in self._files:
            f.discard()
        for part in self._parts:
            part.abort()
        self._files, self._parts = [], []


class TextWriter(RecordWriter):
    """Writes the text a function makes of each batch into one file (FASTA, one sentence per line ...)."""

    def __init__(self, path: Path, format_batch) -> None:
        super().__init__()
        self.format_batch = format_batch
        self.file = self.open(path, encoding="utf-8", newline="")

    def write(self, outputs: Batch) -> None:
        self.file.write(self.format_batch(outputs))


class ArrayWriter(RecordWriter):
    """Appends ``[B, …]`` arrays to one ``.npy`` file; the header (with the final row count) is written
    on close, so memory stays flat however many rows arrive."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self._rows, self._shape, self._dtype = path, 0, None, None
        self._data = self.open(path.with_name(f".{path.name}.data"), "wb")

    def write(self, array: Tensor | np.ndarray) -> None:  # type: ignore[override]
        arr = np.ascontiguousarray(array.float().numpy() if isinstance(array, Tensor) else array)
        if self._shape is None:
            self._shape, self._dtype = arr.shape[1:], arr.dtype
        elif arr.shape[1:] != self._shape:
            raise ValueError(
                f"{self.path.name}: rows of shape {arr.shape[1:]} after rows of shape {self._shape}; "
                "variable-size outputs need the modality's own writer (override prediction_writers)"
            )
        self._data.write(arr.astype(self._dtype, copy=False).tobytes())
        self._rows += arr.shape[0]

    def close(self) -> list[Path]:
        data, out = self._files.pop(), None
        shape = (self._rows, *(self._shape or ()))
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(self._dtype or np.float32)),
            "fortran_order": False,
            "shape": shape,
        }
        try:
            data.commit()
            out = _StagedFile(self.path, "wb")
            np.lib.format.write_array_header_2_0(out.file, header)
            with open(data.path, "rb") as src:
                while chunk := src.read(1 << 24):
                    out.file.write(chunk)
            out.commit()
        except BaseException:
            data.discard()
            if out is not None:
                out.discard()
            raise
        finally:
            data.path.unlink(missing_ok=True)
        return [self.path]


def _columns(key: str, value: Any) -> Iterable[tuple[str, list]]:
    if isinstance(value, Tensor):
        if value.ndim == 1:
            yield key, value.tolist()
        elif value.ndim == 2:
            cols = value.T.tolist()
            for i, col in enumerate(cols):
                yield f"{key}_{i}", col
    else:
        yield key, list(value)


def _cell(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


class TableWriter(RecordWriter):
    """The default writer: ``<name>.csv`` (one row per output row) and ``<name>.<key>.npy`` for tensors
    with three or more dimensions."""

    def __init__(self, out_dir: Path, name: str, rank: int) -> None:
        super().__init__()
        self.out_dir, self.name, self.rank = Path(out_dir), name, rank
        self._csv = self.open(rank_file(out_dir, f"{name}.csv", rank), newline="")
        self._writer = csv.writer(self._csv)
        self._header: list[str] | None = None
        self._arrays: dict[str, ArrayWriter] = {}

    def write(self, outputs: Batch) -> None:
        flat = flatten_outputs(outputs)
        cols: dict[str, list] = {}
        for key, value in flat.items():
            if isinstance(value, Tensor) and value.ndim >= 3:
                if key not in self._arrays:
                    path = rank_file(self.out_dir, f"{self.name}.{key}.npy", self.rank)
                    self._arrays[key] = self.part(ArrayWriter(path))
                self._arrays[key].write(value)
            else:
                cols.update(_columns(key, value))
        if self._header is None:
            self._header = list(cols)
            self._writer.writerow(self._header)
        elif list(cols) != self._header:
            raise ValueError(
                f"{self.name}.csv: this batch has columns {list(cols)[:6]}… but earlier ones had "
                f"{self._header[:6]}…; variable-width outputs need the modality's own writer"
            )
        self._writer.writerows([[_cell(v) for v in row] for row in zip(*cols.values())])
