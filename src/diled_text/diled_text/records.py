"""Reading sentence files into validated records: plain lines, CSV/TSV, JSONL, a Hugging Face
``datasets`` folder, and the VADER rated sentences.

Every problem with the user's file is a :class:`~diled_text.errors.TextDataError` naming the file, the
line and the value: an empty file, bytes that are not UTF-8, a missing column, a label that is not a
number. Documented skips (counted and logged as warnings, never silent): empty lines / empty text
cells. Missing labels (empty cell, ``nan``, ``NA``, ``None``) keep the sentence, unlabelled.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from diled_core import parse_number

from .errors import TextDataError, data_error

__all__ = [
    "Column",
    "TextFormat",
    "TextRecord",
    "read_hf_dataset",
    "read_jsonl",
    "read_lines",
    "read_records",
    "read_table",
    "read_vader",
    "resolve_path",
]

log = logging.getLogger(__name__)

#: a column by header name (or JSON key) or by 0-based position
Column = str | int
TextFormat = Literal["auto", "lines", "csv", "tsv", "jsonl", "hf"]
_SUFFIX_FORMAT = {".txt": "lines", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


@dataclass(frozen=True)
class TextRecord:
    """One sentence: its id, its text and its numeric label (``nan`` when unlabelled)."""

    id: str
    text: str
    label: float = math.nan


def resolve_path(path: str | Path, *, folder: bool = False) -> Path:
    """``path`` as a :class:`Path`, or an error naming it and the working directory it was read from."""
    p = Path(path).expanduser()
    ok = p.is_dir() if folder else p.is_file()
    if not ok:
        kind = "does not exist" if not p.exists() else ("is a file" if folder else "is a directory")
        raise data_error(
            f"the data {'folder' if folder else 'file'} {str(p)!r} {kind} (relative paths are read from "
            f"{Path.cwd()})",
            fix="Pass an existing path, e.g. `--data.init_args.path=...`.",
        )
    return p


def _utf8_lines(path: Path) -> list[str]:
    """The file's lines (line endings removed, CRLF included); an error names the first non-UTF-8 line."""
    raw = path.read_bytes()
    if not raw.strip():
        raise data_error(
            "the file is empty", path=path, fix="Point the data module at a file with sentences."
        )
    lines = raw.splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise data_error(
                f"bytes that are not UTF-8 at column {err.start + 1}",
                path=path,
                line=number,
                value=line[max(err.start - 20, 0) : err.start + 20],
                fix="Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`).",
            ) from None
    text = raw.decode("utf-8")
    return text.removeprefix("\ufeff").splitlines()


def parse_label(text: str, *, path: Path | str, line: int | None, column: Column) -> float:
    """A label cell -> float; ``nan`` when missing; an error when it is not a finite number."""
    return parse_number(text, what=f"label column {column!r}", path=path, line=line, cls=TextDataError)


def _log_skipped(path: Path | str, empty: int) -> None:
    if empty:
        log.warning("%s: skipped %d empty line(s) or empty text cell(s)", path, empty)


def _nonempty(records: list[TextRecord], path: Path | str) -> list[TextRecord]:
    if not records:
        raise data_error(
            "no sentences were read (every line or text cell is empty)",
            path=path,
            fix="Check the file and the text column.",
        )
    return records


def read_lines(path: str | Path) -> list[TextRecord]:
    """One sentence per line, unlabelled; ids are ``<file stem>:<line>``."""
    path = resolve_path(path)
    records, empty = [], 0
    for number, line in enumerate(_utf8_lines(path), start=1):
        if not line.strip():
            empty += 1
            continue
        records.append(TextRecord(f"{path.stem}:{number}", line.strip()))
    _log_skipped(path, empty)
    return _nonempty(records, path)


def _column_index(col: Column, header: list[str] | None, path: Path) -> int:
    if isinstance(col, int):
        return col
    if header is None:
        raise data_error(
            f"column {col!r} is named but the file is read without a header",
            path=path,
            fix="Name columns by 0-based position (e.g. 0) or set header: true.",
        )
    if col not in header:
        raise data_error(
            f"missing column {col!r}; the header has {header}",
            path=path,
            fix="Set text_column / label_column to names from the header (or 0-based positions).",
        )
    return header.index(col)


def read_table(
    path: str | Path,
    *,
    delimiter: str = ",",
    text_column: Column = "text",
    label_column: Column | None = None,
    id_column: Column | None = None,
    header: bool = True,
) -> list[TextRecord]:
    """A CSV (``delimiter=","``) or TSV (``"\\t"``) file with a text column and an optional numeric label."""
    path = resolve_path(path)
    lines = _utf8_lines(path)
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    names = None
    if header:
        names = [n.strip() for n in next(reader)]
    text_i = _column_index(text_column, names, path)
    label_i = None if label_column is None else _column_index(label_column, names, path)
    id_i = None if id_column is None else _column_index(id_column, names, path)
    needed = max(text_i, -1 if label_i is None else label_i, -1 if id_i is None else id_i) + 1
    records, empty = [], 0
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            empty += 1
            continue
        if len(row) < needed:
            raise data_error(
                f"row has {len(row)} fields but column {needed - 1} (0-based) is needed",
                path=path,
                line=number,
                value=delimiter.join(row),
                fix=f"Check the delimiter (must be {delimiter!r}) and the column settings.",
            )
        if not row[text_i].strip():
            empty += 1
            continue
        label = (
            math.nan
            if label_i is None
            else parse_label(row[label_i], path=path, line=number, column=label_column)
        )  # type: ignore[arg-type]
        rid = row[id_i].strip() if id_i is not None else f"{path.stem}:{number}"
        records.append(TextRecord(rid, row[text_i].strip(), label))
    _log_skipped(path, empty)
    return _nonempty(records, path)


