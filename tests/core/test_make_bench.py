"""`make bench` runs every speed benchmark and no tool: each script it runs needs no arguments."""

from __future__ import annotations

import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench_scripts() -> list[str]:
    plan = subprocess.run(
        ["make", "-n", "bench", "BENCH_ARGS="], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    (scripts,) = re.findall(r"for s in ([^;]*);", plan)
    return scripts.split()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_bench_runs_the_speed_benchmarks_and_each_needs_no_arguments(monkeypatch, capsys) -> None:
    """Each script's ``--help`` runs in this process (a subprocess per script would spend its time
    importing torch)."""
    scripts = bench_scripts()
    assert "benchmarks/training_cost.py" in scripts and "benchmarks/protein_authors.py" in scripts
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put benchmarks/ first
    for script in scripts:
        monkeypatch.setattr(sys, "argv", [script, "--help"])
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(REPO / script), run_name="__main__")
        assert done.value.code == 0, f"{script} --help: {capsys.readouterr().err}"
        usage = capsys.readouterr().out.split("\n\n")[0]
        required = re.sub(r"\[[^\[\]]*(\[[^\[\]]*\][^\[\]]*)*\]", "", usage.split(":", 1)[1]).split()[1:]
        assert not required, f"{script} requires {required}: make bench would fail on it"
