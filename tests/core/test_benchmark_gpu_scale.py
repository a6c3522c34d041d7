"""``benchmarks/gpu_scale.py``: batch tiling for the batch search, and the run without a GPU (CI's case)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_scale  # noqa: E402


def test_to_device_tiles_every_tensor_and_per_example_list_along_the_batch() -> None:
    batch = {"ids": torch.arange(6).view(3, 2), "label": torch.tensor([0, 1, 1]), "text": ["a", "b", "c"]}
    tiled = gpu_scale.to_device(batch, torch.device("cpu"), repeat=4)
    assert tiled["ids"].shape == (12, 2) and torch.equal(tiled["ids"][3:6], batch["ids"])
    assert tiled["label"].tolist() == [0, 1, 1] * 4
    assert tiled["text"] == ["a", "b", "c"] * 4
    assert gpu_scale.batch_size(tiled) == 12
    assert gpu_scale.shapes((tiled["ids"], {"m": tiled["label"]})) == [[12, 2], {"m": [12]}]


def test_longest_picks_the_batch_with_the_most_elements() -> None:
    class Bucketed:
        def setup(self, stage: str) -> None:
            pass

        def train_dataloader(self):
            return [{"ids": torch.zeros(4, n)} for n in (5, 9, 3)]

    assert gpu_scale.longest(Bucketed(), n=3)["ids"].shape == (4, 9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would measure")
def test_without_a_gpu_it_measures_nothing_and_shows_the_recorded_figures() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_scale.py")], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no CUDA GPU here: nothing measured.")
    assert "last recorded (" in proc.stdout and "paper_gifford" in proc.stdout
