"""The contract suites (see :mod:`diled_core.testing`)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor, nn

from ..contract import Batch, Decoder, Encoder
from ..data import DiledDataModule
from ..module import DiLED
from ..predict import TASKS, PredictionWriter, PredictOptions, num_rows, select_rows

__all__ = ["DataModuleContract", "DecoderContract", "EncoderContract", "PredictContract"]


def _check_param_groups(part: nn.Module) -> None:
    groups = part.param_groups()
    listed = [p for g in groups for p in g["params"]]
    trainable = [p for p in part.parameters() if p.requires_grad]
    assert len({id(p) for p in listed}) == len(listed), "a parameter is listed in two groups"
    assert {id(p) for p in listed} == {id(p) for p in trainable}, (
        "param_groups() must list every trainable parameter once and no frozen one"
    )
    external = tuple(part.external_state())
    for name, p in part.named_parameters():
        if name.startswith(external):
            assert not p.requires_grad, f"{name} is external (left out of checkpoints) but trainable"


def _assert_rows(batch: Batch, n: int, where: str) -> None:
    for key, value in batch.items():
        if isinstance(value, dict):
            _assert_rows(value, n, f"{where}.{key}")
        else:
            assert len(value) == n, f"{where}.{key} has {len(value)} rows, expected {n}"


class EncoderContract:
    """What every :class:`~diled_core.Encoder` must do. Implement :meth:`make_encoder` and
    :meth:`make_batch` (at least two different examples)."""

    def make_encoder(self) -> Encoder:
        raise NotImplementedError

    def make_batch(self) -> Batch:
        raise NotImplementedError

    def test_encoder_returns_a_finite_latent_per_example(self) -> None:
        encoder, batch = self.make_encoder(), self.make_batch()
        mu = encoder(batch)
        assert mu.shape == (num_rows(batch), encoder.latent_dim)
        assert torch.isfinite(mu).all()

    def test_different_examples_get_different_latents(self) -> None:
        encoder = self.make_encoder().eval()
        mu = encoder(self.make_batch())
        assert not torch.allclose(mu[0], mu[1]), "two different examples were encoded identically"

    def test_encoding_is_deterministic_in_eval_mode_and_per_example(self) -> None:
        encoder, batch = self.make_encoder().eval(), self.make_batch()
        with torch.no_grad():
            mu = encoder(batch)
            again = encoder(batch)
            alone = encoder(select_rows(batch, torch.tensor([1])))
        torch.testing.assert_close(mu, again)
        torch.testing.assert_close(alone[0], mu[1], atol=1e-5, rtol=1e-4)  # no leak across examples

    def test_gradients_reach_the_encoder(self) -> None:
        encoder = self.make_encoder()
        encoder(self.make_batch()).square().sum().backward()
        grads = [p.grad for p in encoder.parameters() if p.requires_grad and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)

    def test_param_groups_list_each_trainable_parameter_once(self) -> None:
        _check_param_groups(self.make_encoder())


class DecoderContract:
    """What every :class:`~diled_core.Decoder` must do. Implement :meth:`make_decoder` and
    :meth:`make_batch`; ``timesteps`` is the latent chain's T the shared ``t`` is drawn from."""

    timesteps = 1000

    def make_decoder(self) -> Decoder:
        raise NotImplementedError

    def make_batch(self) -> Batch:
        raise NotImplementedError

    def _z(self, decoder: Decoder, batch: Batch, seed: int = 0) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(num_rows(batch), decoder.latent_dim, generator=g)

    @pytest.mark.parametrize("t_value", ["1", "2", "T"])
    def test_loss_terms_are_finite_and_per_example(self, t_value: str) -> None:
        decoder, batch = self.make_decoder(), self.make_batch()
        n = num_rows(batch)
        t = torch.full((n,), {"1": 1, "2": 2, "T": self.timesteps}[t_value], dtype=torch.long)
        terms = decoder.loss(self._z(decoder, batch), batch, t=t, generator=torch.Generator().manual_seed(0))
        assert isinstance(terms, dict) and terms, "loss() must return a non-empty {name: [B]} dict"
        for name, value in terms.items():
            assert value.shape == (n,), f"term {name!r} has shape {tuple(value.shape)}, expected ({n},)"
            assert torch.isfinite(value).all(), f"term {name!r} is not finite"

    def test_loss_reaches_the_latent(self) -> None:
        decoder, batch = self.make_decoder(), self.make_batch()
        z = self._z(decoder, batch).requires_grad_(True)
        t = torch.full((num_rows(batch),), 2, dtype=torch.long)
        sum(v.sum() for v in decoder.loss(z, batch, t=t).values()).backward()
        assert z.grad is not None and z.grad.abs().sum() > 0, "the loss does not depend on the latent"

    def test_decode_gives_one_row_per_latent_with_and_without_the_batch(self) -> None:
        decoder, batch = self.make_decoder().eval(), self.make_batch()
        z = self._z(decoder, batch)
        with torch.no_grad():
            for out in (decoder.decode(z), decoder.decode(z, batch=batch)):
                assert isinstance(out, dict) and out
                _assert_rows(out, num_rows(batch), "decode()")

    def test_decode_is_reproducible_with_a_generator(self) -> None:
        decoder, batch = self.make_decoder().eval(), self.make_batch()
        z = self._z(decoder, batch)
        with torch.no_grad():
            a = decoder.decode(z, generator=torch.Generator().manual_seed(3))
            b = decoder.decode(z, generator=torch.Generator().manual_seed(3))
        for key, value in a.items():
            if isinstance(value, Tensor):
                torch.testing.assert_close(value, b[key])
            else:
                assert value == b[key]

    def test_decode_rejects_unknown_options(self) -> None:
        decoder, batch = self.make_decoder().eval(), self.make_batch()
        with pytest.raises(ValueError, match="no_such_option"):
            decoder.decode(self._z(decoder, batch), no_such_option=1)

    def test_param_groups_list_each_trainable_parameter_once(self) -> None:
        _check_param_groups(self.make_decoder())


