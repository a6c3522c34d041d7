"""`make bench` runs every speed benchmark and no tool: each script it runs needs no arguments."""

from __future__ import annotations

import re
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
def test_make_bench_runs_the_speed_benchmarks_and_each_needs_no_arguments() -> None:
    scripts = bench_scripts()
    assert "benchmarks/training_cost.py" in scripts and "benchmarks/protein_authors.py" in scripts
    for script in scripts:
        usage = subprocess.run(
            [sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split("\n\n")[0]
        required = re.sub(r"\[[^\[\]]*(\[[^\[\]]*\][^\[\]]*)*\]", "", usage.split(":", 1)[1]).split()[1:]
        assert not required, f"{script} requires {required}: make bench would fail on it"
