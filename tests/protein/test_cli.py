"""The ``diled`` command on the protein configs: fit, then every predict task, and user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from diled_core.cli import DiledCLI, main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "protein"
TASKS = {
    "reconstruct": ["reconstructions.fasta"],
    "generate": ["samples.fasta"],
    "encode": ["embeddings.csv", "embeddings.npy", "embeddings_xT.npy", "latent_pca.png"],
    "interpolate": ["interpolations.fasta"],
    "optimise": ["optimised.fasta"],
}


def fixture_config(tmp: Path, random_sequences) -> Path:
    """cpu_test.yaml with its data replaced by a small CSV (runs without modlamp)."""
    seqs = random_sequences(120, lo=8, hi=40, seed=1)
    data = tmp / "peptides.csv"
    data.write_text(
        "sequence,charge\n" + "".join(f"{s},{s.count('K') + s.count('R') - s.count('D')}\n" for s in seqs)
    )
    cfg = yaml.safe_load((CONFIGS / "cpu_test.yaml").read_text())
    cfg["data"] = {
        "class_path": "diled_protein.CSVDataModule",
        "init_args": {"path": str(data), "property_columns": ["charge"], "max_length": 50, "batch_size": 16},
    }
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, random_sequences):
    tmp = tmp_path_factory.mktemp("protein_cli")
    config = fixture_config(tmp, random_sequences)
    assert main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp / "run")]) == 0
    (ckpt,) = (tmp / "run").glob("**/checkpoints/last.ckpt")
    return tmp, config, ckpt


@pytest.mark.parametrize("task", list(TASKS))
def test_fit_then_every_predict_task(trained, task):
    tmp, config, ckpt = trained
    out = tmp / f"pred_{task}"
    args = [
        "predict",
        "--config",
        str(config),
        "--ckpt_path",
        str(ckpt),
        "--trainer.default_root_dir",
        str(tmp / "run"),
        "--prediction.task",
        task,
        "--prediction.output_dir",
        str(out),
        "--prediction.max_examples",
        "10",
        "--prediction.num_samples",
        "12",
        "--prediction.steps",
        "5",
        "--prediction.interpolation_points",
        "3",
        "--prediction.optimise_steps",
        "20",
    ]
    if task == "encode":
        args += ["--prediction.invert", "true"]
    assert main(args) == 0
    for name in TASKS[task]:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())[task]
    expected = {
        "reconstruct": ["token_accuracy", "exact_match", "perplexity"],
        "generate": [
            "validity",
            "uniqueness",
            "novelty",
            "novelty_median_min_edit_distance",
            "diversity",
            "length_mean",
            "data_length_mean",
        ],
        "encode": ["spearman", "pearson"],
        "interpolate": ["validity"],
        "optimise": ["pred_before_mean", "pred_after_mean", "identity_to_input_mean"],
    }[task]
    assert set(expected) <= set(metrics), metrics
    if task == "reconstruct":
        assert 0.0 <= metrics["token_accuracy"] <= 1.0 and metrics["perplexity"] > 1.0
    if task == "generate":
        assert metrics["count"] == 12 and len((out / "samples.fasta").read_text().splitlines()) == 24
    if task == "optimise":  # gradient ascent on the regressor raises its prediction for every example
        assert metrics["pred_after_mean"] > metrics["pred_before_mean"]
        assert metrics["improved_fraction"] == 1.0


def test_bad_data_is_reported_without_a_traceback(tmp_path, capsys, random_sequences):
    config = fixture_config(tmp_path, random_sequences)
    bad = tmp_path / "peptides.csv"
    bad.write_text("sequence,charge\nACDE,1\nAC*DE,2\n")
    code = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert "peptides.csv, line 3: character '*' at position 3" in err and "Traceback" not in err
    code = main(["fit", "--config", str(config), "--data.init_args.path", str(tmp_path / "nope.csv")])
    assert code == 1 and "nope.csv' does not exist" in capsys.readouterr().err


def test_decoder_length_mismatch_is_reported(tmp_path, capsys, random_sequences):
    config = fixture_config(tmp_path, random_sequences)
    code = main(
        [
            "fit",
            "--config",
            str(config),
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
            "--model.decoder.init_args.max_length",
            "40",
        ]
    )
    assert code == 1 and "set model.decoder.init_args.max_length to 50" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_build_against_the_real_signatures(name):
    cli = DiledCLI(
        args=["--config", str(CONFIGS / f"{name}.yaml"), "--trainer.accelerator", "cpu"], run=False
    )
    cli.datamodule.check_compatible(cli.model.encoder, cli.model.decoder)
    assert cli.model.encoder.latent_dim == cli.model.decoder.latent_dim
    if name in ("gifford", "gfp"):  # paper hyper-parameters
        assert cli.datamodule.batch_size == 128 and cli.model.encoder.latent_dim == 30
        assert cli.model.optimizer_factory(cli.model.parameters()).defaults["lr"] == 2e-5


def test_cpu_test_config_fits_on_the_amp_data(tmp_path, modlamp):
    assert (
        main(["fit", "--config", str(CONFIGS / "cpu_test.yaml"), "--trainer.default_root_dir", str(tmp_path)])
        == 0
    )
    assert list(tmp_path.glob("**/checkpoints/last.ckpt"))


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["gifford", "gfp"])
def test_paper_config_data_paths_resolve_from_the_repo_root(name, monkeypatch, shared_protein):
    monkeypatch.chdir(REPO)
    cli = DiledCLI(
        args=["--config", str(CONFIGS / f"{name}.yaml"), "--trainer.accelerator", "cpu"], run=False
    )
    cli.datamodule.setup("fit")
    assert len(cli.datamodule.dataset("train")) > 10000


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["gifford", "gfp"])
def test_paper_configs_train_at_paper_size(name, tmp_path, monkeypatch, shared_protein):
    """The paper-size configs (meant for a GPU) run as written: two optimizer steps on the CPU."""
    monkeypatch.chdir(REPO)
    fast = [
        "--trainer.max_steps",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.num_sanity_val_steps",
        "0",
    ]
    args = ["--config", str(CONFIGS / f"{name}.yaml"), "--trainer.accelerator", "cpu", *fast]
    args += ["--data.init_args.num_workers", "0", "--trainer.enable_progress_bar", "false"]
    assert main(["fit", *args, "--trainer.default_root_dir", str(tmp_path)]) == 0
    (ckpt,) = tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 2


def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path, modlamp, capsys, monkeypatch):
    """`make demo`'s script: fit demo.yaml (3 steps here), every predict task, the summary table."""
    from diled_protein.demo import cli as demo

    monkeypatch.chdir(REPO)
    code = demo(
        ["--root", str(tmp_path), "--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out reconstruction token accuracy" in out and "generated: valid" in out
    predictions = next(tmp_path.glob("lightning_logs/version_*/predictions"))
    for name in (
        "reconstructions.fasta",
        "samples.fasta",
        "latent_pca.png",
        "interpolations.fasta",
        "optimised.fasta",
    ):
        assert (predictions / name).stat().st_size > 0, name
    assert set(json.loads((predictions / "metrics.json").read_text())) == set(TASKS)
