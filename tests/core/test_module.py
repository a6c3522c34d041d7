"""The DiLED module: the toy modality learns, the Python API, training modes, checkpoint rebuild."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from diled_core import DiLED, RegressionHead, SkipMLP
from diled_core.toy import ToyDataModule, ToyDecoder, ToyEncoder, mmd_rbf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def make_model(**kw) -> DiLED:
    return DiLED(
        ToyEncoder(dim=8, latent_dim=4, hidden=128),
        ToyDecoder(dim=8, latent_dim=4, hidden=128, sigma=0.1),
        denoiser=partial(SkipMLP, width=256, depth=4),
        head=partial(RegressionHead, hidden=32),
        optimizer=partial(torch.optim.Adam, lr=2e-3),
        **{"ema_decay": 0.99, **kw},
    )


def trainer(root: Path, steps: int, **kw) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def sample_quality(model: DiLED, dm: ToyDataModule, n: int = 512) -> tuple[float, float]:
    """(MMD to fresh data, mean distance of each sample to its nearest mixture mean)."""
    model.eval()
    x = model.sample(n, steps=50, generator=torch.Generator().manual_seed(0))["x"]
    ref = dm.sample(n, seed=12345)[0]
    return mmd_rbf(x, ref), torch.cdist(x, dm.means).min(dim=1).values.mean().item()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[DiLED, DiLED, ToyDataModule, Path]:
    """An untrained and a briefly trained toy model (~600 optimizer steps on CPU)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("learn")
    dm = ToyDataModule(n_train=4096, batch_size=128)
    untrained = make_model()
    model = make_model()
    model.load_state_dict(untrained.state_dict())
    trainer(root, 600, limit_val_batches=2).fit(model, dm)
    return untrained, model, dm, root


def test_toy_modality_learns_the_data_distribution(trained) -> None:
    untrained, model, dm, _ = trained
    mmd_before, dist_before = sample_quality(untrained, dm)
    mmd_after, dist_after = sample_quality(model, dm)
    # Samples of a trained model lie near the mixture components (noise 0.3 in 8-D: ~0.85 expected).
    assert mmd_after < 0.25 * mmd_before, (mmd_before, mmd_after)
    assert dist_after < 1.5 < dist_before, (dist_before, dist_after)


def test_reconstruction_and_representation(trained) -> None:
    untrained, model, dm, _ = trained
    batch = dm.collate([dm.dataset("test")[i] for i in range(256)])
    err = lambda m: ((m.reconstruct(batch)["x"] - batch["x"]) ** 2).mean().item()  # noqa: E731
    assert err(model) < 0.1 * err(untrained)
    mu = model.encode(batch)
    assert mu.shape == (256, 4)
    # the representation separates mixture components: nearest class mean in μ space is mostly right
    means = torch.stack([mu[batch["label"] == c].mean(0) for c in range(dm.components)])
    assert (torch.cdist(mu, means).argmin(1) == batch["label"]).float().mean() > 0.9


def test_ddim_inversion_round_trip_on_trained_model(trained) -> None:
    _, model, dm, _ = trained
    batch = dm.collate([dm.dataset("test")[i] for i in range(64)])
    mu = model.encode(batch)
    errors = [
        (model.uninvert(model.invert(mu, steps=s), steps=s) - mu).norm(dim=1).mean().item() for s in (10, 100)
    ]
    assert errors[1] < errors[0] and errors[1] < 0.05 * mu.norm(dim=1).mean().item(), errors


def test_interpolation_endpoints_and_shapes(trained) -> None:
    _, model, dm, _ = trained
    data = [dm.dataset("test")[i] for i in range(8)]
    a, b = dm.collate(data[:4]), dm.collate(data[4:])
    for mode in ("lerp", "slerp"):
        path = model.interpolate_latents(model.encode(a), model.encode(b), n=5, mode=mode, steps=200)
        assert path.shape == (4, 5, 4)
        tol = 1e-5 if mode == "lerp" else 0.05  # slerp goes through DDIM inversion and back
        assert torch.allclose(path[:, 0], model.encode(a), atol=tol * 10, rtol=tol)
        assert torch.allclose(path[:, -1], model.encode(b), atol=tol * 10, rtol=tol)
    assert model.interpolate(a, b, n=5)["x"].shape == (20, 8)


