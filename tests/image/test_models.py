"""The image networks: shapes and size errors, the diffusion decoder's timestep map, deterministic DDIM,
and its DDIM inversion round trip (error shrinking with more steps)."""

from __future__ import annotations

import pytest
import torch
from diled_image import ConvDecoder, SemanticEncoder, SyntheticImageDataModule, UNetDiffusionDecoder
from torch import Tensor, nn

SMALL = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1)


def batch(n: int = 4, channels: int = 1, size: int = 8) -> dict:
    dm = SyntheticImageDataModule(n_train=n, channels=channels, image_size=size)
    return dm.collate([dm.dataset("train")[i] for i in range(n)])


@pytest.mark.parametrize("size", [16, 28])
def test_networks_keep_the_image_shape(size):
    x = {"image": torch.randn(2, 3, size, size)}
    mu = SemanticEncoder(3, size, 5, base_channels=8, channel_mults=(1, 2, 2))(x)
    assert mu.shape == (2, 5)
    dec = UNetDiffusionDecoder(
        3, size, 5, base_channels=8, channel_mults=(1, 2, 2), attention_resolutions=(size // 2,)
    )
    assert dec.eps(x["image"], torch.tensor([1, 999]), mu).shape == (2, 3, size, size)
    assert ConvDecoder(3, size, 5, base_channels=8, channel_mults=(1, 2, 2)).decode(mu)["image"].shape == (
        2,
        3,
        size,
        size,
    )


@pytest.mark.parametrize("cls", [SemanticEncoder, ConvDecoder, UNetDiffusionDecoder])
def test_an_image_size_the_levels_cannot_halve_is_an_error(cls):
    with pytest.raises(ValueError, match=r"image_size=28 is not divisible by 8.*channel_mults"):
        cls(1, 28, 4, channel_mults=(1, 2, 2, 2))


def test_the_shared_timestep_maps_onto_the_decoders_chain():
    dec = UNetDiffusionDecoder(1, 8, 4, timesteps=100, latent_timesteps=1000, **SMALL)
    t = torch.tensor([1, 10, 11, 500, 999, 1000])
    assert dec.own_timestep(t).tolist() == [1, 1, 2, 50, 100, 100]


def test_the_decoder_depends_on_the_latent():
    torch.manual_seed(0)
    dec = UNetDiffusionDecoder(1, 8, 4, attention_resolutions=(4,), **SMALL).eval()
    x, s = torch.randn(2, 1, 8, 8), torch.tensor([50, 50])
    z = torch.randn(1, 4).expand(2, 4)
    assert not torch.allclose(dec.eps(x, s, z), dec.eps(x, s, z + 1))


def test_ddim_with_eta_zero_is_deterministic_and_eta_one_follows_the_generator():
    torch.manual_seed(0)
    dec = UNetDiffusionDecoder(1, 8, 4, timesteps=100, **SMALL).eval()
    z, b = torch.randn(4, 4), batch()
    a = dec.decode(z, batch=b, steps=5, generator=torch.Generator().manual_seed(1))["image"]
    again = dec.decode(z, batch=b, steps=5, generator=torch.Generator().manual_seed(2))["image"]
    torch.testing.assert_close(a, again)  # from the inverted image, η = 0: no randomness at all
    noise = torch.randn(4, 1, 8, 8)
    out = [
        dec.decode(z, inverted=noise, steps=5, eta=1.0, generator=torch.Generator().manual_seed(s))["image"]
        for s in (1, 1, 2)
    ]
    torch.testing.assert_close(out[0], out[1])
    assert not torch.allclose(out[0], out[2])
    with pytest.raises(ValueError, match="eta must be in"):
        dec.decode(z, steps=5, eta=2.0)


class GaussianEps(nn.Module):
    """The exact ε of data x0 ~ N(0, σ² I) on the decoder's chain:
    E[ε | x_s] = √(1 − ᾱ) x_s / (ᾱ σ² + 1 − ᾱ)."""

    def __init__(self, alphas_cumprod: Tensor, sigma: float) -> None:
        super().__init__()
        self.abar, self.sigma = alphas_cumprod, sigma

    def forward(self, x: Tensor, s: Tensor, z: Tensor) -> Tensor:
        abar = self.abar[s.round().long()].view(-1, 1, 1, 1)
        return (1 - abar).sqrt() * x / (abar * self.sigma**2 + 1 - abar)


def test_the_inversion_round_trip_shrinks_with_more_steps():
    """With the exact ε of Gaussian data, DDIM inversion then DDIM sampling returns the image up to a
    discretisation error that shrinks with the number of steps."""
    dec = UNetDiffusionDecoder(1, 8, 4, timesteps=1000, **SMALL)
    dec.unet = GaussianEps(dec.schedule.alphas_cumprod, sigma=0.3)
    x0 = (0.3 * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    z = torch.zeros(4, 4)
    errors = []
    for steps in (5, 20, 100):
        noise = dec.invert({"image": x0}, z, steps=steps)
        errors.append((dec.decode(z, inverted=noise, steps=steps)["image"] - x0).square().mean().item())
        torch.testing.assert_close(
            dec.decode(z, batch={"image": x0}, steps=steps)["image"],
            dec.decode(z, inverted=noise, steps=steps)["image"],
        )  # from_inverted
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02 * errors[0], errors


@pytest.mark.slow
def test_a_trained_decoder_reconstructs_from_its_inverted_noise():
    """A tiny UNet fitted to four images: its reconstruction error from DDIM-inverted noise shrinks
    with the number of DDIM steps (about 20 s on 2 CPU cores)."""
    torch.manual_seed(0)
    dec = UNetDiffusionDecoder(1, 8, 4, timesteps=1000, attention_resolutions=(), **SMALL)
    b, z, g = batch(), torch.randn(4, 4), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)
    for _ in range(300):
        loss = dec.loss(z, b, t=torch.randint(1, 1001, (4,), generator=g), generator=g)["eps_mse"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dec.eval()
    errors = [
        (dec.decode(z, batch=b, steps=s)["image"] - b["image"]).square().mean().item() for s in (10, 100)
    ]
    assert errors[1] < 0.25 * errors[0] and errors[1] < 0.1, errors


def test_the_encoder_standardises_each_latent_dimension_over_the_batch():
    torch.manual_seed(0)
    x = {"image": torch.randn(6, 1, 8, 8)}
    enc = SemanticEncoder(1, 8, 16, **SMALL)  # normalize: batch
    mu = enc(x)
    torch.testing.assert_close(mu.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(mu.var(0, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)
    assert enc(x)[:1].shape == enc({"image": x["image"][:1]}).shape == (1, 16)  # one example: running stats
    enc.eval()  # running statistics: per example, deterministic
    torch.testing.assert_close(enc({"image": x["image"][:2]})[:1], enc({"image": x["image"][:1]}))


def test_the_encoder_can_standardise_per_example_or_not_at_all():
    x = {"image": torch.randn(3, 1, 8, 8)}
    mu = SemanticEncoder(1, 8, 16, normalize="example", **SMALL)(x)
    torch.testing.assert_close(mu.norm(dim=1), torch.full((3,), 4.0), atol=1e-3, rtol=0)  # √16
    raw = SemanticEncoder(1, 8, 16, normalize="none", **SMALL)(x)
    assert not torch.allclose(raw.norm(dim=1), torch.full((3,), 4.0), atol=0.1)
    with pytest.raises(ValueError, match="normalize must be one of batch, whiten, example, none"):
        SemanticEncoder(1, 8, 16, normalize="layer", **SMALL)


def test_clip_denoised_keeps_every_predicted_image_in_range():
    torch.manual_seed(0)
    dec = UNetDiffusionDecoder(1, 8, 4, timesteps=100, **SMALL).eval()
    x, s, z = 5 * torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 50, 100]), torch.randn(4, 4)
    abar = dec.schedule.alphas_cumprod[s].view(-1, 1, 1, 1)
    with torch.no_grad():
        for clip, inside in ((True, True), (False, False)):
            eps = dec._model(z, clip)(x, s)
            x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
            assert bool((x0.abs() <= 1 + 1e-4).all()) is inside


def test_the_conv_decoders_term_is_the_gaussian_nll_of_its_sigma():
    torch.manual_seed(0)
    z, b = torch.randn(4, 4), batch()
    terms = {s: ConvDecoder(1, 8, 4, sigma=s, **SMALL) for s in (0.1, 0.5)}
    terms[0.5].load_state_dict(terms[0.1].state_dict())
    mse = (terms[0.1].mean(z) - b["image"]).square().flatten(1).mean(1)
    for sigma, dec in terms.items():
        torch.testing.assert_close(
            dec.loss(z, b, t=torch.ones(4, dtype=torch.long))["nll"], mse / (2 * sigma**2)
        )
    with pytest.raises(ValueError, match="sigma must be > 0"):
        ConvDecoder(1, 8, 4, sigma=0.0, **SMALL)
