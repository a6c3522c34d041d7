"""benchmarks/text_vader.py end to end as a smoke run: three arms of 2 steps on a tiny VADER-format
folder, every predict task, the table and the JSON with the machine and the steps of each arm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from diled_text import tiny_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_vader_benchmark_runs_end_to_end(tmp_path, tiny_reference_lm):
    data = tmp_path / "vader"
    data.mkdir()
    rows = "".join(f"{i}\t{1.5 if r.label else -1.5}\t{r.text}\n" for i, r in enumerate(tiny_corpus(120)))
    (data / "tiny_GroundTruth.txt").write_text(rows)
    out = tmp_path / "text_vader.json"
    args = ["--max-steps", "2", "--samples", "8", "--examples", "8", "--data", str(data)]
    args += ["--reference-lm", tiny_reference_lm, "--root", str(tmp_path / "runs"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "text_vader.py"), *args],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sentiment transfer accuracy" in done.stdout and "held-out real" in done.stdout
    results = json.loads(out.read_text())
    arms = results["arms"]
    assert list(arms) == ["joint", "two_stage", "autoencoder"]
    assert [a["steps"] for a in arms.values()] == [2, 2, 2] and arms["two_stage"]["stage_one_steps"] == 1
    assert "generate" not in arms["autoencoder"]["metrics"]
    generate = arms["joint"]["metrics"]["generate"]
    assert generate["count"] == 8 and generate["mauve_minilm_samples"] == 8
    assert generate["real_ref_ppl_tiny_ref_lm"] > 1 and 0 < generate["real_mauve_minilm"] <= 1
    for arm in arms.values():
        assert 0 <= arm["metrics"]["reconstruct"]["bleu"] <= 100
        assert 0 <= arm["metrics"]["transfer"]["transfer_accuracy_minilm_logreg"] <= 1
    machine = results["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch"] and machine["cpu_model"]
    assert machine["load_avg_1min_start"] >= 0 and machine["load_avg_1min_end"] >= 0
