"""Reading sentence files: every format, and every kind of bad input with its file, line and fix."""

from __future__ import annotations

import json
import logging
import math

import pytest
from diled_text import TextDataError
from diled_text.records import read_jsonl, read_lines, read_records, read_table, read_vader


def test_lines_skip_and_count_empty_lines_and_read_crlf(write, caplog):
    path = write("s.txt", b"first sentence\r\n\r\n  \r\nsecond one\r\n")
    with caplog.at_level(logging.WARNING):
        records = read_lines(path)
    assert [r.text for r in records] == ["first sentence", "second one"]
    assert [r.id for r in records] == ["s:1", "s:4"] and all(math.isnan(r.label) for r in records)
    assert "skipped 2 empty line(s)" in caplog.text  # visible at the default (warning) level


def test_csv_and_tsv_with_named_or_positional_columns(write):
    csv_path = write("s.csv", 'text,score\n"hello, world",1.5\nbye,\n')
    records = read_table(csv_path, label_column="score")
    assert [(r.text, r.label) for r in records[:1]] == [("hello, world", 1.5)] and math.isnan(
        records[1].label
    )
    tsv_path = write("s.tsv", "0.5\tgood day\n-1\tbad day\n")
    records = read_records(tsv_path, text_column=1, label_column=0, header=False)
    assert [(r.text, r.label) for r in records] == [("good day", 0.5), ("bad day", -1.0)]


def test_jsonl_and_auto_format(write):
    path = write("s.jsonl", "\n".join(json.dumps(o) for o in [{"t": "one", "y": 1}, {"t": "two", "y": None}]))
    records = read_records(path, text_column="t", label_column="y")
    assert (
        [r.text for r in records] == ["one", "two"]
        and records[0].label == 1.0
        and math.isnan(records[1].label)
    )
    with pytest.raises(TextDataError, match=r"s\.jsonl, line 1: no field 'text'"):
        read_jsonl(path)


def test_vader_labels_are_the_sign_and_weak_ratings_are_dropped(write):
    path = write("x_GroundTruth.txt", b"1\t2.5\tgreat stuff\r\n2\t-0.4\tmeh\r\n3\t-1.2\tawful\r\n")
    records = read_vader(path)
    assert [(r.id, r.text, r.label) for r in records] == [("x:1", "great stuff", 1.0), ("x:3", "awful", 0.0)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", r"empty\.txt: the file is empty"),
        ("blank.txt", b"\n  \n", r"blank\.txt: the file is empty"),
        (
            "latin.txt",
            b"fine line\ncaf\xe9 au lait\n",
            r"latin\.txt, line 2: bytes that are not UTF-8 at column 4",
        ),
        (
            "labels.csv",
            b"text,y\nok,1\nbad,high\n",
            r"labels\.csv, line 3: label column 'y' is not a number \(value: 'high'\)",
        ),
        ("cols.csv", b"sentence,y\nok,1\n", r"missing column 'text'; the header has \['sentence', 'y'\]"),
        ("short.csv", b"text,y\nok,1\nonly\n", r"short\.csv, line 3: row has 1 fields but column 1"),
        ("v_GroundTruth.txt", b"1\tnot-a-rating\ttext\n", r"line 1: label column 'rating' is not a number"),
        ("empty_cells.csv", b"text,y\n,1\n  ,2\n", r"no sentences were read"),
        ("odd.json", b"{oops\n", r"odd\.json, line 1: not a JSON object"),
    ],
)
def test_bad_input_names_the_file_line_and_fix(write, name, content, message):
    path = write(name, content)
    with pytest.raises(TextDataError, match=message) as err:
        if name.startswith("v_"):
            read_vader(path)
        else:
            read_records(path, label_column="y" if name.endswith(".csv") else None)
    assert str(err.value).count(".") >= 2  # what + how to fix, one paragraph
    assert "\n" not in str(err.value)


def test_missing_file_and_unknown_suffix(tmp_path, write):
    with pytest.raises(TextDataError, match="does not exist"):
        read_records(tmp_path / "nope.txt")
    with pytest.raises(TextDataError, match="Set format to lines, csv, tsv, jsonl or hf"):
        read_records(write("data.dat", "x\n"))


def test_hf_folder_without_datasets_says_how_to_install(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a)
    )
    with pytest.raises(TextDataError, match="pip install datasets"):
        read_records(tmp_path)  # a folder: the datasets format


def test_hf_folder_is_read_with_load_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets", reason="pip install datasets to test load_from_disk folders")
    datasets.Dataset.from_dict({"text": ["a b", "", "c d"], "label": [1, 0, None]}).save_to_disk(
        str(tmp_path / "d")
    )
    records = read_records(tmp_path / "d", label_column="label")
    assert (
        [r.text for r in records] == ["a b", "c d"]
        and records[0].label == 1.0
        and math.isnan(records[1].label)
    )
