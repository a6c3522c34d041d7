"""The text plugin through the core's contract suites (diled_core.testing): the HF encoder, the
causal-LM decoder with Optimus and prefix injection, the data modules, and every predict task end to
end through the text writers and metrics."""

from __future__ import annotations

import pytest
import torch
from diled_core import DiLED, RegressionHead, SkipMLP
from diled_core.testing import DataModuleContract, DecoderContract, EncoderContract, PredictContract
from diled_text import CausalLMDecoder, HFEncoder, TextDataModule, TinyTextDataModule

LATENT = 8


class TinyData:
    """60 template sentences: splits 48 / 6 / 6, batches of 4; a tiny stand-in reference LM."""

    @pytest.fixture(autouse=True)
    def _models(self, tiny_bert, tiny_gpt2, tiny_reference_lm) -> None:
        self.bert, self.gpt2, self.reference_lm = tiny_bert, tiny_gpt2, tiny_reference_lm

    def make_datamodule(self) -> TinyTextDataModule:
        return TinyTextDataModule(60, batch_size=4, reference_lm=self.reference_lm, eval_samples=8)

    def example_records(self) -> list[str]:
        """Sentences the uncased MiniLM tokenizer gives back as they are (lower case, no space before
        the full stop)."""
        return ["the food was great.", "i did not like this movie at all!", "ok"]

    def make_batch(self) -> dict:
        dm = self.make_datamodule()
        return dm.collate([dm.dataset("train")[i] for i in range(4)])

    def encoder(self) -> HFEncoder:
        torch.manual_seed(0)
        return HFEncoder(LATENT, config=self.bert)

    def decoder(self, **kwargs) -> CausalLMDecoder:
        torch.manual_seed(0)
        return CausalLMDecoder(LATENT, config=self.gpt2, **kwargs)


class TestHFEncoder(TinyData, EncoderContract):
    def make_encoder(self):
        return self.encoder()


class TestHFEncoderFrozenEmbeddings(TinyData, EncoderContract):
    def make_encoder(self):
        torch.manual_seed(0)
        return HFEncoder(LATENT, config=self.bert, freeze="embeddings", lr=1e-4)


class TestOptimusDecoder(TinyData, DecoderContract):
    def make_decoder(self):
        return self.decoder()


class TestOptimusDecoderPaperFreeze(TinyData, DecoderContract):
    def make_decoder(self):
        return self.decoder(freeze="paper", lr=1e-4)


class TestPrefixDecoder(TinyData, DecoderContract):
    def make_decoder(self):
        return self.decoder(injection="prefix", prefix_slots=2)


class TestTinyTextDataModule(TinyData, DataModuleContract):
    pass


class TestCSVTextDataModule(TinyData, DataModuleContract):
    @pytest.fixture(autouse=True)
    def _file(self, write) -> None:
        rows = "".join(f'{i},"sentence number {i}, with a comma",{i % 2}\n' for i in range(30))
        self.csv = write("s.csv", "id,text,label\n" + rows)

    def make_datamodule(self):
        return TextDataModule(
            str(self.csv), label_column="label", id_column="id", batch_size=4, reference_lm=None
        )


class TestTextPredict(TinyData, PredictContract):
    def make_model(self):
        torch.manual_seed(0)
        return DiLED(
            self.encoder(),
            self.decoder(),
            denoiser=lambda d: SkipMLP(d, width=32, depth=2),
            head=lambda d: RegressionHead(d, hidden=16, target="label"),
            timesteps=100,
        )
