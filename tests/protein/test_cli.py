"""The ``diled`` command on the protein configs: fit, then every predict task, and user errors."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diled_core.cli import DiledCLI, main
from diled_core.predict import num_rows
from diled_protein import CSVDataModule
from diled_protein.metrics import correlations, generation_metrics, identity, is_valid

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "protein"
DILED = shutil.which("diled", path=str(Path(sys.executable).parent)) or "diled"
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


def read_fasta(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    return [(lines[i][1:], lines[i + 1]) for i in range(0, len(lines), 2)]


def fixture_train(config: Path) -> list[str]:
    """The training split the fixture config's data module makes (novelty is measured against it)."""
    dm = CSVDataModule(**yaml.safe_load(config.read_text())["data"]["init_args"])
    dm.setup()
    return dm.train_sequences()


def check_reconstruct(out: Path, m: dict, config: Path) -> int:
    recs = read_fasta(out / "reconstructions.fasta")
    pairs = [(a, b) for (_, a), (_, b) in zip(recs[::2], recs[1::2])]
    nll = [float(h.rsplit("nll=", 1)[1]) for h, _ in recs[1::2]]
    # token accuracy from the sequences: residues + <eos> of the input, matched position by position
    hits = sum(sum(x == y for x, y in zip(a, b)) + (len(a) == len(b)) for a, b in pairs)
    assert m["token_accuracy"] == pytest.approx(hits / sum(len(a) + 1 for a, _ in pairs))
    assert m["exact_match"] == pytest.approx(sum(a == b for a, b in pairs) / len(pairs))
    assert m["identity_mean"] == pytest.approx(sum(identity(a, b) for a, b in pairs) / len(pairs))
    assert m["nll_mean"] == pytest.approx(sum(nll) / len(nll), rel=1e-3)  # headers keep 4 digits
    assert m["perplexity"] == pytest.approx(math.exp(m["nll_mean"])) and m["perplexity"] > 1.0
    return len(pairs)


def check_generate(out: Path, m: dict, config: Path) -> int:
    recs = read_fasta(out / "samples.fasta")
    assert sorted(h.split()[0] for h, _ in recs) == sorted(f"sample{i}" for i in range(12))  # unique names
    want = generation_metrics([s for _, s in recs], fixture_train(config))
    assert {k: m[k] for k in want} == pytest.approx(want)  # streamed == all at once (12 < capacity)
    assert m["diversity_samples"] == 12
    return len(recs)


