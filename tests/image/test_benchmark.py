"""benchmarks/image_fashion_mnist.py end to end as a smoke run: three arms of a few seconds on the shared
Fashion-MNIST files, real Inception features on 8 images per side, the table, the JSON and the grids."""

from __future__ import annotations

import json
import math
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_fashion_mnist_benchmark_runs_end_to_end(tmp_path, fashion_mnist, inception_weights):
    out = tmp_path / "results" / "image_fashion_mnist.json"
    args = ["--minutes", "0.1", "--fid-images", "8", "--steps", "2", "--root", str(tmp_path / "runs")]
    args += ["--fit-args", "--model.latent_draws 2 --model.ema_warmup true"]
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "image_fashion_mnist.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FID-8: every FID uses N = 8 images per side" in done.stdout
    results = json.loads(out.read_text())
    head, *rows = results["table"]
    assert head[:2] == ["arm", "steps"] and "gen FID-8" in head
    assert [r[0] for r in rows] == ["joint", "two_stage", "autoencoder", "held-out real test vs train"]
    for arm in ("joint", "two_stage"):
        r = results["arms"][arm]
        assert r["steps"] >= 1 and math.isfinite(r["generation_fid"]) and r["generation_fid"] > 0
    assert results["arms"]["autoencoder"]["generation_fid"] is None  # nothing to sample from
    assert results["arms"]["two_stage"]["stage_one_steps"] is not None
    for arm in ("joint", "two_stage", "autoencoder"):  # --fit-args reached every arm's model
        hparams = torch.load(results["arms"][arm]["checkpoint"], weights_only=True)["hyper_parameters"]
        assert hparams["latent_draws"] == 2 and hparams["ema_warmup"] is True
    assert results["machine"]["cpu_count"] >= 1 and results["machine"]["load_avg_1min_end"] >= 0
    grids = sorted(p.name for p in out.with_suffix("").glob("*.png"))
    assert "joint_reconstructions.png" in grids and "joint_interpolations.png" in grids, grids


@pytest.mark.slow
def test_the_benchmark_decodes_on_one_machine_and_scores_on_another(
    tmp_path, fashion_mnist, inception_weights
):
    """``--save-images`` trains and decodes without Inception (a GPU machine without its weights);
    ``--score-images`` scores those images later and records where they were trained and decoded."""
    bench, decoded, out = (
        REPO / "benchmarks" / "image_fashion_mnist.py",
        tmp_path / "decoded",
        tmp_path / "r.json",
    )
    args = ["--arms", "joint", "--minutes", "0.05", "--fid-images", "8", "--steps", "2"]
    args += ["--root", str(tmp_path / "runs"), "--fit-args", "--model.latent_draws 2", "--out", str(out)]
    run = [sys.executable, str(bench)]
    done = subprocess.run(
        [*run, *args, "--save-images", str(decoded)], capture_output=True, text=True, timeout=3000
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not out.exists() and "FID" not in done.stdout  # nothing scored on this side
    record = torch.load(decoded / "decoded_joint.pt", weights_only=False)
    images = record["images"]
    assert images["recon_inverted"].shape == (8, 1, 28, 28)
    assert images["interpolations"].shape == (8, 2, 1, 28, 28)  # N pairs × α = 0.2, 0.4
    assert record["row"]["steps"] >= 1 and record["decode_device"] == "cpu"

    done = subprocess.run(
        [*run, "--score-images", str(decoded), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [r[0] for r in results["table"][1:]] == ["joint", "held-out real test vs train"]
    assert results["minutes"] == 0.05 and results["args"]["fit_args"] == "--model.latent_draws 2"
    assert results["arms"]["joint"]["steps"] == record["row"]["steps"]
    assert math.isfinite(results["arms"]["joint"]["generation_fid"])
    assert results["trained_and_decoded_on"]["cpu_count"] >= 1

    empty = subprocess.run(
        [*run, "--score-images", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert empty.returncode != 0 and "no decoded_<arm>.pt" in empty.stderr and "Traceback" not in empty.stderr


@pytest.mark.slow
def test_a_finished_run_is_scored_again_under_the_other_interpolation(
    tmp_path, fashion_mnist, inception_weights
):
    """``--from-results`` decodes and scores the checkpoints an earlier run trained, without training;
    the interpolation columns name the path each run took, so the two never share a column."""
    bench = REPO / "benchmarks" / "image_fashion_mnist.py"
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    args = ["--arms", "joint", "--minutes", "0.05", "--fid-images", "8", "--steps", "2"]
    args += ["--root", str(tmp_path / "runs"), "--interpolation", "slerp", "--out", str(first)]
    done = subprocess.run([sys.executable, str(bench), *args], capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stderr[-3000:]
    again = ["--from-results", str(first), "--fid-images", "8", "--steps", "2", "--out", str(second)]
    done = subprocess.run([sys.executable, str(bench), *again], capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "× 0.0 min" in done.stdout  # nothing trained
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert "slerp interp FID-8 0.2" in a["table"][0] and "lerp interp FID-8 0.2" in b["table"][0]
    assert a["arms"]["joint"]["interpolation_mode"] == "slerp"
    assert b["arms"]["joint"]["interpolation_mode"] == "lerp"
    assert b["arms"]["joint"]["checkpoint"] == a["arms"]["joint"]["checkpoint"]
    assert b["arms"]["joint"]["steps"] == a["arms"]["joint"]["steps"] and b["trained_by"] == str(first)
    assert b["minutes"] == 0.05 and len(list((tmp_path / "runs" / "joint" / "lightning_logs").iterdir())) == 1


def test_from_results_refuses_a_file_that_is_not_a_run_or_whose_checkpoints_are_gone(tmp_path, monkeypatch):
    """The script runs in this process (a subprocess would spend its time importing torch): SystemExit
    with a message is what Python prints as that message alone, with exit status 1."""
    bench = REPO / "benchmarks" / "image_fashion_mnist.py"
    broken, gone = tmp_path / "broken.json", tmp_path / "gone.json"
    broken.write_text('{"args": {"minutes": 20}, "arm')  # a run cut off while writing
    gone.write_text(json.dumps({"args": {}, "arms": {"joint": {"checkpoint": str(tmp_path / "x.ckpt")}}}))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ first
    for path, says in ((broken, "not this benchmark's results JSON"), (gone, "checkpoint(s) gone: joint")):
        out = tmp_path / "out.json"
        monkeypatch.setattr(sys, "argv", [str(bench), "--from-results", str(path), "--out", str(out)])
        with pytest.raises(SystemExit) as stopped:
            runpy.run_path(str(bench), run_name="__main__")
        assert isinstance(stopped.value.code, str) and says in stopped.value.code, stopped.value.code
        assert not out.exists()
