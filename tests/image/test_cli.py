"""The ``diled`` command on the image configs: a tiny fit (with TensorBoard sample grids), then every
predict task writing PNGs and metrics (FID through a tiny stand-in network), and every shipped config
built against the real signatures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diled_core.cli import DiledCLI, main
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "image"
CPU_TEST = str(CONFIGS / "cpu_test.yaml")
FILES = {
    "reconstruct": ["reconstructions.png", "reconstructions/test0.png", "reconstructions/test7.png"],
    "generate": ["samples.png", "samples/000000.png", "samples/000005.png"],
    "encode": ["embeddings.csv", "embeddings.npy"],
    "interpolate": [
        "interpolations.png",
        "interpolations/pair00000_alpha0.200.png",
        "interpolations/pair00003_alpha1.000.png",
    ],
}
METRICS = {
    "reconstruct": {"count": 8, "rfid_images": 6, "fid_reference_images": 6},
    "generate": {"count": 6, "fid_images": 6, "fid_reference_images": 6},
    "encode": {"count": 8},
    "interpolate": {
        "count": 24,
        "interp_fid_a0.2_images": 4,
        "interp_fid_a0.4_images": 4,
        "fid_reference_images": 6,
    },
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("image_cli")
    assert main(["fit", "--config", CPU_TEST, "--trainer.default_root_dir", str(tmp / "run")]) == 0
    (ckpt,) = (tmp / "run").glob("**/checkpoints/last.ckpt")
    return tmp, ckpt


def test_fit_logs_sample_grids_to_tensorboard(trained):
    tmp, ckpt = trained
    (events,) = ckpt.parents[1].glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0})
    acc.Reload()
    assert {"samples/reconstructions", "samples/reconstructions_from_noise", "samples/generated"} <= set(
        acc.Tags()["images"]
    )
    assert {"latent_val/std_mean", "latent_val/std_min", "latent_val/norm_mean"} <= set(acc.Tags()["scalars"])
    assert acc.Scalars("latent_val/std_mean")[-1].value > 0
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["diled"]["modality"] == "image"


def test_an_autoencoder_run_logs_reconstructions_but_no_samples(tmp_path):
    """``training: autoencoder`` has no latent diffusion: the sample logger must not try to sample."""
    args = ["fit", "--config", CPU_TEST, "--trainer.default_root_dir", str(tmp_path), "--model.training"]
    assert main([*args, "autoencoder", "--trainer.max_steps", "3"]) == 0
    (events,) = tmp_path.glob("**/events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0})
    acc.Reload()
    assert "samples/reconstructions" in acc.Tags()["images"]
    assert "samples/generated" not in acc.Tags()["images"]


@pytest.mark.parametrize("task", list(FILES))
def test_every_predict_task_writes_pngs_and_metrics(trained, task, tiny_fid_weights):
    tmp, ckpt = trained
    out = tmp / f"pred_{task}"
    args = [
        "predict",
        "--config",
        CPU_TEST,
        "--ckpt_path",
        str(ckpt),
        "--prediction.task",
        task,
        "--prediction.output_dir",
        str(out),
        "--data.init_args.batch_size",
        "4",
        "--data.init_args.fid_images",
        "6",
        "--data.init_args.fid_weights",
        str(tiny_fid_weights),
        "--prediction.max_examples",
        "8",
        "--prediction.num_samples",
        "6",
        "--prediction.steps",
        "3",
        "--prediction.decode",
        "{steps: 3}",
        "--prediction.invert",
        "true",
    ]
    assert main(args) == 0
    for name in FILES[task]:
        assert (out / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert Image.open(out / name).size[0] >= 16
    metrics = json.loads((out / "metrics.json").read_text())[task]
    assert {k: metrics[k] for k in METRICS[task]} == METRICS[task]
    if task == "reconstruct":
        assert (
            0 < metrics["mse"] < 1
            and metrics["psnr"] > 0
            and -1 < metrics["ssim"] <= 1
            and metrics["rfid"] > 0
        )
        assert len(list((out / "reconstructions").glob("*.png"))) == 8
    if task == "encode":
        assert np.load(out / "embeddings.npy").shape == (8, 8) and np.load(
            out / "embeddings_xT.npy"
        ).shape == (8, 8)
    if task == "interpolate":  # unset: the image defaults, lerp of μ at α = 0, 0.2, …, 1
        assert (metrics["options"]["interpolation_mode"], metrics["options"]["interpolation_points"]) == (
            "lerp",
            6,
        )
        assert len(list((out / "interpolations").glob("*.png"))) == 24 and metrics["interp_fid_a0.2"] > 0


def test_interpolation_options_given_on_the_command_line_override_the_image_defaults(trained):
    tmp, ckpt = trained
    out = tmp / "pred_interp_slerp"
    args = ["predict", "--config", CPU_TEST, "--ckpt_path", str(ckpt), "--prediction.task", "interpolate"]
    args += ["--prediction.output_dir", str(out), "--prediction.max_examples", "4", "--prediction.steps", "3"]
    args += ["--prediction.interpolation_mode", "slerp", "--prediction.interpolation_points", "3"]
    assert main([*args, "--prediction.decode", "{steps: 3}", "--data.init_args.batch_size", "4"]) == 0
    options = json.loads((out / "metrics.json").read_text())["interpolate"]["options"]
    assert (options["interpolation_mode"], options["interpolation_points"]) == ("slerp", 3)
    assert len(list((out / "interpolations").glob("*.png"))) == 2 * 3
    saved = (out / "config.yaml").read_text()  # the config saved beside the predictions: the values used
    assert "interpolation_mode: slerp" in saved and "interpolation_points: 3" in saved


def test_an_unknown_decoding_option_is_reported(trained, capsys):
    tmp, ckpt = trained
    code = main(
        [
            "predict",
            "--config",
            CPU_TEST,
            "--ckpt_path",
            str(ckpt),
            "--prediction.output_dir",
            str(tmp / "bad"),
            "--prediction.decode",
            "{temperature: 0.7}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "unknown decoding option(s) ['temperature']" in err and "Traceback" not in err


def test_a_missing_image_folder_is_reported_in_one_paragraph(tmp_path, capsys):
    code = main(
        [
            "fit",
            "--config",
            CPU_TEST,
            "--trainer.default_root_dir",
            str(tmp_path),
            "--data",
            "diled_image.ImageFolderDataModule",
            "--data.init_args.root",
            str(tmp_path / "nope"),
            "--data.init_args.channels",
            "1",
            "--data.init_args.image_size",
            "16",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "nope does not exist" in err and "Traceback" not in err


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_build_against_the_real_signatures(name):
    cli = DiledCLI(
        args=[
            "--config",
            str(CONFIGS / f"{name}.yaml"),
            "--trainer.accelerator",
            "cpu",
            "--trainer.precision",
            "32-true",
        ],
        run=False,
    )
    dm, model = cli.datamodule, cli.model
    dm.check_compatible(model.encoder, model.decoder)
    assert model.encoder.latent_dim == model.decoder.latent_dim
    assert (model.decoder.channels, model.decoder.image_size) == (dm.channels, dm.image_size)
    if name in ("celeba64", "ffhq128"):  # paper-style: 512-d latent, EMA decoder, the user's own data
        assert model.encoder.latent_dim == 512 and model.decoder_ema is not None
    if name == "fashion_mnist_cpu":
        assert model.w == 1.0 and model.decoder_ema is not None and model.decoder.objective == "diffusion"


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("name", ["fashion_mnist_cpu", "fashion_mnist_conv"])
def test_fashion_mnist_configs_train_on_the_shared_data(name, tmp_path, monkeypatch, fashion_mnist):
    monkeypatch.chdir(REPO)  # the default data folder is relative to the repository root
    args = [
        "fit",
        "--config",
        str(CONFIGS / f"{name}.yaml"),
        "--trainer.default_root_dir",
        str(tmp_path),
        "--trainer.max_steps",
        "3",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.val_check_interval",
        "3",
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert main(args) == 0
    (ckpt,) = tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 3
