"""``make demo``: train a DiLED protein model on the modlAMP peptide set, then use it.

Runs ``diled fit`` on ``configs/protein/demo.yaml`` (bounded to a few minutes on CPU), then the predict
tasks (reconstruct, generate, encode, interpolate, optimise) into the run folder, logs the latent
picture to TensorBoard and prints where everything is with a short summary table.

    python -m diled_protein.demo [--config configs/protein/demo.yaml] [--root runs/demo] [fit overrides ...]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from diled_core.cli import main as diled

TASKS = {  # task -> extra predict options
    "reconstruct": [],
    "generate": ["--prediction.num_samples", "256"],
    "encode": [],
    "interpolate": ["--prediction.max_examples", "8", "--prediction.interpolation_points", "6"],
    "optimise": ["--prediction.max_examples", "64"],
}
SUMMARY = [  # (task, metric key, label)
    ("reconstruct", "token_accuracy", "held-out reconstruction token accuracy"),
    ("reconstruct", "exact_match", "held-out exact-match rate"),
    ("reconstruct", "perplexity", "reconstruction perplexity"),
    ("generate", "validity", "generated: valid"),
    ("generate", "uniqueness", "generated: unique"),
    ("generate", "novelty", "generated: novel (not in training set)"),
    ("generate", "diversity", "generated: mean pairwise edit distance"),
    ("encode", "spearman", "AMP-label prediction vs truth, Spearman"),
    ("optimise", "pred_before_mean", "optimise: predicted AMP score before"),
    ("optimise", "pred_after_mean", "optimise: predicted AMP score after"),
]


def _latest_run(root: Path) -> Path:
    runs = sorted(root.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not runs:
        raise FileNotFoundError(f"no run found under {root}/lightning_logs")
    return runs[-1]


def _log_latent_picture(run: Path, out: Path) -> None:
    """Add the latent PCA figure to the run's TensorBoard log (the first ``PCA_ROWS`` embeddings, as
    ``latent_pca.png``)."""
    from torch.utils.tensorboard import SummaryWriter

    from .plots import latent_figure
    from .predictions import PCA_ROWS

    mu = torch.from_numpy(np.array(np.load(out / "embeddings.npy", mmap_mode="r")[:PCA_ROWS]))
    with (out / "embeddings.csv").open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        column = header.index("property") if "property" in header else None
        prop = [row[column] for row in itertools.islice(reader, PCA_ROWS)] if column is not None else None
    values = torch.tensor([float(v) if v else float("nan") for v in prop]) if prop else None
    writer = SummaryWriter(str(run))
    writer.add_figure("latent/pca", latent_figure(mu, values))
    writer.close()


def run(config: Path, root: Path, overrides: list[str]) -> int:
    code = diled(["fit", "--config", str(config), "--trainer.default_root_dir", str(root), *overrides])
    if code:
        return code
    run_dir = _latest_run(root)
    ckpt, out = run_dir / "checkpoints" / "last.ckpt", run_dir / "predictions"
    for task, extra in TASKS.items():
        code = diled(
            [
                "predict",
                "--config",
                str(run_dir / "config.yaml"),
                "--ckpt_path",
                str(ckpt),
                "--prediction.task",
                task,
                "--prediction.output_dir",
                str(out),
                *extra,
            ]
        )
        if code:
            return code
    _log_latent_picture(run_dir, out)
    metrics = json.loads((out / "metrics.json").read_text())
    print("\nDiLED protein demo: done.")
    print(f"  run folder          {run_dir}")
    print(f"  checkpoint          {ckpt}")
    print(f"  TensorBoard logs    tensorboard --logdir {run_dir}")
    for name in ("reconstructions.fasta", "samples.fasta", "latent_pca.png", "metrics.json"):
        print(f"  {name:<19} {out / name}")
    print("\n  " + "metric".ljust(44) + "value")
    for task, key, label in SUMMARY:
        value = metrics.get(task, {}).get(key)
        if value is not None:
            print(f"  {label:<44}{value:.3f}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/protein/demo.yaml"))
    parser.add_argument("--root", type=Path, default=Path("runs/demo"))
    args, overrides = parser.parse_known_args(argv)
    if not args.config.is_file():
        print(
            f"demo: config {args.config} not found; run from the repository root or pass --config",
            file=sys.stderr,
        )
        return 2
    return run(args.config, args.root, overrides)


if __name__ == "__main__":
    sys.exit(cli())
