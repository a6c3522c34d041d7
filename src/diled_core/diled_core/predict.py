"""Predict tasks (method.md §4) and the writer that turns their outputs into files.

``diled predict --prediction.task T`` runs one task over the datamodule's predict loader. Each task returns
a dict per batch (layout in docs/architecture.md); :class:`PredictionWriter` concatenates one rank's
outputs, asks the datamodule to write them as records (one file set per rank), and writes
``metrics.json`` on rank 0 from all ranks' outputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from .interfaces import Batch, PredictTask
from .io import atomic_write
from .samplers import Sampler

__all__ = ["PredictOptions", "PredictionWriter", "concat_outputs", "run_predict_task"]


@dataclass
class PredictOptions:
    """Options of ``diled predict`` (``--prediction.*``).

    Args:
        task: reconstruct (default) | generate | encode | interpolate | optimise.
        output_dir: folder for the records and ``metrics.json``.
        split: data split to reconstruct / encode / interpolate / optimise.
        max_examples: use at most this many examples of the split.
        num_samples: how many examples ``generate`` draws (split across ranks).
        sampler: ddim | ddpm (ancestral, T − 1 steps).
        steps: DDIM steps (also used by inversion and slerp interpolation).
        eta: DDIM η in [0, 1] (0: deterministic).
        interpolation_points: points per interpolation path (endpoints included).
        interpolation_mode: slerp (between DDIM-inverted x_T) | lerp (between μ).
        invert: encode also writes the DDIM-inverted code x_T.
        optimise_steps, optimise_lr, optimise_max_distance: gradient ascent of the head in μ space.
        seed: seed of the sampling noise (combined with rank and batch index).
    """

    task: PredictTask = "reconstruct"
    output_dir: Path = Path("predictions")
    split: Literal["train", "val", "test"] = "test"
    max_examples: int | None = None
    num_samples: int = 64
    sampler: Sampler = "ddim"
    steps: int = 50
    eta: float = 0.0
    interpolation_points: int = 8
    interpolation_mode: Literal["slerp", "lerp"] = "slerp"
    invert: bool = False
    optimise_steps: int = 100
    optimise_lr: float = 0.05
    optimise_max_distance: float | None = 1.0
    seed: int = 0


def _select(batch: Batch, idx: Tensor) -> Batch:
    out: Batch = {}
    for k, v in batch.items():
        out[k] = v[idx.to(v.device)] if isinstance(v, Tensor) else [v[i] for i in idx.tolist()]
    return out


def run_predict_task(model: Any, batch: Batch, opts: PredictOptions, generator: torch.Generator) -> Batch:
    """One batch of one predict task on a :class:`~diled_core.DiLED` model."""
    if opts.task == "generate":
        z = model.sample_latents(
            batch["index"].shape[0], opts.steps, opts.eta, opts.sampler, generator=generator
        )
        return {"output": model.decode(z, generator=generator), "latent": z, "index": batch["index"]}
    mu = model.encode(batch)
    if opts.task == "reconstruct":
        return {"input": batch, "output": model.decode(mu), "mu": mu, "nll": model.decoder.nll(mu, batch)}
    if opts.task == "encode":
        out = {"input": batch, "mu": mu}
        if model.head is not None:
            out["prediction"] = model.head(mu)
        if opts.invert:
            out["x_T"] = model.invert(mu, opts.steps)
        return out
    if opts.task == "interpolate":
        pairs = mu.shape[0] // 2
        ia, ib = torch.arange(0, 2 * pairs, 2), torch.arange(1, 2 * pairs, 2)
        n = opts.interpolation_points
        path = model.interpolate_latents(mu[ia], mu[ib], n, opts.interpolation_mode, opts.steps)
        return {
            "input_a": _select(batch, ia),
            "input_b": _select(batch, ib),
            "output": model.decode(path.flatten(0, 1)),
            "pair": torch.arange(pairs).repeat_interleave(n),
            "alpha": torch.linspace(0, 1, n).repeat(pairs),
        }
    if opts.task == "optimise":
        mu_opt = model.optimise(mu, opts.optimise_steps, opts.optimise_lr, opts.optimise_max_distance)
        return {
            "input": batch,
            "mu": mu,
            "mu_opt": mu_opt,
            "output": model.decode(mu_opt),
            "reconstruction": model.decode(mu),
            "pred_before": model.head(mu),
            "pred_after": model.head(mu_opt),
        }
    raise ValueError(
        f"unknown predict task {opts.task!r}; choose reconstruct, generate, encode, interpolate, optimise"
    )


def concat_outputs(parts: list[Batch]) -> Batch:
    """Concatenate per-batch outputs: tensors on dim 0, lists end to end, nested dicts recursively."""
    out: Batch = {}
    for key, first in parts[0].items():
        values = [p[key] for p in parts]
        if isinstance(first, dict):
            out[key] = concat_outputs(values)
        elif isinstance(first, Tensor):
            out[key] = torch.cat([v.reshape(-1) if v.ndim == 0 else v for v in values])
        else:
            out[key] = [x for v in values for x in v]
    return out


def _core_metrics(task: PredictTask, outputs: Batch) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if task == "reconstruct":
        metrics["nll_mean"] = outputs["nll"].float().mean().item()
    if task == "optimise":
        before, after = outputs["pred_before"].float(), outputs["pred_after"].float()
        metrics.update(
            pred_before_mean=before.mean().item(),
            pred_after_mean=after.mean().item(),
            improved_fraction=(after > before).float().mean().item(),
        )
    return metrics


class PredictionWriter(BasePredictionWriter):
    """Collects one rank's outputs, writes them through the datamodule, then ``metrics.json``."""

    def __init__(self, options: PredictOptions) -> None:
        super().__init__(write_interval="batch")
        self.options = options
        self._parts: list[Batch] = []
        self.files: list[Path] = []

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        self._parts.append(_to_cpu(prediction))

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        if not self._parts:
            return
        task, out_dir = self.options.task, Path(self.options.output_dir)
        outputs, self._parts = concat_outputs(self._parts), []
        self.files = trainer.datamodule.write_predictions(task, outputs, out_dir, trainer.global_rank)
        gathered = [outputs]
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, outputs)
        if trainer.global_rank == 0:
            merged = concat_outputs(gathered)
            metrics: dict[str, Any] = {"count": _count(merged)}
            metrics.update(_core_metrics(task, merged))
            metrics.update(trainer.datamodule.prediction_metrics(task, merged))
            _update_metrics_file(out_dir / "metrics.json", task, {**metrics, "options": asdict(self.options)})


def _update_metrics_file(path: Path, task: str, entry: dict[str, Any]) -> None:
    """``metrics.json`` holds one entry per task, so several tasks can share an output folder."""
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        data = {}
    data[task] = entry
    with atomic_write(path) as f:
        json.dump(data, f, indent=2, default=str)


def _to_cpu(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    return x


def _count(outputs: Batch) -> int:
    for v in outputs.values():
        if isinstance(v, Tensor):
            return int(v.shape[0])
        if isinstance(v, dict):
            return _count(v)
    return 0
