"""Reading protein sequence files (CSV and FASTA) into validated records.

Every problem with the user's file is reported as a :class:`~diled_protein.errors.ProteinDataError`
naming the file, the line and the offending value; that includes bytes that are not UTF-8 text and
binary data (NUL bytes). Documented skips (not errors), logged as warnings, so that they are shown at
Python's default log level:

* blank lines (CSV and FASTA);
* sequences longer than ``max_length`` when ``too_long="skip"`` (``"truncate"`` cuts them instead).

Empty property cells and ``nan`` / ``NA`` / ``N/A`` / ``None`` keep the example, unlabelled.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence, TextIO

from diled_core import parse_number

from .errors import ProteinDataError, data_error
from .vocab import RESIDUES, first_invalid_residue

__all__ = ["Column", "ProteinRecord", "TooLong", "check_sequence", "read_csv", "read_fasta", "resolve_path"]

log = logging.getLogger(__name__)

#: a CSV column, by header name or by 0-based position; a string of digits that is not a header name is
#: a position too (``--data.init_args.sequence_column 0`` on the command line arrives as ``"0"``)
Column = str | int
#: what to do with a sequence longer than ``max_length``: raise, drop it (logged), or cut it
TooLong = Literal["error", "skip", "truncate"]


@dataclass(frozen=True)
class ProteinRecord:
    """One example: its id, residues and property values (``nan`` where unlabelled)."""

    id: str
    sequence: str
    properties: tuple[float, ...] = ()


def resolve_path(path: str | Path, what: str = "data file") -> Path:
    """``path`` as a :class:`Path`, or an error naming it and the working directory it was read from."""
    p = Path(path).expanduser()
    if not p.is_file():
        kind = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise data_error(
            f"the {what} {str(p)!r} {kind} (relative paths are read from {Path.cwd()})",
            fix="Pass the path of an existing CSV or FASTA file, e.g. `--data.init_args.path=...`.",
        )
    return p


def check_sequence(
    seq: str, path: str | Path | None, line: int | None, max_length: int, too_long: TooLong
) -> str | None:
    """The validated (maybe truncated) sequence, or ``None`` if it is to be skipped; errors name
    ``path`` (a file, or e.g. ``"record 3"``) and ``line``."""
    if not seq:
        raise data_error(
            "empty sequence", path=path, line=line, fix="Remove the line or fill in the sequence."
        )
    bad = first_invalid_residue(seq)
    if bad is not None:
        ch = seq[bad]
        hint = (
            "convert the sequence to upper case"
            if ch.upper() in RESIDUES
            else (
                "remove stop codons ('*') and gaps ('-', '.')"
                if ch in "*-."
                else "remove or replace the character"
            )
        )
        raise data_error(
            f"character {ch!r} at position {bad + 1} of the sequence is not an amino acid",
            path=path,
            line=line,
            value=seq,
            fix=f"Allowed residues are {RESIDUES} (20 canonical plus X, B, Z, U, O); {hint}.",
        )
    if len(seq) > max_length:
        if too_long == "error":
            raise data_error(
                f"sequence of {len(seq)} residues is longer than max_length={max_length}",
                path=path,
                line=line,
                value=seq,
                fix="Raise max_length, or set too_long to 'skip' (drop such sequences) or 'truncate'.",
            )
        return None if too_long == "skip" else seq[:max_length]
    return seq


def _parse_float(text: str, path: Path, line: int, name: str) -> float:
    return parse_number(text, what=f"property {name!r}", path=path, line=line, cls=ProteinDataError)


def _column_index(col: Column, header: list[str] | None, path: Path) -> int:
    if isinstance(col, int):
        return col
    if col.isdecimal() and (header is None or col not in header):
        return int(col)
    if header is None:
        raise data_error(
            f"column {col!r} is named but the file is read without a header",
            path=path,
            fix="Name columns by 0-based position (e.g. 0) or set header: true.",
        )
    if col not in header:
        fasta = header[:1] and header[0].startswith(">")
        raise data_error(
            f"missing column {col!r}; the header has {header}",
            path=path,
            line=None,
            fix="This looks like a FASTA file; use diled_protein.FastaDataModule."
            if fasta
            else "Set sequence_column / property_columns to names from the header.",
        )
    return header.index(col)


def read_csv(
    path: str | Path,
    *,
    sequence_column: Column = "sequence",
    property_columns: Sequence[Column] = (),
    id_column: Column | None = None,
    header: bool = True,
    skip_rows: int = 0,
    strip: str = "",
    max_length: int = 1000,
    too_long: TooLong = "error",
) -> list[ProteinRecord]:
    """Read a CSV of sequences (one per row) and optional numeric property columns.

    Args:
        sequence_column / property_columns / id_column: header names or 0-based positions.
        header: whether the first row (after ``skip_rows``) names the columns.
        skip_rows: lines to ignore at the top (e.g. modlAMP's count line).
        strip: characters removed from both ends of each sequence (``"J"`` for the gifford padding).
        max_length / too_long: see :data:`TooLong`.
    Returns:
        one :class:`ProteinRecord` per kept row; ids are the ``id_column`` or ``<file stem>:<line>``.
    """
    path = resolve_path(path)
    records: list[ProteinRecord] = []
    blank: list[int] = []  # line numbers
    skipped = 0
    with _open_text(path) as fh:
        lines = _text_lines(fh, path)
        for _ in range(skip_rows):
            next(lines, None)
        reader = csv.reader(lines)
        names: list[str] | None = None
        if header:
            names = next((row for row in reader if any(c.strip() for c in row)), None)
            if names is None:
                raise data_error(
                    "the file is empty (no header row)",
                    path=path,
                    fix="Point the data module at a CSV with a header and one sequence per row.",
                )
            names = [n.strip() for n in names]
        seq_i = _column_index(sequence_column, names, path)
        prop_i = [_column_index(c, names, path) for c in property_columns]
        id_i = None if id_column is None else _column_index(id_column, names, path)
        needed = max([seq_i, *prop_i, -1 if id_i is None else id_i]) + 1
        for row in reader:
            line = reader.line_num + skip_rows
            if not any(cell.strip() for cell in row):
                blank.append(line)
                continue
            if len(row) < needed:
                raise data_error(
                    f"row has {len(row)} fields but column {needed - 1} (0-based) is needed",
                    path=path,
                    line=line,
                    value=",".join(row),
                    fix="Check the delimiter (must be ',') and the column settings.",
                )
            seq = check_sequence(row[seq_i].strip().strip(strip), path, line, max_length, too_long)
            if seq is None:
                skipped += 1
                continue
            props = tuple(_parse_float(row[i], path, line, str(c)) for i, c in zip(prop_i, property_columns))
            rid = row[id_i].strip() if id_i is not None else f"{path.stem}:{line}"
            records.append(ProteinRecord(rid, seq, props))
    _log_skips(path, blank, skipped, max_length)
    if not records:
        raise data_error(
            "no sequences were read (the file has no data rows, or all were skipped)",
            path=path,
            fix="Check the file, skip_rows/header, and max_length/too_long.",
        )
    return records


def _parse_header(
    text: str, property_keys: Sequence[str], path: Path, line: int
) -> tuple[str, tuple[float, ...]]:
    """``>id key=value ...`` -> ``(id, properties)``; a key absent from the header is unlabelled."""
    fields = text[1:].split()
    if not fields:
        raise data_error(
            "FASTA header without an id",
            path=path,
            line=line,
            value=text,
            fix="Write headers as '>id' or '>id key=value'.",
        )
    pairs = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    props = tuple(_parse_float(pairs.get(k, ""), path, line, k) for k in property_keys)
    return fields[0], props


def read_fasta(
    path: str | Path,
    *,
    property_keys: Sequence[str] = (),
    max_length: int = 1000,
    too_long: TooLong = "error",
) -> list[ProteinRecord]:
    """Read a FASTA file; sequences may span lines; properties come from ``key=value`` in the header.

    Example header: ``>seq1 fitness=0.53``. With ``property_keys=["fitness"]`` that record's property is
    0.53; a header without the key gives an unlabelled example.
    """
    path = resolve_path(path)
    records: list[ProteinRecord] = []
    blank: list[int] = []  # line numbers
    skipped = 0
    head: tuple[str, tuple[float, ...], int] | None = None
    chunks: list[str] = []

    def flush() -> None:
        nonlocal skipped
        if head is None:
            return
        rid, props, hline = head
        seq = check_sequence("".join(chunks), path, hline, max_length, too_long)
        if seq is None:
            skipped += 1
        else:
            records.append(ProteinRecord(rid, seq, props))

    with _open_text(path) as fh:
        for line, raw in enumerate(_text_lines(fh, path), start=1):
            text = raw.strip()
            if not text:
                blank.append(line)
            elif text.startswith(">"):
                flush()
                rid, props = _parse_header(text, property_keys, path, line)
                head, chunks = (rid, props, line), []
            elif head is None:
                raise data_error(
                    "sequence line before the first '>' header",
                    path=path,
                    line=line,
                    value=text,
                    fix="FASTA records start with a '>id' line; is this a CSV file?",
                )
            else:
                chunks.append(text)
        flush()
    _log_skips(path, blank, skipped, max_length)
    if not records:
        raise data_error(
            "no sequences were read (the file is empty or every record was skipped)",
            path=path,
            fix="Check the file and max_length/too_long.",
        )
    return records


#: characters no text file holds: NUL (binary data, UTF-16 text) and the stand-ins of undecodable bytes
#: (``errors="surrogateescape"`` turns byte ``0xNN`` that is not UTF-8 into ``chr(0xDC00 + 0xNN)``)
_NOT_TEXT = re.compile("[\x00\udc80-\udcff]")
_FIX_ENCODING = (
    "Sequence files must be UTF-8 (or ASCII) text. If this is a compressed file (.gz, .zip) or a "
    "spreadsheet (.xlsx), decompress it or export it as CSV; if it is text in another encoding, convert it, "
    "e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8` (or `-f utf-16`)."
)


def _open_text(path: Path) -> TextIO:
    """``path`` opened for :func:`_text_lines`: UTF-8 (a leading byte-order mark dropped), bytes that are
    not UTF-8 kept as stand-ins, line endings left as they are (which :mod:`csv` needs)."""
    return path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")


def _text_lines(fh: TextIO, path: Path) -> Iterator[str]:
    """The lines of ``fh`` (from :func:`_open_text`); a :class:`ProteinDataError` naming the file, the line
    and the position of the first byte that is not UTF-8 text or of the first NUL byte (binary data)."""
    for line, text in enumerate(fh, start=1):
        bad = _NOT_TEXT.search(text)
        if bad is None:
            yield text
            continue
        at = bad.start()
        what = (
            f"binary data: a NUL byte at character {at + 1}"
            if bad.group() == "\x00"
            else f"byte 0x{ord(bad.group()) - 0xDC00:02x} at character {at + 1} is not UTF-8 text"
        )
        raise data_error(
            what,
            path=path,
            line=line,
            value=text[:at] + "\ufffd",
            fix=_FIX_ENCODING,
        )


def _log_skips(path: Path, blank: list[int], skipped: int, max_length: int) -> None:
    if blank:
        shown = ", ".join(map(str, blank[:5])) + (", ..." if len(blank) > 5 else "")
        log.warning("%s: skipped %d blank line(s) (line %s)", path, len(blank), shown)
    if skipped:
        log.warning(
            "%s: skipped %d sequence(s) longer than max_length=%d (too_long='skip')",
            path,
            skipped,
            max_length,
        )
