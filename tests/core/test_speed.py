"""The speed switches of the training step (issue: benchmarks and speed): an autoencoder without a denoiser,
a loss check without a host sync every step, a foreach EMA updated every k steps, fused Adam from a config.
Each is checked for what it must keep: the same results, the same refusals, the same safety on divergence."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from diled_core import DiLED, NonFiniteLossError, SkipMLP
from diled_core.cli import DiledCLI, main
from diled_core.module import ema_lerp_
from diled_core.toy import ToyDataModule, ToyDecoder, ToyEncoder
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

REPO = Path(__file__).resolve().parents[2]
TOY = str(REPO / "configs" / "toy" / "fit.yaml")
FAST = [
    "--trainer.enable_progress_bar",
    "false",
    "--data.init_args.n_train",
    "128",
    "--data.init_args.n_val",
    "32",
    "--data.init_args.n_test",
    "32",
    "--data.init_args.batch_size",
    "32",
]


def model(**kw) -> DiLED:
    torch.manual_seed(0)
    return DiLED(
        ToyEncoder(latent_dim=4, hidden=32),
        ToyDecoder(latent_dim=4, hidden=32),
        denoiser=partial(SkipMLP, width=64, depth=2),
        optimizer=partial(torch.optim.Adam, lr=1e-2),
        **kw,
    )


def fit(m: DiLED, steps: int, *callbacks: L.Callback, root: Path | None = None, **kw) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        enable_checkpointing=root is not None,
        default_root_dir=root,
        callbacks=list(callbacks),
        **kw,
    )
    trainer.fit(m, ToyDataModule(n_train=256, batch_size=32))
    return trainer


# ------------------------------------------------------------------------------ autoencoder: no denoiser
def test_an_autoencoder_saves_no_denoiser_and_loads_to_encode_and_reconstruct(tmp_path: Path, capsys) -> None:
    for mode in ("joint", "autoencoder"):
        args = [
            "--trainer.max_steps",
            "2",
            "--model.training",
            mode,
            "--model.denoiser.init_args.width",
            "1024",
        ]
        assert (
            main(["fit", "--config", TOY, "--trainer.default_root_dir", str(tmp_path / mode), *FAST, *args])
            == 0
        )
    joint, ae = (
        next((tmp_path / m).glob("lightning_logs/*/checkpoints/last.ckpt")) for m in ("joint", "autoencoder")
    )
    state = torch.load(ae, weights_only=True)["state_dict"]
    assert not [k for k in state if k.startswith(("denoiser.", "ema."))]
    assert ae.stat().st_size < joint.stat().st_size / 10  # the 1024-wide denoiser and its EMA dominate joint
    loaded = DiLED.load_from_checkpoint(ae)
    assert loaded.denoiser is None and loaded.ema is None
    batch = ToyDataModule(n_train=64).collate(
        [ToyDataModule(n_train=64).dataset("test")[i] for i in range(5)]
    )
    assert loaded.encode(batch).shape == (5, 4) and loaded.reconstruct(batch)["x"].shape == (5, 8)
    with pytest.raises(ValueError, match="training: autoencoder"):
        loaded.sample(2, steps=3)
    # an autoencoder checkpoint written before denoisers were left out (it holds one) still loads
    old = torch.load(ae, weights_only=True)
    joint_state = torch.load(joint, weights_only=True)["state_dict"]
    old["state_dict"].update({k: v for k, v in joint_state.items() if k.startswith(("denoiser.", "ema."))})
    torch.save(old, tmp_path / "old.ckpt")
    assert DiLED.load_from_checkpoint(tmp_path / "old.ckpt").denoiser is None
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                "--config",
                str(ae.parents[1] / "config.yaml"),
                "--ckpt_path",
                str(tmp_path / "old.ckpt"),
                "--prediction.output_dir",
                str(out),
                "--prediction.task",
                "reconstruct",
                "--trainer.enable_progress_bar",
                "false",
            ]
        )
        == 0
    )


# ------------------------------------------------------------------------------ deferred NaN check
class PoisonAt(L.Callback):
    """Turns the batch of one step into NaN, so that step's loss (and every weight after it) is NaN."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            batch["x"].fill_(float("nan"))


@pytest.mark.parametrize(("every", "noticed"), [(1, 6), (4, 8)])
def test_a_nan_loss_stops_the_run_at_the_check_naming_its_step(every: int, noticed: int) -> None:
    m = model(nan_check_every=every)
    trainer = L.Trainer(
        max_steps=20,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        enable_checkpointing=False,
        callbacks=[PoisonAt(6)],
    )
    with pytest.raises(NonFiniteLossError, match="training loss became nan at step 6"):
        trainer.fit(m, ToyDataModule(n_train=1024, batch_size=32))
    assert trainer.global_step == noticed


def test_a_deferred_nan_check_never_saves_the_poisoned_weights(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True)
    with pytest.raises(NonFiniteLossError, match="at step 6 .*last good checkpoint is .*last.ckpt"):
        fit(model(nan_check_every=50), 20, PoisonAt(6), checkpoint, root=tmp_path)
    kept = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert kept["global_step"] == 6
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point())


def test_a_nan_in_the_last_steps_fails_the_fit_at_its_end() -> None:
    with pytest.raises(NonFiniteLossError, match="at step 4"):
        fit(model(nan_check_every=50), 5, PoisonAt(4))


