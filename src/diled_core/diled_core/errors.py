"""Bad input data as one paragraph: what is wrong, where (file, line, value) and how to fix it.

Plugins subclass :class:`DataError` (``ProteinDataError``, ``TextDataError`` ...) and build messages
with :func:`data_error`; a :class:`ValueError`, so the ``diled`` command prints it without a traceback.
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["DataError", "data_error", "parse_number"]

#: cells that mean "no value" (an unlabelled example)
MISSING = frozenset({"", "nan", "na", "n/a", "none", "null"})


class DataError(ValueError):
    """Bad data: the message says what is wrong, where (file, line, value) and how to fix it."""


def data_error(
    what: str,
    *,
    path: str | Path | None = None,
    line: int | None = None,
    value: object = None,
    fix: str = "",
    cls: type[DataError] = DataError,
) -> DataError:
    """``cls("<file>, line <n>: <what> (value: ...). <fix>")``; returned, for the caller to raise."""
    where = ""
    if path is not None:
        where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
    shown = "" if value is None else f" (value: {_short(value)!r})"
    return cls(f"{where}{what}{shown}." + (f" {fix}" if fix else ""))


def _short(value: object, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_number(
    text: str,
    *,
    what: str,
    path: str | Path | None = None,
    line: int | None = None,
    cls: type[DataError] = DataError,
) -> float:
    """A numeric cell -> float; ``nan`` when missing (:data:`MISSING`); when it is not a finite number,
    a one-paragraph ``cls`` error naming ``what`` (e.g. ``"label column 'stars'"``), the file and line."""
    if text.strip().lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise data_error(f"{what} is not a number", path=path, line=line, value=text, cls=cls,
                         fix="Fix the value, or leave the cell empty for an unlabelled example.") from None
    if math.isinf(value):
        raise data_error(f"{what} is infinite", path=path, line=line, value=text, cls=cls,
                         fix="Use a finite number or leave the cell empty.")
    return value
