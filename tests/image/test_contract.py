"""The image plugin through the core's contract suites (diled_core.testing): the semantic encoder, the
conv and UNet diffusion decoders, the folder and synthetic data modules, and every predict task end to
end through the image writers and metrics (with a tiny stand-in for the FID network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diled_core import DiLED, SkipMLP
from diled_core.testing import DataModuleContract, DecoderContract, EncoderContract, PredictContract
from diled_image import (
    ConvDecoder,
    ImageFolderDataModule,
    SemanticEncoder,
    SyntheticImageDataModule,
    UNetDiffusionDecoder,
)

LATENT = 8
SMALL = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1)


def synthetic(**kwargs) -> SyntheticImageDataModule:
    return SyntheticImageDataModule(
        n_train=16, n_val=8, n_test=8, channels=3, image_size=16, batch_size=4, **kwargs
    )


def small_batch() -> dict:
    dm = synthetic()
    return dm.collate([dm.dataset("train")[i] for i in range(4)])


def uint8_records(channels: int, size: int, n: int = 3) -> list[torch.Tensor]:
    """Raw records of the Python API: random uint8 images ``[channels, size, size]``."""
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (channels, size, size), dtype=torch.uint8, generator=g) for _ in range(n)]


def same_images(got: list[torch.Tensor], expected: list[torch.Tensor]) -> bool:
    """uint8 images of the same shapes, equal up to one grey level (rounding)."""
    return len(got) == len(expected) and all(
        a.dtype == torch.uint8 and a.shape == b.shape and int((a.int() - b.int()).abs().max()) <= 1
        for a, b in zip(got, expected)
    )


def small_unet(timesteps: int = 1000, own: int = 50) -> UNetDiffusionDecoder:
    return UNetDiffusionDecoder(
        3, 16, LATENT, attention_resolutions=(8,), timesteps=own, latent_timesteps=timesteps, **SMALL
    )


class TestSemanticEncoder(EncoderContract):
    def make_encoder(self):
        return SemanticEncoder(3, 16, LATENT, **SMALL)

    def make_batch(self):
        return small_batch()


class TestConvDecoder(DecoderContract):
    def make_decoder(self):
        return ConvDecoder(3, 16, LATENT, **SMALL)

    def make_batch(self):
        return small_batch()


class TestUNetDiffusionDecoder(DecoderContract):
    timesteps = 100

    def make_decoder(self):
        torch.manual_seed(0)
        return small_unet(self.timesteps)

    def make_batch(self):
        return small_batch()


class TestSyntheticDataModule(DataModuleContract):
    def make_datamodule(self):
        return synthetic()

    def example_records(self):
        return uint8_records(3, 16)

    def same_records(self, got, expected):
        return same_images(got, expected)


class TestImageFolderDataModule(DataModuleContract):
    @pytest.fixture(autouse=True)
    def _folder(self, image_folder: Path) -> None:
        self.root = image_folder

    def make_datamodule(self):
        return ImageFolderDataModule(
            str(self.root), channels=3, image_size=16, val_fraction=0.2, test_fraction=0.25, batch_size=4
        )

    def example_records(self):
        return uint8_records(3, 16)

    def same_records(self, got, expected):
        return same_images(got, expected)


class TestImagePredictDiffusion(PredictContract):
    """The UNet diffusion decoder with its EMA weights; FID through a tiny stand-in network."""

    @pytest.fixture(autouse=True)
    def _weights(self, tiny_fid_weights: Path) -> None:
        self.fid_weights = str(tiny_fid_weights)

    def make_datamodule(self):
        # the transfer metric's classifier: a few steps on the 16 labelled training shapes
        return synthetic(
            fid_images=6,
            fid_weights=self.fid_weights,
            eval_classifier_steps=3,
            eval_classifier_split="train",
        )

    def make_model(self):
        torch.manual_seed(0)
        return DiLED(
            SemanticEncoder(3, 16, LATENT, **SMALL),
            small_unet(100, own=1000),  # the shipped pixel chain: at its small t, 1 − ᾱ is 0 in bf16
            denoiser=lambda d: SkipMLP(d, width=32, depth=2),
            timesteps=100,
            decoder_ema=True,
        )


class TestImagePredictConv(PredictContract):
    def make_datamodule(self):
        return synthetic()

    def make_model(self):
        torch.manual_seed(0)
        return DiLED(
            SemanticEncoder(3, 16, LATENT, **SMALL),
            ConvDecoder(3, 16, LATENT, **SMALL),
            denoiser=lambda d: SkipMLP(d, width=32, depth=2),
            timesteps=100,
        )
