"""Generation: time and quality of sampling + decoding at the paper's protein size (issue: benchmarks).

1. Time to generate ``--samples`` (1,000) samples, latent sampling + decoding, with DDPM (T - 1 steps)
   and DDIM-100/50/20/10 (η = 0), in fp32 and under bf16 autocast (where the CPU or GPU has bf16
   kernels; the table says when it has not), interleaved over ``--repeats``; each row carries the
   modality's generation metrics (the datamodule's ``prediction_metrics("generate")`` on the decoded
   samples; metric updates are not timed).
2. diled's latent samplers against diffusers' ``DDPMScheduler`` / ``DDIMScheduler`` driving the same
   denoiser from the same x_T (and, for DDPM, the same noise stream), given the same ᾱ at the same grid
   points: diffusers' training timestep i stands for diled's i-th grid point (DDPM: t = i + 1, so
   index 0 is ᾱ_1 and the chain ends at x_1; DDIM: the DDIM grid itself, ``[1] + ddim_timesteps``
   ascending, with one inference step per grid point). Reported: the time ratio diled / diffusers
   (interleaved, paired repeats) and max |Δ| / RMS of the samples (target <= 1e-4). diffusers is a
   benchmark-only dependency (``pip install diffusers``); without it this part is skipped.

The model: ``configs/protein/paper_gifford.yaml`` (20 × 2048 denoiser; ``gifford.yaml`` when it is
absent), trained here for ``--fit-steps`` optimizer steps, or a trained checkpoint given by ``--ckpt``.
After a short fit the metrics only prove the pipeline; quality figures need ``--ckpt``. When the
denoiser is still near its zero-initialised output (ε̂ RMS < 0.05), the diffusers comparison uses a copy
whose output layer is re-initialised, so that the two samplers are compared on a non-trivial ε̂.

    python benchmarks/generation.py [--quick] [--ckpt RUN/checkpoints/last.ckpt] [--fit-steps 200]

The full run (1,000 samples; DDPM is 999 passes of a 79.6M-parameter network over the whole batch) takes
about half an hour on two CPU cores (29 minutes on 2026-11-27); ``--quick`` (32 samples, DDIM-20/10) a
few minutes.

Prints two tables and writes ``benchmarks/results/generation.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    build,
    cpu_supports_bf16,
    fmt,
    interleave,
    quiet_trainer,
    ratio_summary,
    skip,
    start_run,
    summary,
    table,
    write_results,
)

PAPER = "configs/protein/paper_gifford.yaml"
FALLBACK = "configs/protein/gifford.yaml"
SAMPLERS = ["ddpm", "ddim-100", "ddim-50", "ddim-20", "ddim-10"]


# ------------------------------------------------------------------------------ the model
def load_model(args: argparse.Namespace) -> tuple[Any, Any, dict]:
    """(model in eval mode, its datamodule set up for ``fit``, where the weights come from)."""
    model, dm, opts = build(args.config)
    dm.setup("fit")
    if args.ckpt:
        from diled_core import DiLED

        model = DiLED.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True)
        source = {"weights": "checkpoint", "ckpt": str(args.ckpt)}
    else:
        if args.fit_steps > 0:
            quiet_trainer(args.fit_steps, **opts).fit(model, datamodule=dm)
        source = {"weights": f"fitted here for {args.fit_steps} optimizer steps (metrics only prove the run)"}
    return model.eval(), dm, source


def autocast(model: Any, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(model.device.type, dtype=torch.bfloat16)


def sampler_kw(name: str) -> dict:
    return {"sampler": "ddpm"} if name == "ddpm" else {"sampler": "ddim", "steps": int(name.split("-")[1])}


# ------------------------------------------------------------------------------ 1. generation
def generate(model: Any, n: int, batch: int, name: str, precision: str, seed: int) -> list[tuple]:
    """``n`` samples in batches of ``batch``: [(latents, decoded batch)], seeded like ``diled predict``."""
    out = []
    generator = torch.Generator(model.device).manual_seed(seed)
    with autocast(model, precision):
        for start in range(0, n, batch):
            k = min(batch, n - start)
            z = model.sample_latents(k, eta=0.0, generator=generator, **sampler_kw(name))
            out.append((z, model.decode(z, generator=generator)))
    return out


def generation_metrics(dm: Any, chunks: list[tuple], n: int) -> dict[str, float]:
    metrics = dm.prediction_metrics("generate")
    index = torch.arange(n)
    start = 0
    for z, decoded in chunks:
        rows = {"index": index[start : start + len(z)], "latent": z.float(), "output": decoded}
        for metric in metrics:
            metric.update(rows)
        start += len(z)
    values: dict[str, float] = {"count": float(n)}
    for metric in metrics:
        values.update(metric.compute())
    return values


def generation_rows(model: Any, dm: Any, args: argparse.Namespace, precisions: list[str]) -> list[dict]:
    runs: dict[str, Callable[[], Any]] = {}
    last: dict[str, list[tuple]] = {}
    for name in args.samplers:
        for precision in precisions:
            key = f"{name}/{precision}"

            def run(name=name, precision=precision, key=key) -> None:
                last[key] = generate(model, args.samples, args.batch, name, precision, args.seed)

            runs[key] = run
    for precision in precisions:  # warm each precision's kernels up
        with autocast(model, precision):
            model.sample_latents(2, steps=2, sampler="ddim")
    times = interleave(runs, args.repeats, warmup=0)
    rows = []
    for key, seconds in times.items():
        name, precision = key.split("/")
        s = summary(seconds)
        rows.append(
            {
                "sampler": "ddpm-" + str(model.schedule.timesteps - 1) if name == "ddpm" else name,
                "precision": precision,
                "samples": args.samples,
                "seconds": s,
                "samples_per_s": args.samples / s["median"],
                "metrics": generation_metrics(dm, last[key], args.samples),
            }
        )
    return rows


# ------------------------------------------------------------------------------ 2. against diffusers
def diffusers_sample(
    eps: Callable, schedule: Any, x: Tensor, name: str, generator: torch.Generator
) -> Tensor:
    """The latent chain x_T -> x_1 with diffusers' scheduler ``step``, given diled's ᾱ at the grid points."""
    from diffusers import DDIMScheduler, DDPMScheduler
    from diled_core.samplers import ddim_timesteps

    T = schedule.timesteps
    grid = (
        list(range(1, T + 1)) if name == "ddpm" else [1] + ddim_timesteps(T, sampler_kw(name)["steps"])[::-1]
    )
    abar = schedule.alphas_cumprod.double()[grid]
    betas = 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
    cls = DDPMScheduler if name == "ddpm" else DDIMScheduler
    scheduler = cls(num_train_timesteps=len(grid), trained_betas=betas.tolist(), clip_sample=False)
    scheduler.alphas_cumprod = abar.float()  # exactly diled's ᾱ (not re-accumulated in float32)
    kw: dict[str, Any] = {"generator": generator}
    if name != "ddpm":
        scheduler.set_timesteps(len(grid))  # one inference step per grid point: prev(i) = i - 1
        kw = {"eta": 0.0}
    for i in range(len(grid) - 1, 0, -1):
        t = torch.full((x.shape[0],), grid[i], dtype=torch.long, device=x.device)
        x = scheduler.step(eps(x, t), i, x, **kw).prev_sample
    return x


def comparison_denoiser(model: Any) -> tuple[nn.Module, str]:
    denoiser = model.sampling_denoiser()
    x = torch.randn(64, model.encoder.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        rms = denoiser(x, torch.ones(64)).pow(2).mean().sqrt().item()
    if rms >= 0.05:
        return denoiser, f"the model's sampling (EMA) denoiser, ε̂ RMS {rms:.3f}"
    denoiser = copy.deepcopy(denoiser)
    torch.manual_seed(0)
    [m for m in denoiser.modules() if isinstance(m, nn.Linear)][-1].reset_parameters()
    return (
        denoiser,
        f"a copy of the sampling denoiser with its output layer re-initialised (ε̂ RMS was {rms:.2g})",
    )


def compare_rows(model: Any, args: argparse.Namespace) -> tuple[list[dict], str]:
    from diled_core.samplers import ddim_sample, ddpm_sample

    denoiser, which = comparison_denoiser(model)
    T, schedule = model.schedule.timesteps, model.schedule

    def eps(x: Tensor, t: Tensor) -> Tensor:
        return denoiser(x, t.to(x.dtype) / T)

    x_T = torch.randn(
        args.compare_samples, model.encoder.latent_dim, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():  # warm both paths up once (a DDPM comparison has no warm-up round of its own)
        ddim_sample(eps, schedule, x_T, steps=10)
        diffusers_sample(eps, schedule, x_T, "ddim-10", torch.Generator())
    rows = []
    for name in args.compare:
        out: dict[str, Tensor] = {}

        def ours(name=name) -> None:
            g = torch.Generator().manual_seed(1)
            if name == "ddpm":
                out["diled"] = ddpm_sample(eps, schedule, x_T, generator=g)
            else:
                out["diled"] = ddim_sample(eps, schedule, x_T, steps=sampler_kw(name)["steps"], eta=0.0)

        def theirs(name=name) -> None:
            with torch.no_grad():
                out["diffusers"] = diffusers_sample(
                    eps, schedule, x_T, name, torch.Generator().manual_seed(1)
                )

        warmup = 0 if name == "ddpm" else 1  # DDPM: 999 steps per call, warmed up above
        times = interleave({"diled": ours, "diffusers": theirs}, args.compare_repeats, warmup=warmup)
        diff = (out["diled"] - out["diffusers"]).abs().max().item()
        scale = out["diffusers"].pow(2).mean().sqrt().item()
        rows.append(
            {
                "sampler": "ddpm-" + str(T - 1) if name == "ddpm" else name,
                "samples": args.compare_samples,
                "diled_s": summary(times["diled"]),
                "diffusers_s": summary(times["diffusers"]),
                "time_ratio_diled_over_diffusers": ratio_summary(times["diled"], times["diffusers"]),
                "max_abs_diff": diff,
                "sample_rms": scale,
                "relative_diff": diff / scale,
                "same_samples": diff / scale <= 1e-4,
            }
        )
    return rows, which


# ------------------------------------------------------------------------------ report
def report(results: dict) -> str:
    """The generation table, the diffusers comparison table (when it ran) and the notes of ``results``."""
    parts = []
    if results["generation"]:
        parts.append(
            table(
                [
                    "sampler",
                    "precision",
                    "samples",
                    "seconds median [min-max]",
                    "samples/s",
                    "validity",
                    "uniqueness",
                    "novelty",
                    "diversity",
                ],
                [
                    [r["sampler"], r["precision"], r["samples"], fmt(r["seconds"])]
                    + [f"{r['samples_per_s']:.1f}"]
                    + [
                        f"{r['metrics'].get(k, float('nan')):.3f}"
                        for k in ("validity", "uniqueness", "novelty", "diversity")
                    ]
                    for r in results["generation"]
                ],
            )
        )
    if results["diffusers"]:
        parts.append(
            table(
                ["sampler", "samples", "diled s", "diffusers s"]
                + ["time diled/diffusers", "max|Δ|/RMS", "same"],
                [
                    [
                        r["sampler"],
                        r["samples"],
                        fmt(r["diled_s"], digits=3),
                        fmt(r["diffusers_s"], digits=3),
                        fmt(r["time_ratio_diled_over_diffusers"]),
                        f"{r['relative_diff']:.1e}",
                        r["same_samples"],
                    ]
                    for r in results["diffusers"]
                ],
            )
        )
    parts += [f"note: {note}" for note in results["notes"]]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 samples, DDIM-20/10, a 2-step fit")
    parser.add_argument(
        "--config", default=None, help="default: the config.yaml beside --ckpt, or the paper's"
    )
    parser.add_argument("--ckpt", type=Path, default=None, help="a trained checkpoint of --config's model")
    parser.add_argument("--fit-steps", type=int, default=200, help="without --ckpt: steps to train here")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=None, help="samples per batch (default: all)")
    parser.add_argument("--samplers", nargs="+", default=SAMPLERS, choices=SAMPLERS)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compare", nargs="*", default=["ddpm", "ddim-50", "ddim-10"], choices=SAMPLERS)
    parser.add_argument(
        "--compare-samples", type=int, default=32, help="one batch (small: per-step overhead shows more)"
    )
    parser.add_argument("--compare-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.samplers, args.fit_steps = 32, ["ddim-20", "ddim-10"], min(args.fit_steps, 2)
        args.compare, args.compare_samples, args.compare_repeats = ["ddim-10"], 8, 2
    args.batch = args.batch or args.samples
    beside = args.ckpt.resolve().parents[1] / "config.yaml" if args.ckpt else None
    if args.config is None:
        args.config = (
            str(beside) if beside and beside.is_file() else PAPER if (REPO / PAPER).is_file() else FALLBACK
        )
    os.chdir(REPO)  # configs name data relative to the repository root
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    run = start_run(args)
    print(f"config {args.config}", flush=True)

    from diled_core import DataError

    try:
        model, dm, source = load_model(args)
    except DataError as err:  # e.g. ../shared/data absent on this machine: no traceback, no results written
        reason = f"{args.config}'s data cannot be read: {err}"
        return skip("generation", reason, lambda last: f"config {last['config']}\n{report(last)}")
    bf16 = cpu_supports_bf16() if model.device.type == "cpu" else torch.cuda.is_bf16_supported()
    precisions = [p for p in args.precisions if p == "fp32" or bf16]
    notes = (
        [] if bf16 or "bf16" not in args.precisions else ["bf16: this machine has no bf16 kernels, skipped"]
    )
    rows = generation_rows(model, dm, args, precisions)
    print(report({"generation": rows, "diffusers": [], "notes": []}), flush=True)
    try:
        import diffusers
    except ImportError:
        compare: list[dict] = []
        notes.append("diffusers is not installed (pip install diffusers): the sampler comparison is skipped")
    else:
        compare, which = compare_rows(model, args)
        notes.append(f"diffusers {diffusers.__version__}; denoiser: {which}")
        print("\n" + report({"generation": [], "diffusers": compare, "notes": []}))
    print("\n".join(f"note: {note}" for note in notes))
    write_results(
        "generation",
        run,
        {"config": args.config, "model": source, "generation": rows, "diffusers": compare, "notes": notes},
    )


if __name__ == "__main__":
    main()
