"""The toy modality through the core's contract suites (diled_core.testing), as every plugin is tested."""

from __future__ import annotations

import torch
from diled_core import DiLED, RegressionHead, SkipMLP
from diled_core.testing import DataModuleContract, DecoderContract, EncoderContract, PredictContract
from diled_core.toy import ToyDataModule, ToyDecoder, ToyDiffusionDecoder, ToyEncoder


def small_data() -> ToyDataModule:
    return ToyDataModule(n_train=64, n_val=16, n_test=16, batch_size=4)


def toy_batch():
    dm = small_data()
    return dm.collate([dm.dataset("train")[i] for i in range(4)])


class TestToyEncoder(EncoderContract):
    def make_encoder(self):
        return ToyEncoder(latent_dim=4, hidden=32)

    def make_batch(self):
        return toy_batch()


class TestToyDecoder(DecoderContract):
    def make_decoder(self):
        return ToyDecoder(latent_dim=4, hidden=32)

    def make_batch(self):
        return toy_batch()


class TestToyDiffusionDecoder(DecoderContract):
    def make_decoder(self):
        return ToyDiffusionDecoder(latent_dim=4, hidden=32, timesteps=20, latent_timesteps=self.timesteps)

    def make_batch(self):
        return toy_batch()


class TestToyDataModule(DataModuleContract):
    def make_datamodule(self):
        return small_data()

    def example_records(self):
        return [[0.5 * i - j for i in range(8)] for j in range(3)]  # exact in float32


class TestToyPredict(PredictContract):
    def make_datamodule(self):
        return small_data()

    def make_model(self):
        torch.manual_seed(0)
        return DiLED(
            ToyEncoder(latent_dim=4, hidden=32),
            ToyDecoder(latent_dim=4, hidden=32),
            denoiser=lambda d: SkipMLP(d, width=32, depth=2),
            head=lambda d: RegressionHead(d),
            timesteps=100,
        )


class TestToyDiffusionDecoderPredict(TestToyPredict):
    def make_model(self):
        torch.manual_seed(0)
        return DiLED(
            ToyEncoder(latent_dim=4, hidden=32),
            ToyDiffusionDecoder(latent_dim=4, hidden=32, timesteps=20, latent_timesteps=100),
            denoiser=lambda d: SkipMLP(d, width=32, depth=2),
            timesteps=100,
            decoder_ema=True,
        )