class DataModuleContract:
    """What every :class:`~diled_core.DiledDataModule` must do. Implement :meth:`make_datamodule`
    (small data: every split non-empty); :meth:`example_records` (and, for lossy records such as
    images, :meth:`same_records`) tests ``batch_from_records`` / ``records_from_batch``."""

    def make_datamodule(self) -> DiledDataModule:
        raise NotImplementedError

    def example_records(self) -> list[Any] | None:
        """Two or more raw records of the modality (the Python API's input); ``None`` skips the test."""
        return None

    def same_records(self, got: list[Any], expected: list[Any]) -> bool:
        """Whether the records that came back equal those given (override for a tolerance)."""
        return got == expected

    @pytest.mark.parametrize("split", ["train", "val", "test"])
    def test_every_split_collates_into_batches(self, split: str) -> None:
        dm = self.make_datamodule()
        dm.setup("fit")
        loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
        batch = next(iter(loader))
        assert isinstance(batch, dict) and batch
        _assert_rows(batch, num_rows(batch), f"{split} batch")
        assert 0 < num_rows(batch) <= dm.batch_size

    @pytest.mark.parametrize("task", ["reconstruct", "generate", "encode", "interpolate"])
    def test_predict_loader_of_each_task(self, task: str) -> None:
        dm = self.make_datamodule()
        dm.setup("predict")
        dm.configure_prediction(task, num_samples=5, max_examples=4)
        batches = list(dm.predict_dataloader())
        rows = sum(num_rows(b) for b in batches)
        expected = 5 if task == "generate" else min(4, len(dm.dataset("test")))
        assert rows == expected
        if task == "interpolate":
            assert all(num_rows(b) % 2 == 0 for b in batches[:-1]), "interpolate pairs need even batches"

    def test_records_round_trip(self) -> None:
        records = self.example_records()
        if records is None:
            pytest.skip("example_records() gives no raw records for this datamodule")
        dm = self.make_datamodule()
        batch = dm.batch_from_records(records)
        assert isinstance(batch, dict) and batch
        _assert_rows(batch, len(records), "batch_from_records()")
        back = dm.records_from_batch(batch)
        assert len(back) == len(records), f"records_from_batch() gave {len(back)} records for {len(records)}"
        assert self.same_records(back, records), "records_from_batch(batch_from_records(r)) differs from r"

    def test_prediction_defaults_are_values_diled_predict_takes(self) -> None:
        options = PredictOptions().resolve(self.make_datamodule().prediction_defaults)
        assert options.interpolation_mode in ("slerp", "lerp"), options.interpolation_mode
        points = options.interpolation_points
        assert isinstance(points, int) and points >= 2, f"interpolation_points {points!r}: an int >= 2"

    def test_model_sizes_are_known_before_setup(self) -> None:
        dm = self.make_datamodule()
        args = {k: getattr(dm, k) for k in inspect.signature(type(dm)).parameters if hasattr(dm, k)}
        sizes = type(dm).model_sizes(**args)
        assert isinstance(sizes, dict)
        for key, value in sizes.items():
            assert isinstance(key, str) and value is not None, f"model_sizes()[{key!r}] is {value!r}"