def read_jsonl(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str | None = None,
    id_column: str | None = None,
) -> list[TextRecord]:
    """One JSON object per line with a text field and an optional numeric label field."""
    path = resolve_path(path)
    records, empty = [], 0
    for number, line in enumerate(_utf8_lines(path), start=1):
        if not line.strip():
            empty += 1
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise data_error(
                f"not a JSON object ({err.msg})",
                path=path,
                line=number,
                value=line,
                fix="Write one JSON object per line (JSON Lines).",
            ) from None
        if not isinstance(obj, dict) or text_column not in obj:
            raise data_error(
                f"no field {text_column!r}",
                path=path,
                line=number,
                value=line,
                fix="Set text_column to the key that holds the sentence.",
            )
        text = str(obj[text_column] or "").strip()
        if not text:
            empty += 1
            continue
        raw = obj.get(label_column) if label_column is not None else None
        label = (
            math.nan if raw is None else parse_label(str(raw), path=path, line=number, column=label_column)
        )  # type: ignore[arg-type]
        rid = str(obj[id_column]) if id_column is not None and id_column in obj else f"{path.stem}:{number}"
        records.append(TextRecord(rid, text, label))
    _log_skipped(path, empty)
    return _nonempty(records, path)


def read_hf_dataset(
    path: str | Path, *, split: str = "train", text_column: str = "text", label_column: str | None = None
) -> list[TextRecord]:
    """A folder written by ``datasets``' ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``: ``split``)."""
    path = resolve_path(path, folder=True)
    if importlib.util.find_spec("datasets") is None:
        raise data_error(
            "reading a Hugging Face dataset folder needs the `datasets` package",
            path=path,
            fix="Run `pip install datasets`, or export the data to CSV/JSONL.",
        )
    import datasets

    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise data_error(
                f"no split {split!r}; the folder has {sorted(data)}",
                path=path,
                fix="Set hf_split to one of those.",
            )
        data = data[split]
    for col in (text_column, label_column):
        if col is not None and col not in data.column_names:
            raise data_error(
                f"missing column {col!r}; the dataset has {data.column_names}",
                path=path,
                fix="Set text_column / label_column to dataset columns.",
            )
    records, empty = [], 0
    labels = data[label_column] if label_column is not None else None
    for i, text in enumerate(data[text_column]):
        text = str(text or "").strip()
        if not text:
            empty += 1
            continue
        label = (
            math.nan
            if labels is None or labels[i] is None
            else parse_label(str(labels[i]), path=path, line=None, column=label_column)
        )  # type: ignore[arg-type]
        records.append(TextRecord(f"{path.name}:{i}", text, label))
    _log_skipped(path, empty)
    return _nonempty(records, path)


def read_vader(path: str | Path, *, min_abs_rating: float = 0.5) -> list[TextRecord]:
    """A VADER ``*_GroundTruth.txt`` file (``id<TAB>rating<TAB>text``, CRLF): label = sign of the rating
    (1.0 positive, 0.0 negative); sentences with ``|rating| < min_abs_rating`` are dropped (logged)."""
    path = resolve_path(path)
    records, empty, neutral = [], 0, 0
    for number, line in enumerate(_utf8_lines(path), start=1):
        if not line.strip():
            empty += 1
            continue
        fields = line.split("\t", 2)
        if len(fields) < 3:
            raise data_error(
                "expected id<TAB>rating<TAB>text",
                path=path,
                line=number,
                value=line,
                fix="Is this a VADER *_GroundTruth.txt file?",
            )
        rating = parse_label(fields[1], path=path, line=number, column="rating")
        if math.isnan(rating) or abs(rating) < min_abs_rating or not fields[2].strip():
            neutral += 1
            continue
        records.append(
            TextRecord(
                f"{path.stem.removesuffix('_GroundTruth')}:{fields[0]}",
                fields[2].strip(),
                1.0 if rating > 0 else 0.0,
            )
        )
    _log_skipped(path, empty)
    if neutral:
        log.info("%s: dropped %d sentence(s) with |rating| < %g", path, neutral, min_abs_rating)
    return _nonempty(records, path)


def read_records(
    path: str | Path,
    *,
    format: TextFormat = "auto",
    text_column: Column = "text",
    label_column: Column | None = None,
    id_column: Column | None = None,
    header: bool = True,
    hf_split: str = "train",
) -> list[TextRecord]:
    """Read ``path`` in ``format`` (``auto``: by suffix, a folder is a ``datasets`` folder)."""
    p = Path(path).expanduser()
    if format == "auto":
        if p.is_dir():
            format = "hf"
        elif p.suffix.lower() in _SUFFIX_FORMAT:
            format = _SUFFIX_FORMAT[p.suffix.lower()]  # type: ignore[assignment]
        else:
            raise data_error(
                f"cannot tell the format of {str(p)!r} from its suffix",
                path=None,
                fix="Set format to lines, csv, tsv, jsonl or hf.",
            )
    if format == "lines":
        return read_lines(p)
    if format in ("csv", "tsv"):
        return read_table(
            p,
            delimiter="," if format == "csv" else "\t",
            text_column=text_column,
            label_column=label_column,
            id_column=id_column,
            header=header,
        )
    if format == "jsonl":
        return read_jsonl(
            p,
            text_column=str(text_column),
            label_column=None if label_column is None else str(label_column),
            id_column=None if id_column is None else str(id_column),
        )
    if format == "hf":
        return read_hf_dataset(
            p,
            split=hf_split,
            text_column=str(text_column),
            label_column=None if label_column is None else str(label_column),
        )
    raise ValueError(f"unknown text format {format!r}; choose auto, lines, csv, tsv, jsonl or hf")
