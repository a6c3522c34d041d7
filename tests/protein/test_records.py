"""Reading CSV / FASTA files, and every bad-input case giving a ProteinDataError with file and line."""

from __future__ import annotations

import gzip
import math

import pytest
from diled_protein.errors import ProteinDataError
from diled_protein.records import read_csv, read_fasta


def test_csv_reads_sequences_properties_and_ids(write):
    path = write("a.csv", "name,sequence,y\np1,ACDE,1.5\np2,KLMN,\np3,WYV,NA\n")
    recs = read_csv(path, sequence_column="sequence", property_columns=["y"], id_column="name")
    assert [r.id for r in recs] == ["p1", "p2", "p3"]
    assert [r.sequence for r in recs] == ["ACDE", "KLMN", "WYV"]
    assert recs[0].properties == (1.5,)
    assert math.isnan(recs[1].properties[0]) and math.isnan(recs[2].properties[0])


def test_csv_without_header_by_position_and_default_ids(write):
    path = write("nohead.csv", "ACDE,0.1\nKLMN,0.2\n")
    recs = read_csv(path, sequence_column=0, property_columns=[1], header=False)
    assert [(r.id, r.sequence, r.properties) for r in recs] == [
        ("nohead:1", "ACDE", (0.1,)),
        ("nohead:2", "KLMN", (0.2,)),
    ]


def test_csv_skip_rows_and_strip_padding(write):
    path = write("g.csv", "3,1,x\nCDR3,enrichment\nJJACDEJJJ,1.0\nJKLMJ,2.0\n")
    recs = read_csv(path, sequence_column="CDR3", property_columns=["enrichment"], skip_rows=1, strip="J")
    assert [r.sequence for r in recs] == ["ACDE", "KLM"]
    assert recs[1].id == "g:4"  # physical line numbers, counting the skipped row


def test_blank_lines_are_skipped_with_a_warning(write, caplog):
    """A warning, so that it shows at Python's default log level (test_cli checks `diled fit` shows it)."""
    csv_path = write("b.csv", "sequence\nACDE\n\n   \nKLMN\n")
    fasta_path = write("b.fasta", ">s1\nACDE\n\n>s2\nKLMN\n")
    with caplog.at_level("WARNING", logger="diled_protein.records"):
        assert [r.sequence for r in read_csv(csv_path)] == ["ACDE", "KLMN"]
        assert [r.sequence for r in read_fasta(fasta_path)] == ["ACDE", "KLMN"]
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert f"{csv_path}: skipped 2 blank line(s) (line 3, 4)" in caplog.text
    assert f"{fasta_path}: skipped 1 blank line(s) (line 3)" in caplog.text


NOT_TEXT = [  # file name, bytes, where the error must point
    ("latin1.csv", "sequence,y\nACDE,1\nKLMN,2 é\n".encode("latin-1"), "line 3: byte 0xe9 at character 8"),
    ("crlf.csv", b"sequence,y\r\nACDE,1\r\nKL\xffMN,2\r\n", "line 3: byte 0xff at character 3"),
    ("mac.csv", b"sequence,y\rACDE,1\rKL\xffMN,2\r", "line 3: byte 0xff at character 3"),
    ("binary.csv", b"sequence,y\nACDE,1\nKL\x00MN,2\n", "line 3: binary data: a NUL byte at character 3"),
    ("utf16.csv", "sequence,y\nACDE,1\n".encode("utf-16"), "line 1: byte 0xff at character 1"),
    ("gzip.csv", gzip.compress(b"sequence,y\nACDE,1\n", mtime=0), "line 1: byte 0x8b at character 2"),
    ("latin1.fasta", b">s1\nACDE\n>s2 note=\xe9\nKLMN\n", "line 3: byte 0xe9 at character 10"),
    ("binary.fasta", b">s1\nAC\x00DE\n", "line 2: binary data: a NUL byte at character 3"),
]


@pytest.mark.parametrize("name, data, expected", NOT_TEXT, ids=[name for name, _, _ in NOT_TEXT])
def test_bytes_that_are_not_text_name_the_file_and_line(tmp_path, name, data, expected):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ProteinDataError) as err:
        read_fasta(path) if name.endswith(".fasta") else read_csv(path, property_columns=["y"])
    message = str(err.value)
    assert f"{path}, {expected}" in message
    assert "must be UTF-8" in message and "iconv -f latin1 -t utf-8" in message  # how to fix
    assert "\n" not in message and "codec" not in message


