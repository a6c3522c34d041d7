"""The one exception the protein plugin raises for bad user input (files, columns, residues)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ProteinDataError", "data_error"]


class ProteinDataError(ValueError):
    """Bad protein data: the message says what is wrong, where (file, line, value) and how to fix it.

    A subclass of :class:`ValueError`, so the ``diled`` command prints the message without a traceback.
    """


def data_error(
    what: str, *, path: str | Path | None = None, line: int | None = None, value: object = None, fix: str = ""
) -> ProteinDataError:
    """Build a one-paragraph :class:`ProteinDataError` ``"<file>, line <n>: <what> (value: ...). <fix>"``."""
    where = ""
    if path is not None:
        where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
    shown = "" if value is None else f" (value: {_short(value)!r})"
    return ProteinDataError(f"{where}{what}{shown}." + (f" {fix}" if fix else ""))


def _short(value: object, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