# ------------------------------------------------------------------------------ EMA
def test_ema_lerp_matches_torch_ema_and_copies_integer_buffers() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))
    reference = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ours = [t.clone() for t in list(net.parameters()) + list(net.buffers())]
    for step in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net[1].num_batches_tracked += 1
        reference.update_parameters(net)
        ema_lerp_(ours, list(net.parameters()) + list(net.buffers()), 1.0 if step == 0 else 0.1)
    expected = list(reference.module.parameters()) + list(reference.module.buffers())
    for a, b in zip(ours[:-1], expected[:-1]):
        torch.testing.assert_close(a, b)
    assert ours[-1].item() == 4  # num_batches_tracked: copied, not averaged


@pytest.mark.parametrize(("every", "warmup"), [(1, False), (3, False), (1, True), (2, True)])
def test_ema_every_k_steps_averages_with_decay_to_the_k(every: int, warmup: bool) -> None:
    """Decay 0.8 every k steps is 0.8^k; with warmup, after n averaged steps at most (1 + n) / (10 + n)."""
    seen = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            seen.append([p.detach().clone() for p in pl_module.denoiser.parameters()])

    m = model(ema_decay=0.8, ema_every=every, ema_warmup=warmup)
    fit(m, 6, Record())
    expected, updates = None, 0
    for step, weights in enumerate(seen, start=1):
        if step % every == 0:
            n = updates * every
            decay = min(0.8, (1 + n) / (10 + n)) if warmup else 0.8
            expected = (
                weights
                if expected is None
                else [e + (1 - decay**every) * (w - e) for e, w in zip(expected, weights)]
            )
            updates += 1
    assert m.ema.n_averaged.item() == 6 // every
    for a, b in zip(m.ema.module.parameters(), expected):
        torch.testing.assert_close(a, b)
    if warmup:  # the warm-up changed the average: without it the weights differ
        plain = [e.clone() for e in seen[every - 1]]
        for weights in seen[2 * every - 1 :: every]:
            plain = [e + (1 - 0.8**every) * (w - e) for e, w in zip(plain, weights)]
        assert any(not torch.allclose(a, b) for a, b in zip(m.ema.module.parameters(), plain))


def test_ema_is_updated_once_per_optimizer_step_when_accumulating() -> None:
    m = model(ema_decay=0.9, decoder_ema=True)
    fit(m, 4, accumulate_grad_batches=2)
    assert m.ema.n_averaged.item() == 4 and m.decoder_ema.n_averaged.item() == 4


@pytest.mark.parametrize("option", ["ema_every", "nan_check_every", "latent_draws"])
def test_ema_every_nan_check_every_and_latent_draws_must_be_positive(option: str) -> None:
    with pytest.raises(ValueError, match="ema_every, nan_check_every and latent_draws must be >= 1"):
        model(**{option: 0})


# ------------------------------------------------------------------------------ fused Adam
def test_fused_adam_from_the_config_trains_with_clipping_under_bf16(tmp_path: Path, monkeypatch) -> None:
    """``fused: true`` is an init_arg of torch's Adam; Lightning refuses to clip a fused optimizer under any
    mixed precision, which DiLED allows under bf16 (no gradient scaler, nothing to unscale)."""
    monkeypatch.setattr("sys.argv", ["diled"])
    cli = DiledCLI(args=["--config", TOY, "--model.optimizer.init_args.fused", "true"], run=False)
    assert cli.model.configure_optimizers().defaults["fused"] is True
    args = [
        "--trainer.max_steps",
        "3",
        "--model.optimizer.init_args.fused",
        "true",
        "--trainer.precision",
        "bf16-mixed",
        "--trainer.gradient_clip_val",
        "0.01",
    ]
    assert main(["fit", "--config", TOY, "--trainer.default_root_dir", str(tmp_path), *FAST, *args]) == 0
    (ckpt,) = tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt")
    saved = torch.load(ckpt, weights_only=True)
    assert saved["global_step"] == 3 and saved["optimizer_states"][0]["param_groups"][0]["fused"] is True


# ------------------------------------------------------------------------------ torch.compile
def test_a_compiled_denoiser_trains_saves_under_the_same_names_and_computes_the_eager_one(
    tmp_path: Path,
) -> None:
    from torch._dynamo.utils import counters

    compiled = model(compile_denoiser=True)
    graphs = counters["stats"]["unique_graphs"]
    fit(compiled, 2, root=tmp_path)
    assert counters["stats"]["unique_graphs"] > graphs, "the denoiser was not compiled"
    (ckpt,) = tmp_path.glob("**/*.ckpt")
    saved = torch.load(ckpt, weights_only=True)
    eager = model()
    assert saved["global_step"] == 2 and saved["state_dict"].keys() == eager.state_dict().keys()

    eager.load_state_dict(saved["state_dict"])  # the trained weights: the output layer is no longer zero
    x, t = torch.randn(16, 4), torch.rand(16)
    results = []
    for m in (eager, compiled):
        m.zero_grad(set_to_none=True)
        out = m.denoiser(x, t)
        out.square().sum().backward()
        results.append([out.detach()] + [p.grad for p in m.denoiser.parameters()])
    assert results[0][0].abs().max() > 0
    for a, b in zip(results[1], results[0]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
