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


@pytest.mark.slow
def test_perplexities_scored_on_another_machine_equal_those_of_one_run(tmp_path, tiny_reference_lm):
    """``--reference-lm null --save-predictions`` (a GPU machine without the reference LM's weights),
    then ``--score-ppl``: the same perplexities as one run that had the reference LM."""
    data = tmp_path / "vader"
    data.mkdir()
    rows = "".join(f"{i}\t{1.5 if r.label else -1.5}\t{r.text}\n" for i, r in enumerate(tiny_corpus(120)))
    (data / "tiny_GroundTruth.txt").write_text(rows)
    saved = tmp_path / "saved"
    run = [sys.executable, str(REPO / "benchmarks" / "text_vader.py"), "--data", str(data)]
    common = ["--arms", "joint", "--tasks", "generate", "transfer", "--max-steps", "2", "--samples", "8"]
    common += ["--examples", "8", "--root", str(tmp_path / "runs")]

    def bench(*args: str) -> dict:
        done = subprocess.run([*run, *args], capture_output=True, text=True, timeout=3000)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(Path(args[args.index("--out") + 1]).read_text())

    split = bench(
        *common, "--reference-lm", "null", "--save-predictions", str(saved), "--out", str(tmp_path / "a.json")
    )
    assert "reconstruct" not in split["arms"]["joint"]["metrics"]
    assert not any("ppl" in k for k in split["arms"]["joint"]["metrics"]["generate"])
    scored = bench(
        "--score-ppl", str(saved), "--reference-lm", tiny_reference_lm, "--out", str(tmp_path / "b.json")
    )
    direct = bench(*common, "--reference-lm", tiny_reference_lm, "--out", str(tmp_path / "c.json"))
    for task in ("generate", "transfer"):
        got, want = scored["arms"]["joint"]["metrics"][task], direct["arms"]["joint"]["metrics"][task]
        keys = [k for k in want if "ppl" in k]
        assert len(keys) == (4 if task == "generate" else 2)  # ppl and tokens (and the real ones)
        assert {k: got[k] for k in keys} == pytest.approx({k: want[k] for k in keys}, rel=1e-9)
    assert scored["ppl_scored_on"]["cpu_count"] >= 1

    empty = subprocess.run([*run, "--score-ppl", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert empty.returncode != 0 and "no results.json" in empty.stderr and "Traceback" not in empty.stderr
