"""Attribute transfer (method.md §4): the plain functions, and a trained toy model moved between
mixture components, judged by the true component nearest to each decoded output."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from diled_core import DiLED, SkipMLP
from diled_core.attributes import classifier_guidance, fit_attributes, fit_time_classifier
from diled_core.predict import PredictionWriter, PredictOptions
from diled_core.schedule import NoiseSchedule
from diled_core.toy import ToyDataModule, ToyDecoder, ToyEncoder


def clusters(n: int = 600, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well-separated Gaussian clusters, labels 3, 5 and 7 (and a few unlabelled rows)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([3, 5, 7])[torch.randint(0, 3, (n,), generator=g)]
    centres = {
        3: torch.tensor([4.0, 0, 0, 0]),
        5: torch.tensor([0, 4.0, 0, 0]),
        7: torch.tensor([0, 0, 4.0, 0]),
    }
    mu = torch.stack([centres[int(c)] for c in y]) + 0.5 * torch.randn(n, d, generator=g)
    y[:10] = -1
    return mu, y


def test_class_means_and_arithmetic_move_a_class_mean_onto_the_target_mean() -> None:
    mu, y = clusters()
    attrs = fit_attributes(mu, y, NoiseSchedule(timesteps=100))
    assert attrs.classes.tolist() == [3, 5, 7] and attrs.counts.sum() == (y >= 0).sum()
    for i, c in enumerate([3, 5, 7]):
        assert torch.allclose(attrs.means[i], mu[y == c].mean(0), atol=1e-5)
    target = attrs.targets(torch.tensor([3, 5]), transfer_to=7)
    moved = attrs.shift(attrs.means[:2], torch.tensor([3, 5]), target, "arithmetic", 1.0)
    assert torch.allclose(moved, attrs.means[2].expand(2, -1), atol=1e-5)
    half = attrs.shift(attrs.means[:1], torch.tensor([3]), target[:1], "arithmetic", 0.5)
    assert torch.allclose(half, (attrs.means[0] + attrs.means[2]) / 2, atol=1e-5)


def test_linear_direction_moves_by_the_class_gap_along_the_classifier_normal() -> None:
    mu, y = clusters()
    attrs = fit_attributes(mu, y, NoiseSchedule(timesteps=100))
    target = attrs.targets(torch.tensor([3]), transfer_to=5)
    moved = attrs.shift(attrs.means[:1], torch.tensor([3]), target, "linear", 1.0)
    step = moved - attrs.means[:1]
    u = attrs.weights[1] - attrs.weights[0]
    assert torch.allclose(step / step.norm(), u / u.norm(), atol=1e-4)  # along the normal
    gap = attrs.means[1] - attrs.means[0]
    assert torch.allclose(step.norm(), (gap @ (u / u.norm())).abs(), atol=1e-4)
    # the regression separates the classes: the moved mean is classified as the target
    assert (moved @ attrs.weights.T).argmax().item() == 1


def test_targets_flip_two_classes_and_explain_what_is_missing() -> None:
    mu, y = clusters()
    two = fit_attributes(mu[y != 7], y[y != 7], NoiseSchedule(timesteps=100))
    assert two.classes[two.targets(torch.tensor([3, 5, -1]), None)].tolist() == [5, 3, 5]
    three = fit_attributes(mu, y, NoiseSchedule(timesteps=100))
    with pytest.raises(ValueError, match="3 classes .* --prediction.transfer_to"):
        three.targets(torch.tensor([3]), None)
    with pytest.raises(ValueError, match="transfer_to 4 is not a class .* \\[3, 5, 7\\]"):
        three.targets(torch.tensor([3]), 4)
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_attributes(mu[y == 3], y[y == 3], NoiseSchedule(timesteps=100))


def test_time_classifier_is_sure_at_low_noise_unsure_at_high_noise_and_its_gradient_points_to_the_class() -> (
    None
):
    mu, y = clusters()
    keep = y >= 0
    mu, y = mu[keep], y[keep]
    classes, idx = y.unique(return_inverse=True)
    schedule = NoiseSchedule(timesteps=1000)  # ᾱ_1000 ≈ 3e-4: almost no signal left
    g = torch.Generator().manual_seed(0)
    clf = fit_time_classifier(mu, idx, 3, schedule, steps=300, generator=g)
    for t, low, high in ((2, 0.95, 1.0), (1000, 0.0, 0.6)):
        tt = torch.full((len(mu),), t)
        x_t = schedule.sqrt_alphas_cumprod[t] * mu + schedule.sqrt_one_minus_alphas_cumprod[t] * torch.randn(
            mu.shape, generator=g
        )
        acc = (clf(x_t, tt / 1000).argmax(1) == idx).float().mean().item()
        assert low <= acc <= high, (t, acc)
    x = torch.zeros(1, 4, requires_grad=True)
    grad = classifier_guidance(clf, torch.tensor([2]), 1000)(x, torch.tensor([100]))
    assert grad[0, 2] > grad[0, 0].abs() and grad[0, 2] > grad[0, 1].abs()  # class 7 lies along axis 2


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[DiLED, ToyDataModule]:
    """A toy model trained 600 steps on a 6-component mixture (components are the class labels)."""
    torch.manual_seed(0)
    dm = ToyDataModule(n_train=4096, batch_size=128)
    model = DiLED(
        ToyEncoder(dim=8, latent_dim=4, hidden=128),
        ToyDecoder(dim=8, latent_dim=4, hidden=128, sigma=0.1),
        denoiser=partial(SkipMLP, width=256, depth=4),
        optimizer=partial(torch.optim.Adam, lr=2e-3),
        ema_decay=0.99,
    )
    L.Trainer(
        max_steps=600,
        accelerator="cpu",
        default_root_dir=tmp_path_factory.mktemp("toy"),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
    ).fit(model, dm)
    return model.eval(), dm


def predict_transfer(model: DiLED, dm: ToyDataModule, out: Path, **options) -> dict:
    opts = PredictOptions(task="transfer", output_dir=out, max_examples=256, steps=20, **options)
    model.predict_options = opts
    dm.configure_prediction("transfer", max_examples=256)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, callbacks=[PredictionWriter(opts)], enable_progress_bar=False
    )
    trainer.predict(model, datamodule=dm, return_predictions=False)
    return json.loads((out / "metrics.json").read_text())["transfer"]


@pytest.mark.parametrize(
    ("method", "scale", "least"), [("arithmetic", 1.0, 0.9), ("linear", 1.0, 0.9), ("guided", 1.0, 0.9)]
)
def test_transfer_moves_decoded_outputs_to_the_target_component(
    toy, tmp_path: Path, method, scale, least
) -> None:
    """``diled predict --prediction.task transfer``: the share of outputs whose nearest true mixture
    component is the target (chance: 1/6; with scale 0 only the rows already there, ~1/6)."""
    model, dm = toy
    moved = predict_transfer(
        model, dm, tmp_path / "moved", transfer_method=method, transfer_scale=scale, transfer_to=2
    )
    still = predict_transfer(
        model, dm, tmp_path / "still", transfer_method=method, transfer_scale=0.0, transfer_to=2
    )
    assert moved["count"] == still["count"] == 256
    assert still["target_rate"] < 0.35
    assert moved["target_rate"] >= least, moved
    assert (tmp_path / "moved" / "transfers.csv").stat().st_size > 0


def test_transfer_of_data_without_labels_says_so(toy) -> None:
    model, dm = toy

    class Unlabelled(ToyDataModule):
        def attribute_labels(self, batch):
            return None

    with pytest.raises(ValueError, match="needs class labels, and Unlabelled batches have none"):
        model.fit_attributes(Unlabelled(n_train=64))
