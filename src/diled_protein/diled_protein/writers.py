"""Writing prediction files: atomic writes, per-rank file names and FASTA records."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from diled_core import atomic_write

__all__ = ["format_fasta", "rank_file", "write_text"]


def rank_file(out_dir: Path, name: str, rank: int) -> Path:
    """``out_dir/name`` on rank 0, ``out_dir/<stem>.rank<r><suffix>`` on rank r > 0."""
    if rank == 0:
        return out_dir / name
    stem, dot, suffix = name.partition(".")
    return out_dir / f"{stem}.rank{rank}{dot}{suffix}"


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, encoding="utf-8") as f:
        f.write(text)
    return path


def format_fasta(records: Iterable[tuple[str, str]]) -> str:
    """``(header without '>', sequence)`` pairs -> FASTA text, one line per sequence."""
    return "".join(f">{h}\n{s}\n" for h, s in records)
