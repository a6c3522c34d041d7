"""The `diled` command end to end on the toy modality: fit -> predict (every task), resume, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from diled_core import DiLED
from diled_core.cli import main
from diled_core.runs import own_log_dir

REPO = Path(__file__).resolve().parents[2]
TOY = str(REPO / "configs" / "toy" / "fit.yaml")
FAST = [
    "--trainer.enable_progress_bar",
    "false",
    "--data.init_args.n_train",
    "512",
    "--data.init_args.n_val",
    "128",
    "--data.init_args.n_test",
    "128",
    "--data.init_args.batch_size",
    "64",
]
DILED = shutil.which("diled", path=str(Path(sys.executable).parent)) or "diled"


def fit(root: Path, *extra: str) -> int:
    return main(["fit", "--config", TOY, "--trainer.default_root_dir", str(root), *FAST, *extra])


def last_ckpt(root: Path) -> Path:
    (path,) = root.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    return path


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    assert fit(root, "--trainer.max_steps", "24") == 0
    return last_ckpt(root)


@pytest.mark.parametrize(
    ("task", "name", "metric", "column"),
    [
        ("reconstruct", "reconstructions.csv", "mse", "output.x_7"),
        ("generate", "samples.csv", "mmd_to_data", "output.x_7"),
        ("encode", "embeddings.csv", None, "mu_3"),
        ("interpolate", "interpolations.csv", None, "alpha"),
        ("optimise", "optimised.csv", "improved_fraction", "mu_opt_3"),
    ],
)
def test_predict_every_task(toy_run: Path, tmp_path: Path, task: str, name: str, metric, column: str) -> None:
    config = toy_run.parents[1] / "config.yaml"
    out = tmp_path / "out"
    args = [
        "predict",
        "--config",
        str(config),
        "--ckpt_path",
        str(toy_run),
        "--prediction.task",
        task,
        "--prediction.output_dir",
        str(out),
        "--prediction.max_examples",
        "20",
        "--prediction.num_samples",
        "20",
        "--prediction.steps",
        "10",
        "--trainer.enable_progress_bar",
        "false",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(args) == 0
    unused = [w for w in caught if "Be aware that when using `ckpt_path`" in str(w.message)]
    assert not unused, "predict warned that the checkpoint's callback state is unused"
    header, *rows = (out / name).read_text().splitlines()
    assert column in header.split(",")
    metrics = json.loads((out / "metrics.json").read_text())[task]
    assert metric is None or metric in metrics
    assert metrics["options"]["task"] == task
    assert metrics["count"] == len(rows) == (80 if task == "interpolate" else 20)
    # interpolate: 10 pairs x 8 points, both endpoints included
    if task == "optimise":
        assert metrics["pred_after_mean"] > metrics["pred_before_mean"]
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


def test_resume_continues_step_count(tmp_path: Path) -> None:
    assert fit(tmp_path / "a", "--trainer.max_steps", "6") == 0
    first = last_ckpt(tmp_path / "a")
    assert torch.load(first, weights_only=True)["global_step"] == 6
    assert fit(tmp_path / "b", "--trainer.max_steps", "10", "--ckpt_path", str(first)) == 0
    resumed = torch.load(last_ckpt(tmp_path / "b"), weights_only=True)
    assert resumed["global_step"] == 10
    assert resumed["diled"]["modality"] == "toy"


def test_fit_says_where_the_checkpoint_is_and_the_command_it_prints_runs(
    tmp_path: Path, capsys, caplog
) -> None:
    """The closing lines of `diled fit` name last.ckpt and a `diled predict` command that works as
    printed; Lightning's own lines stay, its advert for a cloud logger and a torch deprecation inside
    Lightning do not."""
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("INFO"):
        warnings.simplefilter("always")
        assert fit(tmp_path / "run", "--trainer.max_steps", "2") == 0
    ckpt = last_ckpt(tmp_path / "run")
    lines = capsys.readouterr().out.splitlines()
    assert f"diled fit: checkpoint {ckpt}" in lines
    (command,) = [line.split("use it: diled ", 1)[1] for line in lines if "use it: diled predict" in line]
    assert f"--config {ckpt.parents[1] / 'config.yaml'} --ckpt_path {ckpt}" in command
    assert "`Trainer.fit` stopped: `max_steps=2` reached." in caplog.text
    assert "litlogger" not in caplog.text.lower()
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    out = tmp_path / "samples"
    assert main([*command.split(), *FAST, "--prediction.output_dir", str(out)]) == 0
    assert (out / "samples.csv").is_file()


def _drop_align(node):
    """The checkpoint's hyper-parameters as a run saved before SkipMLP had ``align``."""
    if isinstance(node, dict):
        node.pop("align", None)
        for value in node.values():
            _drop_align(value)
    elif isinstance(node, list):
        for value in node:
            _drop_align(value)