def check_encode(out: Path, m: dict, config: Path) -> int:
    with (out / "embeddings.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    mu, x_t = np.load(out / "embeddings.npy"), np.load(out / "embeddings_xT.npy")
    assert mu.shape == x_t.shape == (len(rows), 8)
    np.testing.assert_allclose(mu[:, 0], [float(r["mu_0"]) for r in rows], rtol=1e-6)
    pred, y = (torch.tensor([float(r[k]) for r in rows]) for k in ("prediction", "property"))
    assert {k: m[k] for k in ("spearman", "pearson")} == pytest.approx(correlations(pred, y), abs=1e-5)
    return len(rows)


def check_interpolate(out: Path, m: dict, config: Path) -> int:
    recs = read_fasta(out / "interpolations.fasta")
    path = [s for h, s in recs if " alpha=" in h]
    pairs = {h.split()[0] for h, _ in recs}
    assert len(pairs) == 5 and len(recs) == len(path) + 2 * len(pairs)  # 10 examples, 3 points each
    assert m["validity"] == pytest.approx(sum(map(is_valid, path)) / len(path))
    return len(path)


def check_optimise(out: Path, m: dict, config: Path) -> int:
    recs = read_fasta(out / "optimised.fasta")
    inputs, optimised = [s for _, s in recs[0::3]], [s for _, s in recs[2::3]]
    identities = [identity(a, b) for a, b in zip(inputs, optimised)]
    assert m["identity_to_input_mean"] == pytest.approx(sum(identities) / len(identities))
    # gradient ascent on the regressor raises its prediction for every example
    assert m["pred_after_mean"] > m["pred_before_mean"] and m["improved_fraction"] == 1.0
    return len(inputs)


CHECKS = {
    "reconstruct": check_reconstruct,
    "generate": check_generate,
    "encode": check_encode,
    "interpolate": check_interpolate,
    "optimise": check_optimise,
}


def count_batches(monkeypatch) -> list[int]:
    """Rows of each batch the protein writers receive."""
    rows: list[int] = []
    make = CSVDataModule.prediction_writers

    def counted(self, task, out_dir, rank):
        writers = make(self, task, out_dir, rank)
        write = writers[0].write
        writers[0].write = lambda outputs: (rows.append(num_rows(outputs)), write(outputs))
        return writers

    monkeypatch.setattr(CSVDataModule, "prediction_writers", counted)
    return rows


@pytest.mark.parametrize("task", list(TASKS))
def test_fit_then_every_predict_task(trained, task, monkeypatch):
    """Several batches (10 examples or 12 samples, batch size 4) stream into one file set: its rows are
    the ``count`` of metrics.json, and the metrics agree with what the files hold."""
    tmp, config, ckpt = trained
    batches = count_batches(monkeypatch)
    out = tmp / f"pred_{task}"
    args = [
        "predict",
        "--config",
        str(config),
        "--ckpt_path",
        str(ckpt),
        "--trainer.default_root_dir",
        str(tmp / "run"),
        "--data.init_args.batch_size",
        "4",
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
        "reconstruct": ["token_accuracy", "exact_match", "identity_mean", "perplexity", "nll_mean"],
        "generate": [
            "validity",
            "uniqueness",
            "novelty",
            "novelty_median_min_edit_distance",
            "novelty_median_min_edit_distance_samples",
            "diversity",
            "diversity_samples",
            "length_mean",
            "length_std",
            "data_length_mean",
            "data_length_std",
            "composition_distance",
        ],
        "encode": ["spearman", "pearson"],
        "interpolate": ["validity"],
        "optimise": ["pred_before_mean", "pred_after_mean", "identity_to_input_mean", "validity"],
    }[task]
    assert set(expected) <= set(metrics), metrics
    rows = CHECKS[task](out, metrics, config)
    assert metrics["count"] == rows == sum(batches) == {"generate": 12, "interpolate": 15}.get(task, 10)
    assert len(batches) == 3


@pytest.mark.ddp
def test_ddp_predict_writes_one_file_set_per_rank_and_reduces_the_metrics(trained):
    """Two processes (gloo on CPU): each rank streams its share into its own files; metrics.json holds
    the metrics of all rows (sum and cat states reduced across ranks)."""
    tmp, config, ckpt = trained
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    for task in ("generate", "encode"):
        done = subprocess.run(
            [DILED, "predict", "--config", str(config), "--ckpt_path", str(ckpt), *ddp]
            + ["--data.init_args.batch_size", "4", "--prediction.task", task, "--prediction.steps", "5"]
            + ["--prediction.num_samples", "20", "--prediction.output_dir", str(tmp / "ddp")],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp / "ddp" / "metrics.json").read_text())
    recs = [r for name in ("samples.fasta", "samples.rank1.fasta") for r in read_fasta(tmp / "ddp" / name)]
    names = [h.split()[0] for h, _ in recs]
    assert sorted(n.removeprefix("rank1_") for n in names) == sorted(f"sample{i}" for i in range(20))
    want = generation_metrics([s for _, s in recs], fixture_train(config))
    assert {k: metrics["generate"][k] for k in want} == pytest.approx(want)
    assert metrics["generate"]["count"] == metrics["generate"]["diversity_samples"] == 20
    rows = []
    for name in ("embeddings.csv", "embeddings.rank1.csv"):
        with (tmp / "ddp" / name).open() as fh:
            rows += list(csv.DictReader(fh))
    assert metrics["encode"]["count"] == len(rows) == len({r["id"] for r in rows})  # the test split, once
    pred, y = (torch.tensor([float(r[k]) for r in rows]) for k in ("prediction", "property"))
    got = {k: metrics["encode"][k] for k in ("spearman", "pearson")}
    assert got == pytest.approx(correlations(pred, y), abs=1e-5)


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


