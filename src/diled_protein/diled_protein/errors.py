"""The one exception the protein plugin raises for bad user input (files, columns, residues)."""

from __future__ import annotations

from functools import partial

from diled_core import DataError
from diled_core import data_error as _data_error

__all__ = ["ProteinDataError", "data_error"]


class ProteinDataError(DataError):
    """Bad protein data: the message says what is wrong, where (file, line, value) and how to fix it."""


#: ``data_error(what, *, path=None, line=None, value=None, fix="")`` -> a :class:`ProteinDataError`
data_error = partial(_data_error, cls=ProteinDataError)