class PredictContract:
    """Every predict task end to end through ``Trainer.predict``, the plugin's writers and metrics.

    Implement :meth:`make_datamodule` (batches small enough that each task takes at least two) and
    :meth:`make_model` (a tiny, possibly untrained :class:`~diled_core.DiLED` for that data)."""

    num_samples = 7
    max_examples = 6
    points = 3

    def make_datamodule(self) -> DiledDataModule:
        raise NotImplementedError

    def make_model(self) -> DiLED:
        raise NotImplementedError

    def expected_rows(self, task: str, dm: DiledDataModule) -> int:
        if task == "generate":
            return self.num_samples
        n = min(self.max_examples, len(dm.dataset("test")))
        return (n // 2) * self.points if task == "interpolate" else n

    @staticmethod
    def transfer_target(dm: DiledDataModule) -> int:
        """A class of the training data to transfer to; skips the test when the data has no class labels."""
        dm.setup("fit")
        labels = dm.attribute_labels(next(iter(dm.attribute_loader("train", 64))))
        if labels is None or not (labels >= 0).any():
            pytest.skip(f"{type(dm).__name__} batches carry no class labels: no attribute transfer")
        return int(labels[labels >= 0].min())

    @pytest.mark.parametrize("task", TASKS)
    def test_task_streams_records_and_metrics(self, task: str, tmp_path: Path) -> None:
        self._predict(task, tmp_path)

    @pytest.mark.parametrize("task", TASKS)
    def test_bf16_autocast_keeps_every_metric_finite(self, task: str, tmp_path: Path) -> None:
        """A metric finite in fp32 stays finite under ``bf16-mixed`` (a NaN output would make it null)."""
        fp32 = self._predict(task, tmp_path / "fp32")
        bf16 = self._predict(task, tmp_path / "bf16", precision="bf16-mixed")
        lost = sorted(k for k, v in fp32.items() if isinstance(v, (int, float)) and bf16.get(k) is None)
        assert not lost, f"{task}: finite in fp32, NaN (null) under bf16-mixed: {lost}"

    def _predict(self, task: str, tmp_path: Path, precision: str = "32-true") -> dict[str, Any]:
        """Run ``task`` through ``Trainer.predict`` into ``tmp_path``; check the records; the metrics."""
        dm, model = self.make_datamodule(), self.make_model()
        if task == "optimise" and model.head is None:
            pytest.skip("the model has no head")
        transfer_to = self.transfer_target(dm) if task == "transfer" else None
        options = PredictOptions(
            task=task,  # type: ignore[arg-type]
            output_dir=tmp_path,
            num_samples=self.num_samples,
            max_examples=self.max_examples,
            steps=3,
            interpolation_points=self.points,
            optimise_steps=2,
            transfer_to=transfer_to,
            transfer_fit_examples=64,
        )
        writer = PredictionWriter(options)
        model.predict_options = options
        dm.setup("predict")
        dm.configure_prediction(task, num_samples=self.num_samples, max_examples=self.max_examples)  # type: ignore
        assert len(dm.predict_dataloader()) >= 2, "make_datamodule: use a batch size that gives 2+ batches"
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            callbacks=[writer],
            enable_progress_bar=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            precision=precision,
        )
        trainer.predict(model, datamodule=dm, return_predictions=False)
        metrics: dict[str, Any] = json.loads((tmp_path / "metrics.json").read_text())[task]
        assert metrics["count"] == self.expected_rows(task, dm)
        assert writer.files and all(f.is_file() and f.stat().st_size > 0 for f in writer.files)
        assert not list(tmp_path.glob(".*")), "temporary files were left behind"
        return metrics