def test_a_column_position_given_on_the_command_line_is_a_position(tmp_path, random_sequences):
    """`--data.init_args.sequence_column 0` arrives as the string "0": on a file without a header (or
    without a column named "0") it is the position 0."""
    config = fixture_config(tmp_path, random_sequences)
    seqs = random_sequences(60, lo=8, hi=40, seed=2)
    data = tmp_path / "nohead.csv"
    data.write_text("".join(f"{s},{len(s)}\n" for s in seqs))
    args = ["fit", "--config", str(config), "--data.init_args.path", str(data)]
    args += ["--data.init_args.header", "false", "--data.init_args.sequence_column", "0"]
    args += ["--data.init_args.property_columns", "[1]", "--trainer.max_steps", "1"]
    assert main(args + ["--trainer.default_root_dir", str(tmp_path / "run")]) == 0
    assert list((tmp_path / "run").glob("lightning_logs/version_*/checkpoints/last.ckpt"))


def test_skipped_blank_lines_are_shown_by_diled_fit_at_the_default_log_level(tmp_path, random_sequences):
    """The real command in a fresh process (pytest's own log handlers would hide the question)."""
    config = fixture_config(tmp_path, random_sequences)
    data = tmp_path / "peptides.csv"
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:3] + ["\n"] + lines[3:]))  # line 4 is blank
    done = subprocess.run(
        [
            DILED,
            "fit",
            "--config",
            str(config),
            "--trainer.max_steps",
            "1",
            "--trainer.limit_val_batches",
            "0",
        ]
        + ["--trainer.default_root_dir", str(tmp_path / "run")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{data}: skipped 1 blank line(s) (line 4)" in done.stderr


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
    err = capsys.readouterr().err  # the data's max_length flows into the decoder: a conflict is an error
    assert code == 1 and "Traceback" not in err
    assert "model.decoder.init_args.max_length is 40 but the data" in err and "has max_length=50" in err


def test_max_length_is_taken_from_the_data(tmp_path, random_sequences):
    config = fixture_config(tmp_path, random_sequences)
    cfg = yaml.safe_load(config.read_text())
    del cfg["model"]["decoder"]["init_args"]["max_length"]
    cfg["model"]["encoder"]["init_args"].update(pooling="flatten")
    cfg["data"]["init_args"]["max_length"] = 42
    config.write_text(yaml.safe_dump(cfg))
    cli = DiledCLI(args=["--config", str(config)], run=False)
    assert cli.model.decoder.max_length == cli.model.encoder.max_length == 42
    cli.datamodule.check_compatible(cli.model.encoder, cli.model.decoder)


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
    """The paper-size configs (meant for a GPU) run as written, validation included: two optimizer steps
    on the CPU, at batch 16 instead of 128 (the model keeps its size)."""
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
    args += ["--data.init_args.num_workers", "0", "--data.init_args.batch_size", "16"]
    args += ["--trainer.enable_progress_bar", "false"]
    assert main(["fit", *args, "--trainer.default_root_dir", str(tmp_path)]) == 0
    (ckpt,) = tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 2


def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path, modlamp, capsys, monkeypatch):
    """`make demo`'s script: fit demo.yaml (3 steps here), every predict task, the summary table with the
    held-out real data's value next to each generation metric."""
    from diled_protein.demo import cli as demo

    monkeypatch.chdir(REPO)
    code = demo(
        ["--root", str(tmp_path), "--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "held-out reconstruction token accuracy" in out
    assert "held-out real: the same metrics on 256 real test-split peptides" in out
    rows = {line[:50].strip(): line[50:].split() for line in out.splitlines() if line.startswith("  ")}
    generated = [label for label in rows if label.startswith("generated: ")]
    assert len(generated) == 8 and "generated: amino-acid composition vs training" in generated
    assert all(len(rows[label]) == 2 for label in generated)  # generated value, held-out real value
    assert rows["generated: novel (not in training set)"][1] == "1.000"  # the test split is disjoint
    assert 0.0 < float(rows["generated: amino-acid composition vs training"][1]) < 0.1
    assert len(rows["held-out reconstruction token accuracy"]) == 1
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