def test_a_run_saved_with_an_unpadded_denoiser_predicts_and_resumes(tmp_path: Path) -> None:
    """The toy's SkipMLP input is 256 + 4 = 260 columns: saved unpadded (before ``align``), its
    weights and Adam's moments gain the zero columns of the default alignment (272)."""
    assert fit(tmp_path / "a", "--trainer.max_steps", "4", "--model.denoiser.init_args.align", "1") == 0
    ckpt = last_ckpt(tmp_path / "a")
    saved = torch.load(ckpt, weights_only=False)
    assert saved["state_dict"]["denoiser.layers.1.linear.weight"].shape == (256, 260)
    _drop_align(saved["hyper_parameters"])
    torch.save(saved, ckpt)
    out = tmp_path / "pred"
    assert main(["predict", "--config", TOY, "--ckpt_path", str(ckpt), "--prediction.output_dir", str(out)]) == 0
    assert (out / "reconstructions.csv").stat().st_size > 0
    assert fit(tmp_path / "b", "--trainer.max_steps", "6", "--ckpt_path", str(ckpt)) == 0
    resumed = torch.load(last_ckpt(tmp_path / "b"), weights_only=False)
    assert resumed["global_step"] == 6
    weight = resumed["state_dict"]["denoiser.layers.1.linear.weight"]
    assert weight.shape == (256, 272) and torch.all(weight[:, 260:] == 0)
    moments = [s for s in resumed["optimizer_states"][0]["state"].values() if s["exp_avg"].shape == (256, 272)]
    assert moments and all(torch.all(s["exp_avg"][:, 260:] == 0) for s in moments)


def test_bf16_mixed_fit_and_predict(tmp_path: Path) -> None:
    assert fit(tmp_path, "--trainer.max_steps", "4", "--trainer.precision", "bf16-mixed") == 0
    out = tmp_path / "out"
    args = [
        "predict",
        "--config",
        TOY,
        "--ckpt_path",
        str(last_ckpt(tmp_path)),
        "--prediction.task",
        "generate",
        "--prediction.num_samples",
        "16",
        "--prediction.steps",
        "5",
        "--prediction.output_dir",
        str(out),
        "--trainer.precision",
        "bf16-mixed",
        *FAST,
    ]
    assert main(args) == 0
    assert len((out / "samples.csv").read_text().splitlines()) == 17


