"""Writing prediction files: atomic writes, per-rank file names and FASTA records."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["atomic_path", "format_fasta", "rank_file", "write_text"]


def rank_file(out_dir: Path, name: str, rank: int) -> Path:
    """``out_dir/name`` on rank 0, ``out_dir/<stem>.rank<r><suffix>`` on rank r > 0."""
    if rank == 0:
        return out_dir / name
    stem, dot, suffix = name.partition(".")
    return out_dir / f"{stem}.rank{rank}{dot}{suffix}"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path`` (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def format_fasta(records: Iterable[tuple[str, str]]) -> str:
    """``(header without '>', sequence)`` pairs -> FASTA text, one line per sequence."""
    return "".join(f">{h}\n{s}\n" for h, s in records)
