"""The protein plugin through the core's contract suites (diled_core.testing): ReLSO (attention and
flatten pooling) and ESM-2 encoders, the conv decoder, the CSV and FASTA data modules, and every
predict task end to end through the protein writers and metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diled_core import DiLED, RegressionHead, SkipMLP
from diled_core.testing import DataModuleContract, DecoderContract, EncoderContract, PredictContract
from diled_protein import ConvDecoder, CSVDataModule, ESM2Encoder, FastaDataModule, ReLSOEncoder

MAX_LENGTH = 20


class ProteinData:
    """A tiny CSV (60 sequences of 5-20 residues, property ``score``) written into the test's tmp_path;
    splits 42 / 6 / 12, batches of 4."""

    @pytest.fixture(autouse=True)
    def _write_data(self, tmp_path: Path, random_sequences) -> None:
        self.seqs = random_sequences(60, lo=5, hi=MAX_LENGTH, seed=7)
        self.csv = tmp_path / "seqs.csv"
        self.csv.write_text("sequence,score\n" + "".join(f"{s},{len(s) / 10}\n" for s in self.seqs))

    def make_datamodule(self) -> CSVDataModule:
        return CSVDataModule(
            str(self.csv), property_columns=["score"], max_length=MAX_LENGTH, test_fraction=0.2, batch_size=4
        )

    def make_batch(self) -> dict:
        dm = self.make_datamodule()
        train = dm.dataset("train")
        return dm.collate([train[i] for i in range(4)])


def small_relso(pooling: str = "attention", **block: object) -> ReLSOEncoder:
    return ReLSOEncoder(
        8,
        embed_dim=16,
        num_layers=1,
        num_heads=2,
        ff_dim=32,
        pooling=pooling,
        max_length=MAX_LENGTH,  # type: ignore[arg-type]
        **block,  # type: ignore[arg-type]
    )


class TestReLSOEncoderAttention(ProteinData, EncoderContract):
    def make_encoder(self):
        return small_relso("attention")


class TestReLSOEncoderAuthorsBlock(ProteinData, EncoderContract):
    def make_encoder(self):
        return small_relso("attention", activation="relu", norm_first=False, attention_dropout=0.0)


class TestReLSOEncoderFlatten(ProteinData, EncoderContract):
    def make_encoder(self):
        return small_relso("flatten")


class TestESM2Encoder(ProteinData, EncoderContract):
    def make_encoder(self):
        torch.manual_seed(0)
        return ESM2Encoder(8, num_layers=1, embed_dim=16, attention_heads=2)


class TestConvDecoder(ProteinData, DecoderContract):
    def make_decoder(self):
        return ConvDecoder(8, MAX_LENGTH, channels=16, num_layers=1)


class ProteinRecords:
    def example_records(self):  # the shortest and longest allowed, and every non-canonical residue
        return ["M", "ACDEFGHIKLMNPQRSTVWY", "XBZUOK", self.seqs[0]]


class TestCSVDataModule(ProteinData, ProteinRecords, DataModuleContract):
    pass


class TestFastaDataModule(ProteinData, ProteinRecords, DataModuleContract):
    def make_datamodule(self):
        fasta = self.csv.with_suffix(".fasta")
        fasta.write_text("".join(f">s{i} fitness={len(s)}\n{s}\n" for i, s in enumerate(self.seqs)))
        return FastaDataModule(str(fasta), property_keys=["fitness"], max_length=MAX_LENGTH, batch_size=4)


class TestProteinPredict(ProteinData, PredictContract):
    def make_model(self):
        torch.manual_seed(0)
        return DiLED(
            small_relso("flatten"),
            ConvDecoder(8, MAX_LENGTH, channels=16, num_layers=1),
            denoiser=lambda d: SkipMLP(d, width=32, depth=2),
            head=lambda d: RegressionHead(d, hidden=16),
            timesteps=100,
        )
