"""Streaming writers and metrics of `diled predict` (diled_core.predict), without Lightning."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diled_core import (
    ArrayWriter,
    MeanOf,
    PredictOptions,
    RatioOf,
    Reservoir,
    TableWriter,
    TextWriter,
    rank_file,
)


def test_rank_file_names() -> None:
    assert rank_file("out", "samples.fasta", 0) == Path("out/samples.fasta")
    assert rank_file("out", "embeddings_xT.npy", 3) == Path("out/embeddings_xT.rank3.npy")


def test_table_writer_streams_rows_columns_and_arrays(tmp_path: Path) -> None:
    writer = TableWriter(tmp_path, "samples", rank=1)
    batches = [
        {"index": torch.arange(3), "output": {"x": torch.randn(3, 2), "img": torch.randn(3, 1, 2, 2)},
         "id": ["a", "b", "c"]},
        {"index": torch.arange(3, 5), "output": {"x": torch.randn(2, 2), "img": torch.randn(2, 1, 2, 2)},
         "id": ["d", "e"]},
    ]
    for b in batches:
        writer.write(b)
    assert not (tmp_path / "samples.rank1.csv").exists(), "visible before close"
    files = writer.close()
    assert sorted(f.name for f in files) == ["samples.rank1.csv", "samples.rank1.output.img.npy"]
    rows = list(csv.reader((tmp_path / "samples.rank1.csv").open()))
    assert rows[0] == ["index", "output.x_0", "output.x_1", "id"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2", "3", "4"] and rows[-1][-1] == "e"
    assert float(rows[2][1]) == pytest.approx(batches[0]["output"]["x"][1, 0].item(), rel=1e-5)
    img = np.load(tmp_path / "samples.rank1.output.img.npy")
    np.testing.assert_allclose(img, torch.cat([b["output"]["img"] for b in batches]).numpy(), rtol=1e-6)
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_table_writer_rejects_a_change_of_width_and_abort_leaves_nothing(tmp_path: Path) -> None:
    writer = TableWriter(tmp_path, "samples", rank=0)
    writer.write({"x": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="own writer"):
        writer.write({"x": torch.zeros(2, 4)})
    writer.abort()
    assert not list(tmp_path.iterdir())


def test_array_writer_header_counts_every_row(tmp_path: Path) -> None:
    writer = ArrayWriter(tmp_path / "a.npy")
    parts = [torch.randn(n, 4) for n in (5, 1, 7)]
    for p in parts:
        writer.write(p)
    writer.close()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), torch.cat(parts).numpy())
    with pytest.raises(ValueError, match="own writer"):
        other = ArrayWriter(tmp_path / "b.npy")
        other.write(torch.zeros(2, 4))
        other.write(torch.zeros(2, 5))


def test_text_writer_writes_each_batch(tmp_path: Path) -> None:
    writer = TextWriter(tmp_path / "s.txt", lambda o: "".join(f"{s}\n" for s in o["text"]))
    writer.write({"text": ["a", "b"]})
    writer.write({"text": ["c"]})
    writer.close()
    assert (tmp_path / "s.txt").read_text() == "a\nb\nc\n"


def test_mean_and_ratio_equal_the_all_at_once_values_and_merge_across_ranks() -> None:
    values = torch.tensor([1.0, math.nan, 3.0, 4.0, 10.0])
    num, den = torch.tensor([1.0, 2.0, 3.0, 0.0]), torch.tensor([2.0, 2.0, 4.0, 1.0])
    mean = MeanOf({"v": lambda o: o["v"]})
    ratio = RatioOf({"r": lambda o: (o["n"], o["d"])})
    other_rank_mean, other_rank_ratio = MeanOf({"v": lambda o: o["v"]}), RatioOf({"r": lambda o: (o["n"], o["d"])})
    mean.update({"v": values[:2]})
    other_rank_mean.update({"v": values[2:]})
    ratio.update({"n": num[:1], "d": den[:1]})
    other_rank_ratio.update({"n": num[1:], "d": den[1:]})
    mean.merge_state(other_rank_mean)  # what the DDP reduction does
    ratio.merge_state(other_rank_ratio)
    assert mean.compute() == {"v": pytest.approx(18 / 4), "v_nan_rows": 1.0}  # NaN rows: counted apart
    assert ratio.compute()["r"] == pytest.approx(6 / 9)


def test_mean_without_nan_rows_has_no_nan_count() -> None:
    mean = MeanOf({"v": lambda o: o["v"]})
    mean.update({"v": torch.tensor([1.0, 2.0])})
    assert mean.compute() == {"v": pytest.approx(1.5)}


def test_reservoir_keeps_a_bounded_sample() -> None:
    seen = []
    res = Reservoir(lambda o: o["x"], lambda rows: seen.append(rows) or {"n": float(len(rows))}, capacity=5)
    for start in range(0, 20, 3):
        res.update({"x": torch.arange(start, start + 3)})
    assert res.compute() == {"n": 5.0}
    torch.testing.assert_close(seen[0], torch.arange(5))
    res.reset()
    res.update({"x": torch.arange(2)})
    assert res.compute() == {"n": 2.0}


def test_unset_interpolation_options_take_the_modality_defaults_and_set_ones_are_kept() -> None:
    """``diled predict`` leaves interpolation_mode / _points unset (None); a datamodule's
    ``prediction_defaults`` fill them (images: lerp, 6 points), else slerp and 8."""
    core = PredictOptions().resolve({})
    assert (core.interpolation_mode, core.interpolation_points) == ("slerp", 8)
    image = {"interpolation_mode": "lerp", "interpolation_points": 6}
    got = PredictOptions(task="interpolate", steps=7).resolve(image)
    assert (got.interpolation_mode, got.interpolation_points) == ("lerp", 6)
    assert (got.task, got.steps) == ("interpolate", 7)  # the other options are kept
    mine = PredictOptions(interpolation_mode="slerp", interpolation_points=3).resolve(image)
    assert (mine.interpolation_mode, mine.interpolation_points) == ("slerp", 3)
    assert mine.resolve(image) == mine  # resolving twice changes nothing
    with pytest.raises(ValueError, match="may set interpolation_points, interpolation_mode, not steps"):
        PredictOptions().resolve({"steps": 20})