def test_a_byte_order_mark_is_not_an_error(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffsequence\nACDE\n".encode())
    assert [r.sequence for r in read_csv(path)] == ["ACDE"]


def test_a_string_of_digits_is_a_position_unless_the_header_has_that_name(write):
    """`--data.init_args.sequence_column 0` reaches the reader as the string "0"."""
    nohead = write("nohead.csv", "ACDE,0.1\nKLMN,0.2\n")
    recs = read_csv(nohead, sequence_column="0", property_columns=["1"], header=False)
    assert [(r.sequence, r.properties) for r in recs] == [("ACDE", (0.1,)), ("KLMN", (0.2,))]
    named = write("named.csv", "id,0\np1,ACDE\n")  # a header named "0": the name wins (column 1)
    assert [r.sequence for r in read_csv(named, sequence_column="0")] == ["ACDE"]
    assert [r.sequence for r in read_csv(named, sequence_column="1")] == ["ACDE"]  # "1" is not a name


def test_nonstandard_residues_xbzuo_are_kept(write):
    recs = read_csv(write("x.csv", "sequence\nACXBZUO\n"))
    assert recs[0].sequence == "ACXBZUO"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "empty"),
        ("sequence,y\n", "no sequences"),
        ("seq,y\nACDE,1\n", "missing column 'sequence'"),
        ("sequence,y\nACDE,1\nAcDE,2\n", "line 3: character 'c' at position 2"),
        ("sequence,y\nAC1E,1\n", "character '1'"),
        ("sequence,y\nACDE*,1\n", "character '*'"),
        ("sequence,y\nACJDE,1\n", "character 'J'"),
        ("sequence,y\n,1\n", "line 2: empty sequence"),
        ("sequence,y\nACDE,abc\n", "line 2: property 'y' is not a number (value: 'abc')"),
        ("sequence,y\nACDE,inf\n", "infinite"),
        ("sequence,y\nACDE\n", "line 2: row has 1 fields"),
        ("sequence,y\nACDEFGHIKLM,1\n", "line 2: sequence of 11 residues is longer than max_length=10"),
    ],
)
def test_bad_csv_raises_with_file_and_line(write, text, expected):
    path = write("bad.csv", text)
    with pytest.raises(ProteinDataError) as err:
        read_csv(path, property_columns=["y"], max_length=10)
    message = str(err.value)
    assert expected in message
    assert str(path) in message


def test_lowercase_error_says_how_to_fix(write):
    with pytest.raises(ProteinDataError, match="upper case"):
        read_csv(write("l.csv", "sequence\nacde\n"))


def test_missing_file_error_names_path_and_cwd(tmp_path):
    with pytest.raises(ProteinDataError, match="does not exist.*relative paths are read from"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(ProteinDataError, match="is a directory"):
        read_fasta(tmp_path)


def test_named_column_without_header_is_an_error(write):
    with pytest.raises(ProteinDataError, match="read without a header"):
        read_csv(write("n.csv", "ACDE,1\n"), sequence_column="sequence", header=False)


def test_too_long_skip_and_truncate(write, caplog):
    path = write("long.csv", "sequence\nACDEFGHIKL\nACD\n")
    with caplog.at_level("WARNING", logger="diled_protein.records"):
        assert [r.sequence for r in read_csv(path, max_length=5, too_long="skip")] == ["ACD"]
    assert "skipped 1 sequence(s) longer than max_length=5" in caplog.text
    assert [r.sequence for r in read_csv(path, max_length=5, too_long="truncate")] == ["ACDEF", "ACD"]
    with pytest.raises(ProteinDataError, match="no sequences were read"):
        read_csv(write("all.csv", "sequence\nACDEFGHIKL\n"), max_length=5, too_long="skip")


def test_fasta_multiline_properties_and_unlabelled(write):
    path = write("a.fasta", ">s1 fitness=0.5 note=x\nACDE\nFGH\n\n>s2\nKLMN\n>s3 fitness=NA\nWY\n")
    recs = read_fasta(path, property_keys=["fitness"])
    assert [(r.id, r.sequence) for r in recs] == [("s1", "ACDEFGH"), ("s2", "KLMN"), ("s3", "WY")]
    assert recs[0].properties == (0.5,)
    assert math.isnan(recs[1].properties[0]) and math.isnan(recs[2].properties[0])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "no sequences"),
        ("ACDE\n>s1\nACDE\n", "line 1: sequence line before the first '>' header"),
        (">s1\nACDE\n>s2\n>s3\nKL\n", "line 3: empty sequence"),
        (">s1\nAC-DE\n", "line 1: character '-'"),
        (">s1 fitness=high\nACDE\n", "line 1: property 'fitness' is not a number (value: 'high')"),
        (">\nACDE\n", "FASTA header without an id"),
    ],
)
def test_bad_fasta_raises_with_file_and_line(write, text, expected):
    path = write("bad.fasta", text)
    with pytest.raises(ProteinDataError) as err:
        read_fasta(path, property_keys=["fitness"])
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_error_is_a_value_error():
    assert issubclass(ProteinDataError, ValueError)
