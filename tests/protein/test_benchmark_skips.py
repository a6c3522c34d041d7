"""Benchmarks on a machine without ``../shared/data`` (a fresh clone elsewhere): they say what is missing,
print the last recorded figures and exit 0, so that ``make bench`` goes on; they write no results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "benchmarks"))


def test_generation_without_its_data_skips_with_the_recorded_figures(tmp_path: Path) -> None:
    pytest.importorskip("diled_protein")
    config = (REPO / "configs" / "protein" / "paper_gifford.yaml").read_text()
    absent = tmp_path / "absent.csv"
    config = config.replace("../shared/data/protein/gifford_train.csv", str(absent))
    assert str(absent) in config
    (tmp_path / "config.yaml").write_text(config)
    before = (RESULTS / "generation.json").read_bytes()
    proc = subprocess.run(
        [sys.executable, "benchmarks/generation.py", "--quick", "--config", str(tmp_path / "config.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "generation: skipped" in proc.stdout and str(absent) in proc.stdout
    assert "the last recorded figures (" in proc.stdout and "ddpm-999" in proc.stdout
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
