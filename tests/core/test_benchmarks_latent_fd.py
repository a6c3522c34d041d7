"""``benchmarks/latent_fd.py``: the Fréchet distance between a run's generated latents and its held-out
latents, on toy runs (the script reads the run's own config and checkpoint)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from diled_core.cli import main as diled

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from latent_fd import main  # noqa: E402

TOY = str(REPO / "configs" / "toy" / "fit.yaml")
SMALL = ["--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
         "--data.init_args.n_train", "1024", "--data.init_args.n_val", "64", "--data.init_args.n_test", "300",
         "--data.init_args.batch_size", "64"]


def toy_run(root: Path, steps: int, *extra: str) -> Path:
    assert diled(["fit", "--config", TOY, "--trainer.default_root_dir", str(root), *SMALL,
                  "--trainer.max_steps", str(steps), *extra]) == 0
    (run,) = root.glob("lightning_logs/version_*")
    return run


def test_latent_fd_falls_as_the_latent_diffusion_learns(tmp_path: Path, capsys) -> None:
    early, late = toy_run(tmp_path / "early", 2), toy_run(tmp_path / "late", 150)
    out = tmp_path / "fd.json"
    main([str(early), str(late / "checkpoints" / "last.ckpt"), "--n", "300", "--out", str(out)])
    assert "latent FD (n = 300)" in capsys.readouterr().out
    rows = json.loads(out.read_text())["runs"]
    assert [r["step"] for r in rows] == [2, 150] and all(r["n"] == 300 for r in rows)
    assert rows[1]["latent_fd"] < 0.5 * rows[0]["latent_fd"], rows
    assert all(0 <= r["floor"] < r["latent_fd"] for r in rows), rows


def test_an_autoencoder_has_no_latent_fd_and_a_wrong_path_is_one_line(tmp_path: Path, capsys) -> None:
    run = toy_run(tmp_path, 2, "--model.training", "autoencoder")
    out = tmp_path / "fd.json"
    main([str(run), "--n", "10", "--out", str(out)])
    assert json.loads(out.read_text())["runs"][0]["note"] == "no latent diffusion"
    with pytest.raises(SystemExit, match="nowhere/checkpoints/last.ckpt not found; give a run folder"):
        main([str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="fewer than --n 5000"):
        main([str(toy_run(tmp_path / "joint", 2)), "--n", "5000"])