@pytest.mark.ddp
def test_ddp_two_processes_on_cpu(tmp_path: Path) -> None:
    """Fit two_stage with the strategy given as a class path (stage two leaves the encoder and decoder
    without gradients: unused parameters), then predict with `--trainer.strategy ddp`."""
    ddp = ["--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def run(*a: str) -> subprocess.CompletedProcess:
        return subprocess.run([DILED, *a], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    fitted = run(
        "fit", "--config", TOY, "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "6",
        *FAST,
        "--trainer.strategy", "{class_path: lightning.pytorch.strategies.DDPStrategy}",
        "--model.training", "two_stage", "--model.stage_one_steps", "2", *ddp,
    )
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    assert torch.load(last_ckpt(tmp_path), weights_only=True)["global_step"] == 6
    assert fitted.stdout.count("diled fit: checkpoint") == 1  # rank 0 says it, once
    ddp += ["--trainer.strategy", "ddp"]
    out = tmp_path / "out"
    predicted = run(
        "predict",
        "--config",
        TOY,
        "--ckpt_path",
        str(last_ckpt(tmp_path)),
        "--prediction.task",
        "generate",
        "--prediction.num_samples",
        "32",
        "--prediction.steps",
        "5",
        "--prediction.output_dir",
        str(out),
        *FAST,
        *ddp,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = [len((out / f).read_text().splitlines()) - 1 for f in ("samples.csv", "samples.rank1.csv")]
    assert rows == [16, 16]  # one file per rank, the samples split between them
    assert json.loads((out / "metrics.json").read_text())["generate"]["count"] == 32


def test_help_plugins_and_print_config_from_installed_command(tmp_path: Path, capsys) -> None:
    """The installed `diled` script once (each start costs seconds of imports), then in-process."""
    done = subprocess.run([DILED, "plugins"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "toy" in done.stdout
    out = {}
    for args in (["--help"], ["fit", "--config", TOY, "--print_config"]):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code in (0, None)
        out[args[0]] = capsys.readouterr().out
    assert "{fit,validate,test,predict}" in out["--help"]
    assert "`diled plugins` lists the installed modalities" in out["--help"]
    assert "ToyEncoder" in out["fit"] and "training: joint" in out["fit"]


# ---------------------------------------------------------------------------------- user errors
def _error(capsys, args: list[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_unknown_modality_says_what_to_install(capsys) -> None:
    code, err = _error(capsys, ["fit", "--config", TOY, "--data.class_path", "diled_nowhere.Data"])
    assert code == 2 and "the package providing the module 'diled_nowhere'" in err


def test_config_typo_names_the_key(tmp_path: Path, capsys) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        Path(TOY).read_text().replace("latent_dim: 4, hidden: 128}", "latent_dm: 4, hidden: 128}", 1)
    )
    code, err = _error(capsys, ["fit", "--config", str(typo)])
    assert code == 2 and "latent_dm" in err and "model.encoder" in err


def test_truncated_checkpoint(toy_run: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(toy_run.read_bytes()[: toy_run.stat().st_size // 2])
    code, err = _error(capsys, ["predict", "--config", TOY, "--ckpt_path", str(broken)])
    assert code == 1 and "truncated" in err and str(broken) in err


def test_checkpoint_of_another_modality(toy_run: Path, tmp_path: Path, capsys) -> None:
    ckpt = torch.load(toy_run, weights_only=True)
    ckpt["diled"]["modality"] = "protein"  # what a protein run writes
    other = tmp_path / "protein.ckpt"
    torch.save(ckpt, other)
    code, err = _error(capsys, ["predict", "--config", TOY, "--ckpt_path", str(other)])
    assert code == 1 and "'protein'" in err and "'toy'" in err


def test_divergence_stops_with_one_paragraph(tmp_path: Path, capsys, monkeypatch) -> None:
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.trainer.states import TrainerStatus

    broadcast, after_failure = SingleDeviceStrategy.broadcast, []

    def watched(self, obj, src=0):  # a collective under DDP: the failed rank may be alone (own_log_dir)
        trainer = getattr(self.lightning_module, "_trainer", None)
        if trainer is not None and trainer.state.status == TrainerStatus.INTERRUPTED:
            after_failure.append(obj)
        return broadcast(self, obj, src)

    monkeypatch.setattr(SingleDeviceStrategy, "broadcast", watched)
    code, err = _error(
        capsys,
        ["fit", "--config", TOY, "--trainer.default_root_dir", str(tmp_path), *FAST, "--trainer.max_steps", "200",
         "--checkpoint.every_n_train_steps", "1", "--model.optimizer.class_path", "torch.optim.SGD",
         "--model.optimizer.init_args.lr", "1e12"],
    )
    assert code == 1 and "diverged by step 1" in err and "no earlier checkpoint was written" in err
    assert "Lower the learning rate" in err
    assert not list(tmp_path.glob("lightning_logs/version_*")), "a run folder without checkpoints was left"
    assert after_failure == [], "the clean-up after the failure asked the other processes"


# ----------------------------------------------------------------- contract v2 through the CLI
DIFFUSION = str(REPO / "configs" / "toy" / "diffusion_decoder.yaml")


def test_diffusion_decoder_trains_and_decodes_with_its_own_sampler(tmp_path: Path) -> None:
    """w · L_latent + (2 − w) · L_decoder through the CLI; reconstruct decodes from the decoder's own
    DDIM-inverted noise (near-exact), unlike decoding the same latents from random noise."""
    root = tmp_path / "run"
    assert main(["fit", "--config", DIFFUSION, "--trainer.default_root_dir", str(root), *FAST,
                 "--trainer.max_steps", "30", "--model.timesteps", "500"]) == 0
    ckpt = last_ckpt(root)
    config = ckpt.parents[1] / "config.yaml"
    model = DiLED.load_from_checkpoint(ckpt, weights_only=True)
    assert model.decoder.latent_timesteps == 500 and model.w == 1.5  # linked from model.timesteps
    assert any(k.startswith("decoder_ema.") for k in torch.load(ckpt, weights_only=True)["state_dict"])
    mse = {}
    for name, decode in (("inverted", "{steps: 50}"), ("random", "{steps: 50, from_inverted: false}")):
        out = tmp_path / name
        assert main(["predict", "--config", str(config), "--ckpt_path", str(ckpt), "--prediction.task",
                     "reconstruct", "--prediction.output_dir", str(out), "--prediction.max_examples", "32",
                     "--prediction.decode", decode, "--trainer.enable_progress_bar", "false"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())["reconstruct"]
        mse[name] = metrics["mse"]
        assert metrics["options"]["decode"]["steps"] == 50 and "eps_mse_mean" in metrics
    assert mse["inverted"] < 0.1 * mse["random"], mse
    out = tmp_path / "gen"
    assert main(["predict", "--config", str(config), "--ckpt_path", str(ckpt), "--prediction.task", "generate",
                 "--prediction.num_samples", "16", "--prediction.output_dir", str(out),
                 "--prediction.decode", "{steps: 5}", "--trainer.enable_progress_bar", "false"]) == 0
    assert json.loads((out / "metrics.json").read_text())["generate"]["count"] == 16


def test_sizes_are_given_once_and_flow_from_data_and_encoder(tmp_path: Path, capsys) -> None:
    root = tmp_path / "run"
    assert fit(root, "--trainer.max_steps", "2", "--data.init_args.dim", "5",
               "--model.encoder.init_args.latent_dim", "3") == 0
    model = torch.load(last_ckpt(root), weights_only=True)["state_dict"]
    assert model["encoder.net.0.weight"].shape == (128, 5)  # data dim -> encoder
    assert model["decoder.net.0.weight"].shape == (128, 3)  # encoder latent_dim -> decoder
    assert model["decoder.net.4.weight"].shape == (5, 128)  # data dim -> decoder
    code, err = _error(capsys, ["fit", "--config", TOY, "--data.init_args.dim", "5",
                                "--model.encoder.init_args.dim", "6"])
    assert code == 1 and "model.encoder.init_args.dim is 6" in err and "dim=5" in err


def test_unknown_decoding_option_is_one_paragraph(toy_run: Path, tmp_path: Path, capsys) -> None:
    code, err = _error(capsys, ["predict", "--config", str(toy_run.parents[1] / "config.yaml"), "--ckpt_path",
                                str(toy_run), "--prediction.output_dir", str(tmp_path),
                                "--prediction.decode", "{temprature: 0.7}"])
    assert code == 1 and "temprature" in err


@pytest.mark.parametrize("logger", ["tensorboard", "csv", "none"])
def test_failed_fit_clean_up_names_the_run_folder_without_a_collective(tmp_path: Path, logger: str) -> None:
    """Trainer.log_dir is a broadcast: asked by rank 0 alone (the only rank that failed) it waits for ever
    under NCCL. The clean-up's own_log_dir names the same folder and asks no other process."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = {"tensorboard": TensorBoardLogger(tmp_path), "csv": CSVLogger(tmp_path), "none": False}
    trainer = Trainer(default_root_dir=tmp_path, logger=loggers[logger], enable_progress_bar=False)
    expected = trainer.log_dir

    def collective(*args: object, **kwargs: object) -> None:
        raise AssertionError("the clean-up called a collective")

    trainer.strategy.broadcast = collective
    assert own_log_dir(trainer) == expected
    if logger != "none":
        assert Path(expected).name == "version_0"


@pytest.mark.ddp
def test_ddp_spawn_trains(tmp_path: Path) -> None:
    """ddp_spawn pickles the module: the EMA must pickle (class-path strategies and two_stage's unused
    parameters: test_ddp_two_processes_on_cpu)."""
    args = ["fit", "--config", TOY, "--trainer.default_root_dir", str(tmp_path), *FAST, "--trainer.max_steps", "4",
            "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp_spawn",
            "--model.training", "joint"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([DILED, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert torch.load(last_ckpt(tmp_path), weights_only=True)["global_step"] == 4