def test_latent_health_logged_every_epoch(trained) -> None:
    *_, root = trained
    (events,) = root.glob("lightning_logs/version_*/events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in (
        "latent/std_mean",
        "latent/norm_mean",
        "latent/active_units",
        "latent/effective_rank",
        "train/decoder/nll",
        "train/diffusion",
        "train/head",
        "train/loss",
        "val/loss",
    ):
        assert tag in tags, tag
    active = [e.value for e in acc.Scalars("latent/active_units")]
    assert len(active) >= 3 and active[-1] == 4  # one value per epoch; all 4 dims in use
    rank = [e.value for e in acc.Scalars("latent/effective_rank")]
    assert len(rank) == len(active) and 1.0 < rank[-1] <= 4.0


def test_validation_logs_how_much_the_decoder_uses_the_latent(trained) -> None:
    untrained, model, dm, root = trained
    (events,) = root.glob("lightning_logs/version_*/events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    gains = [e.value for e in acc.Scalars("val/latent_gain/nll")]
    batch = next(iter(dm.val_dataloader()))
    before = untrained.eval().latent_gain(batch)["nll"].mean().item()
    assert len(gains) >= 3 and gains[-1] > 5 * abs(before)  # one per validation; training made z matter
    model.eval()
    (name, gain), *more = model.latent_gain(batch, seed=3).items()
    assert name == "nll" and not more and gain.shape == (batch["x"].shape[0],)
    mu = model.encode(batch)
    own, other = model.decoder_losses(mu, batch)["nll"], model.decoder_losses(mu.roll(1, 0), batch)["nll"]
    torch.testing.assert_close(gain, other - own)
    assert model.latent_gain({"x": batch["x"][:1]}) == {}
    blind = make_model()  # a decoder whose first layer ignores z: no gain at all
    torch.nn.init.zeros_(blind.decoder.net[0].weight)
    assert torch.equal(blind.eval().latent_gain(batch)["nll"], torch.zeros(batch["x"].shape[0]))


def test_load_from_checkpoint_rebuilds_without_objects(trained, tmp_path: Path) -> None:
    """A module built in Python keeps its objects out of the checkpoint: pass them again to load."""
    _, model, _, _ = trained
    path = tmp_path / "m.ckpt"
    t = trainer(tmp_path, 1)
    t.strategy.connect(model)
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)  # loadable without executing code
    assert "encoder" not in ckpt["hyper_parameters"]
    fresh = make_model()
    loaded = DiLED.load_from_checkpoint(
        path,
        encoder=fresh.encoder,
        decoder=fresh.decoder,
        denoiser=partial(SkipMLP, width=256, depth=4),
        head=partial(RegressionHead, hidden=32),
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_cli_checkpoint_rebuilds_everything(tmp_path: Path) -> None:
    from diled_core.cli import main

    toy = Path(__file__).resolve().parents[2] / "configs" / "toy" / "fit.yaml"
    assert (
        main(
            [
                "fit",
                "--config",
                str(toy),
                "--trainer.max_steps",
                "3",
                "--trainer.default_root_dir",
                str(tmp_path),
                "--trainer.enable_progress_bar",
                "false",
            ]
        )
        == 0
    )
    (ckpt,) = tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    model = DiLED.load_from_checkpoint(ckpt, weights_only=True)
    assert isinstance(model.encoder, ToyEncoder) and model.head is not None
    assert model.sample(3, steps=5)["x"].shape == (3, 8)


@pytest.mark.parametrize("mode", ["two_stage", "autoencoder"])
def test_training_modes(mode: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = make_model(training=mode, stage_one_steps=5)
    dm = ToyDataModule(n_train=256, batch_size=32)
    if mode == "two_stage":
        snapshots = {}

        class Snapshot(L.Callback):  # the state at the end of the autoencoder stage
            def on_train_batch_end(self, trainer, pl_module, *args) -> None:
                if trainer.global_step == 5:
                    snapshots["encoder"] = {k: v.clone() for k, v in pl_module.encoder.state_dict().items()}
                    snapshots["denoiser"] = {k: v.clone() for k, v in pl_module.denoiser.state_dict().items()}

        trainer(tmp_path, 12, limit_val_batches=0, callbacks=[Snapshot()]).fit(model, dm)
        frozen, denoiser = snapshots["encoder"], snapshots["denoiser"]
    else:
        assert model.denoiser is None and model.ema is None  # an autoencoder builds no denoiser at all
        encoder = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        trainer(tmp_path, 8, limit_val_batches=0).fit(model, dm)
    batch = dm.collate([dm.dataset("train")[i] for i in range(32)])
    model.train()
    terms = model.objective(batch).terms
    if mode == "autoencoder":
        assert set(terms) == {"decoder/nll", "head"}
        assert not all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder.items())
    else:
        assert model.in_stage_two and set(terms) == {"diffusion", "head"}
        assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in frozen.items())
        assert not all(torch.equal(v, model.denoiser.state_dict()[k]) for k, v in denoiser.items())


