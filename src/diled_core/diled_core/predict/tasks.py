"""Predict tasks (method.md §4): one batch in, one output dict out.

Each task returns a dict whose tensors and lists all have the same leading size, the task's rows
(docs/architecture.md lists the keys); nested dicts hold decoded or input batches. The
:class:`~diled_core.predict.callback.PredictionWriter` hands each output once to the writers and the
metrics, so nothing is held across batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..contract import Batch
from ..interpolation import slerp
from .options import PredictOptions

__all__ = ["TASKS", "num_rows", "run_predict_task", "select_rows"]

TASKS = ("reconstruct", "generate", "encode", "interpolate", "optimise", "transfer")


def select_rows(batch: Batch, idx: Tensor) -> Batch:
    """Rows ``idx`` of every tensor, list and nested dict in ``batch``."""
    out: Batch = {}
    for k, v in batch.items():
        if isinstance(v, Tensor):
            out[k] = v[idx.to(v.device)]
        elif isinstance(v, dict):
            out[k] = select_rows(v, idx)
        else:
            out[k] = [v[i] for i in idx.tolist()]
    return out


def _repeat_rows(batch: Batch, n: int) -> Batch:
    return select_rows(batch, torch.arange(num_rows(batch)).repeat_interleave(n))


def num_rows(outputs: Batch) -> int:
    """The leading size shared by everything in ``outputs``."""
    for value in outputs.values():
        return num_rows(value) if isinstance(value, dict) else len(value)
    return 0


def _interpolate(model: Any, batch: Batch, mu: Tensor, opts: PredictOptions, generator) -> Batch:
    pairs, n = mu.shape[0] // 2, opts.interpolation_points
    ia, ib = torch.arange(0, 2 * pairs, 2), torch.arange(1, 2 * pairs, 2)
    path = model.interpolate_latents(mu[ia], mu[ib], n, opts.interpolation_mode, opts.steps)
    options = dict(opts.decode)
    decoder = model.sampling_decoder()  # the EMA weights when the model keeps them
    if decoder.can_invert:  # e.g. a pixel-diffusion decoder: slerp its inverted noise too
        inv = decoder.invert(batch, mu, **opts.decode)
        alpha = torch.linspace(0, 1, n, device=inv.device)
        options["inverted"] = slerp(inv[ia].flatten(1), inv[ib].flatten(1), alpha).reshape(-1, *inv.shape[1:])
    return {
        "pair": torch.arange(pairs).repeat_interleave(n),
        "alpha": torch.linspace(0, 1, n).repeat(pairs),
        "input_a": _repeat_rows(select_rows(batch, ia), n),
        "input_b": _repeat_rows(select_rows(batch, ib), n),
        "output": model.decode(path.flatten(0, 1), generator=generator, **options),
    }


def run_predict_task(model: Any, batch: Batch, opts: PredictOptions, generator: torch.Generator) -> Batch:
    """One batch of one predict task on a :class:`~diled_core.DiLED` model."""
    if opts.task == "generate":
        z = model.sample_latents(len(batch["index"]), opts.steps, opts.eta, opts.sampler, generator=generator)
        return {
            "index": batch["index"],
            "latent": z,
            "output": model.decode(z, generator=generator, **opts.decode),
        }
    mu = model.encode(batch)
    if opts.task == "reconstruct":
        losses = model.decoder_losses(mu, batch, generator=generator)
        out = model.decode(mu, batch=batch, generator=generator, **opts.decode)
        return {"input": batch, "output": out, "mu": mu, "loss": losses}
    if opts.task == "encode":
        out = {"input": batch, "mu": mu}
        if model.head is not None:
            out["prediction"] = model.head(mu)
        if opts.invert:
            out["x_T"] = model.invert(mu, opts.steps)
        return out
    if opts.task == "interpolate":
        return _interpolate(model, batch, mu, opts, generator)
    if opts.task == "optimise":
        mu_opt = model.optimise(mu, opts.optimise_steps, opts.optimise_lr, opts.optimise_max_distance)
        return {
            "input": batch,
            "mu": mu,
            "mu_opt": mu_opt,
            "output": model.decode(mu_opt, generator=generator, **opts.decode),
            "reconstruction": model.decode(mu, batch=batch, generator=generator, **opts.decode),
            "pred_before": model.head(mu),
            "pred_after": model.head(mu_opt),
        }
    if opts.task == "transfer":
        attributes, labels_of = model.predict_attributes
        labels = labels_of(batch).to(mu.device)
        target, z = model.transfer(
            mu,
            labels,
            attributes,
            to=opts.transfer_to,
            method=opts.transfer_method,
            scale=opts.transfer_scale,
            steps=opts.steps,
        )
        out = model.decode(z, generator=generator, **opts.decode)
        return {"input": batch, "label": labels, "target": target, "mu": mu, "latent": z, "output": out}
    raise ValueError(f"unknown predict task {opts.task!r}; choose one of {', '.join(TASKS)}")
