"""Has the latent diffusion learned the latents it must generate? One figure per trained run, any modality.

``latent FD``: the Fréchet distance between n generated x_1 (the model's DDIM, its EMA denoiser) and
q(x_1 | μ) of n held-out examples, in the latent space itself (no feature network, so it costs seconds).
``floor``: the same distance between n training and n held-out latents, what a perfect sampler would
score at this n. ``spread``: tr Cov(generated) / tr Cov(held-out), above 1 when the samples are too
spread out. Generation quality in data space (FID, MAUVE) also depends on the decoder; this figure does
not, so it tells which part of a run to blame for poor samples.

    python benchmarks/latent_fd.py RUN [RUN ...] [--n 2000] [--split test] [--out results.json]

``RUN``: a run folder (``lightning_logs/version_N``, with ``config.yaml`` and ``checkpoints/last.ckpt``)
or a checkpoint inside one. Data come from the run's own config, so its data must be where it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build, machine_info, table  # noqa: E402


def run_files(run: str) -> tuple[Path, Path]:
    """(config.yaml, checkpoint) of a run folder or of a checkpoint in its ``checkpoints/``."""
    path = Path(run)
    ckpt = path if path.is_file() else path / "checkpoints" / "last.ckpt"
    config = ckpt.parent.parent / "config.yaml"
    for needed in (ckpt, config):
        if not needed.is_file():
            raise SystemExit(f"latent_fd: {needed} not found; give a run folder (lightning_logs/version_N)")
    return config, ckpt


def latents(model: Any, loader: Iterator, n: int) -> torch.Tensor:
    """μ of the first ``n`` examples of ``loader``."""
    out: list[torch.Tensor] = []
    for batch in loader:
        out.append(model.encode(batch).cpu())
        if sum(len(o) for o in out) >= n:
            return torch.cat(out)[:n]
    raise SystemExit(f"latent_fd: the data has {sum(len(o) for o in out)} examples, fewer than --n {n}")


@torch.no_grad()
def score(run: str, n: int, split: str, device: str, seed: int = 0) -> dict[str, Any]:
    from diled_core import DiLED
    from diled_core.monitoring import latent_fd

    config, ckpt = run_files(run)
    _, datamodule, _ = build(config)
    model = DiLED.load_from_checkpoint(ckpt, map_location=device, weights_only=True).eval()
    if model.training_mode == "autoencoder":
        return {"run": str(ckpt), "training": "autoencoder", "note": "no latent diffusion"}
    datamodule.setup("fit")  # the training and validation splits
    if split == "test":
        datamodule.setup("test")
    held_out = latents(model, iter(getattr(datamodule, f"{split}_dataloader")()), n)
    train = latents(model, iter(datamodule.train_dataloader()), n)
    g = torch.Generator(device).manual_seed(seed)
    scale = model.schedule.sqrt_alphas_cumprod[1].item()
    noise = (1 - scale**2) ** 0.5

    def q(mu: torch.Tensor) -> torch.Tensor:  # x_1 ~ q(x_1 | μ)
        return scale * mu + noise * torch.randn(mu.shape, generator=g, device=device).cpu()

    sampled = torch.cat([model.sample_latents(min(500, n - i), generator=g).cpu() for i in range(0, n, 500)])
    real = q(held_out)
    return {
        "run": str(ckpt),
        "training": model.training_mode,
        "step": int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["global_step"]),
        "n": n,
        "latent_fd": round(latent_fd(sampled, real), 3),
        "floor": round(latent_fd(q(train), real), 3),
        "spread": round(float(torch.cov(sampled.T.double()).trace() / torch.cov(real.T.double()).trace()), 3),
        "sample_steps": model.sample_steps,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders (lightning_logs/version_N) or checkpoints")
    parser.add_argument("--n", type=int, default=2000, help="latents per side")
    parser.add_argument("--split", choices=["test", "val"], default="test", help="the held-out examples")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    rows = [score(run, args.n, args.split, args.device) for run in args.runs]
    header = ["run", "training", "step", f"latent FD (n = {args.n})", "floor", "spread"]
    keys = ["run", "training", "step", "latent_fd", "floor", "spread"]
    print(table(header, [[row.get(k, "") for k in keys] for row in rows]))
    if args.out:
        record = {"machine": machine_info(), "args": vars(args) | {"out": str(args.out)}, "runs": rows}
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