def test_joint_objective_reaches_the_encoder_through_every_term() -> None:
    model = make_model()
    torch.nn.init.normal_(model.denoiser.out.weight, std=0.1)  # zero-initialised: ε_θ ≡ 0 has no μ-gradient
    dm = ToyDataModule(n_train=64)
    batch = dm.collate([dm.dataset("train")[i] for i in range(16)])
    result = model.objective(batch, torch.Generator().manual_seed(0))
    terms, weights = result.terms, result.weights
    assert set(terms) == {"decoder/nll", "diffusion", "head"} and all(
        v.shape == (16,) for v in terms.values()
    )
    for name in terms:
        model.zero_grad()
        terms[name].mean().backward(retain_graph=True)
        grad = sum(p.grad.abs().sum() for p in model.encoder.parameters() if p.grad is not None)
        assert grad > 0, f"{name} does not reach the encoder"
    # elbo_split: the reconstruction weight is 1 / ((T - 1) λ_t) per example
    t = torch.randint(2, 1001, (16,), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(weights["decoder/nll"], 1 / (999 * model.schedule.lambdas[t]))


def test_guidance_moves_samples_toward_the_target(trained) -> None:
    """A guidance callable ∇ log p(y | x_t) (here: prefer large first latent coordinate) is honoured."""
    _, model, _, _ = trained
    g = lambda x, t: torch.zeros_like(x).index_fill_(1, torch.tensor([0]), 1.0)  # noqa: E731
    plain = model.sample_latents(256, steps=20, generator=torch.Generator().manual_seed(1))
    guided = model.sample_latents(
        256, steps=20, generator=torch.Generator().manual_seed(1), guidance=g, guidance_scale=2.0
    )
    assert guided[:, 0].mean() > plain[:, 0].mean() + 0.5


# ----------------------------------------------------------------- optimizer groups, frozen weights, EMA
class _PretrainedEncoder(ToyEncoder):
    """A toy encoder whose first layer plays a frozen pretrained part rebuilt from its source."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        torch.manual_seed(123)  # "the source": the same weights every time the part is built
        self.net[0].reset_parameters()
        self.net[0].requires_grad_(False)

    def external_state(self) -> list[str]:
        return ["net.0."]

    def param_groups(self):
        return [
            {"params": [p for n, p in self.named_parameters() if n.startswith("net.2.")], "lr": 1e-5},
            {"params": [p for n, p in self.named_parameters() if n.startswith("net.4.")]},
        ]


def test_plugin_param_groups_reach_the_optimizer_with_their_learning_rate() -> None:
    model = DiLED(
        _PretrainedEncoder(latent_dim=4),
        ToyDecoder(latent_dim=4),
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
    )
    optimizer = model.configure_optimizers()
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs[0] == 1e-5 and all(lr == 1e-3 for lr in lrs[1:])
    listed = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(model.encoder.net[0].weight) not in listed
    assert listed == {id(p) for p in model.parameters() if p.requires_grad}


def test_external_weights_stay_out_of_checkpoints_and_are_rebuilt(tmp_path: Path) -> None:
    model = DiLED(
        _PretrainedEncoder(latent_dim=4), ToyDecoder(latent_dim=4), denoiser=lambda d: SkipMLP(d, 32, 2)
    )
    dm = ToyDataModule(n_train=64, batch_size=32)
    fitted = trainer(tmp_path, 2, limit_val_batches=0)
    fitted.fit(model, dm)
    ckpt = tmp_path / "model.ckpt"
    fitted.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert not any(k.startswith("encoder.net.0.") for k in state) and "encoder.net.2.weight" in state
    loaded = DiLED.load_from_checkpoint(
        ckpt,
        encoder=_PretrainedEncoder(latent_dim=4),
        decoder=ToyDecoder(latent_dim=4),
        denoiser=lambda d: SkipMLP(d, 32, 2),
        weights_only=True,
    )
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)


@pytest.mark.parametrize("interval, lr_after_4", [("step", 2e-3 * (0.1 + 0.9 * 4 / 10)), ("epoch", 2e-4)])
def test_the_lr_scheduler_steps_per_optimizer_step_or_per_epoch(tmp_path: Path, interval, lr_after_4) -> None:
    warmup = partial(torch.optim.lr_scheduler.LinearLR, start_factor=0.1, total_iters=10)
    model = make_model(lr_scheduler=warmup, lr_scheduler_interval=interval)  # Adam, lr 2e-3
    fitted = trainer(tmp_path, 4, limit_val_batches=0)
    fitted.fit(model, ToyDataModule(n_train=256, batch_size=32))  # 8 steps per epoch: 4 steps, no epoch end
    assert fitted.optimizers[0].param_groups[0]["lr"] == pytest.approx(lr_after_4)
    with pytest.raises(ValueError, match="lr_scheduler_interval must be epoch or step"):
        make_model(lr_scheduler_interval="batch")


def test_decoder_ema_decodes_with_averaged_weights(tmp_path: Path) -> None:
    model = make_model(decoder_ema=True, ema_decay=0.5)
    trainer(tmp_path, 3, limit_val_batches=0).fit(model, ToyDataModule(n_train=128, batch_size=32))
    assert model.sampling_decoder() is model.decoder_ema.module
    z = torch.randn(4, 4)
    ema_out = model.decode(z)["x"]
    assert not torch.allclose(ema_out, model.decoder.decode(z)["x"])
    torch.testing.assert_close(ema_out, model.decoder_ema.module.decode(z)["x"])


def test_a_divergence_keeps_the_last_good_checkpoint_and_names_it(tmp_path: Path) -> None:
    """Weights that blow up (here: scaled by 1e30 after step 5, as a diverging optimizer does) are never
    saved; last.ckpt keeps the step-5 weights, and the error names it."""
    from diled_core import NonFiniteLossError
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Explode(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            if trainer.global_step == 6:
                with torch.no_grad():
                    for p in pl_module.parameters():
                        p.mul_(1e30)

    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True)
    fitting = L.Trainer(
        max_steps=20,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Explode(), checkpoint],
    )
    with pytest.raises(NonFiniteLossError, match="last good checkpoint is .*last.ckpt"):
        fitting.fit(make_model(), ToyDataModule(n_train=512, batch_size=32))
    kept = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert kept["global_step"] == 5
    assert max(v.abs().max().item() for v in kept["state_dict"].values() if v.is_floating_point()) < 100
