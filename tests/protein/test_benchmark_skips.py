"""Benchmarks on a machine without ``../shared/data`` (a fresh clone elsewhere): they say what is missing,
print the last recorded figures and exit 0, so that ``make bench`` goes on; they write no results."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "benchmarks"))


def test_generation_without_its_data_skips_with_the_recorded_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("diled_protein")
    import generation

    config = (REPO / "configs" / "protein" / "paper_gifford.yaml").read_text()
    absent = tmp_path / "absent.csv"
    config = config.replace("../shared/data/protein/gifford_train.csv", str(absent))
    assert str(absent) in config
    (tmp_path / "config.yaml").write_text(config)
    before = (RESULTS / "generation.json").read_bytes()
    monkeypatch.chdir(tmp_path)  # main() moves to the repository root; this puts the test's back after
    monkeypatch.setattr(sys, "argv", ["generation.py", "--quick", "--config", str(tmp_path / "config.yaml")])
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    try:
        generation.main()  # returns (exit status 0) where a failure would raise
    finally:
        lightning_log.setLevel(level)  # main() quiets Lightning for the rest of its process
    out = capsys.readouterr().out
    assert "generation: skipped" in out and str(absent) in out
    assert "the last recorded figures (" in out and "ddpm-999" in out
    assert (RESULTS / "generation.json").read_bytes() == before


def test_protein_authors_without_the_gifford_data_skips_with_the_recorded_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import protein_authors

    (tmp_path / "codes" / "nn").mkdir(parents=True)
    (tmp_path / "codes" / "nn" / "models.py").write_text("")
    monkeypatch.setenv("DILED_AUTHORS_CODE", str(tmp_path))
    monkeypatch.setattr(protein_authors, "GIFFORD", tmp_path / "absent.csv")
    monkeypatch.setattr(sys, "argv", ["protein_authors.py", "--quick"])
    before = (RESULTS / "protein_authors.json").read_bytes()
    protein_authors.main()
    out = capsys.readouterr().out
    assert f"{tmp_path / 'absent.csv'} is absent" in out
    assert "the last recorded figures (" in out and "diled_joint_over_authors_joint" in out
    assert (RESULTS / "protein_authors.json").read_bytes() == before
