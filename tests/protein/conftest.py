"""Shared fixtures for the protein plugin tests: small sequence files written into tmp_path.

The repository runs pytest with ``--import-mode=importlib``, so helpers are fixtures, not imports.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_PROTEIN = REPO.parent / "shared" / "data" / "protein"
CANONICAL = "ACDEFGHIKLMNPQRSTVWY"


def _random_sequences(n: int, lo: int = 5, hi: int = 20, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(CANONICAL) for _ in range(rng.randint(lo, hi))))
    return sorted(out)


@pytest.fixture(scope="session")
def random_sequences() -> Callable[..., list[str]]:
    """``random_sequences(n, lo=5, hi=20, seed=0)``: n distinct canonical sequences, sorted."""
    return _random_sequences


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def shared_protein() -> Path:
    """``../shared/data/protein``; the test is skipped when it is absent."""
    if not SHARED_PROTEIN.is_dir():
        pytest.skip(f"shared protein data not found at {SHARED_PROTEIN}")
    return SHARED_PROTEIN


@pytest.fixture
def modlamp() -> None:
    """Skip the test when the modlamp package (the AMP demo data) is not installed."""
    if importlib.util.find_spec("modlamp") is None:
        pytest.skip("modlamp is not installed (pip install --no-deps modlamp==4.3.3)")


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write(name, text) -> Path`` writes a fixture file into the test's tmp_path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


@pytest.fixture
def seq_csv(write) -> Path:
    """40 unique sequences of 5-20 residues with a numeric ``score`` (the length / 10)."""
    seqs = _random_sequences(40)
    return write("seqs.csv", "sequence,score\n" + "".join(f"{s},{len(s) / 10}\n" for s in seqs))
