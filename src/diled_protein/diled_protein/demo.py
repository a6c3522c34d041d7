"""``make demo``: train a DiLED protein model on the modlAMP peptide set, then use it.

Runs ``diled fit`` on ``configs/protein/demo.yaml`` (a fixed number of steps, so every machine trains the
same model; about 5 minutes on 2 CPU cores), then the predict tasks (reconstruct, generate, encode,
interpolate, optimise) into the run folder, logs the latent picture to TensorBoard and prints where
everything is with a short summary table. Next to each generation metric the table shows the same
metric on as many real held-out (test split) peptides, so the generated values can be judged.

    python -m diled_protein.demo [--config configs/protein/demo.yaml] [--root runs/demo] [fit overrides ...]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import itertools
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from diled_core.cli import main as diled

from .datamodule import ProteinDataModule
from .metrics import generation_metrics

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
    ("generate", "novelty_median_min_edit_distance", "generated: median edit distance to training"),
    ("generate", "diversity", "generated: mean pairwise edit distance"),
    ("generate", "length_mean", "generated: mean length"),
    ("generate", "length_std", "generated: length standard deviation"),
    ("generate", "composition_distance", "generated: amino-acid composition vs training"),
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


def heldout_metrics(run_config: Path, count: int, seed: int = 0) -> tuple[dict[str, float], int]:
    """The generation metrics of ``count`` real peptides of the run's test split (drawn with ``seed``;
    all of them if there are fewer), against its training split, and how many were used."""
    spec = yaml.safe_load(run_config.read_text())["data"]
    module, _, name = spec["class_path"].rpartition(".")
    data: ProteinDataModule = getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))
    test = data.dataset("test").sequences
    real = random.Random(seed).sample(test, min(count, len(test)))
    return generation_metrics(real, data.train_sequences()), len(real)


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
    real, n_real = heldout_metrics(run_dir / "config.yaml", int(metrics["generate"]["count"]))
    print("\nDiLED protein demo: done.")
    print(f"  run folder          {run_dir}")
    print(f"  checkpoint          {ckpt}")
    print(f"  TensorBoard logs    tensorboard --logdir {run_dir}")
    for name in ("reconstructions.fasta", "samples.fasta", "latent_pca.png", "metrics.json"):
        print(f"  {name:<19} {out / name}")
    print("\n  " + "metric".ljust(48) + "value".rjust(9) + "held-out real".rjust(15))
    for task, key, label in SUMMARY:
        value = metrics.get(task, {}).get(key)
        if value is not None:
            reference = f"{real[key]:15.3f}" if task == "generate" else ""
            print(f"  {label:<48}{value:9.3f}{reference}")
    print(
        f"\n  held-out real: the same metrics on {n_real} real test-split peptides, never seen in training;"
    )
    print("  samples like the data come close to them. Composition: total variation distance between the")
    print("  amino-acid frequencies and the training set's (0 = the same, 1 = no residue in common).")
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
