"""How high can Spearman go on gifford at this budget? Supervised-only baselines (issue: protein plugin).

``protein_gifford.py`` measures the Spearman of DiLED's property regressor on μ. This script measures
what the same encoder reaches when it is trained *only* to predict enrichment (no reconstruction, no
diffusion; same data, batch size, optimiser and gradient clipping as ``configs/protein/gifford_cpu.yaml``)
under the same wall-clock budget, with and without an EMA of its weights, plus a ridge regression on
one-hot residues. It evaluates on the full test file every ``--eval-minutes`` (a curve, not a pick).

    python benchmarks/protein_gifford_ceiling.py [--minutes 20] [--data ../shared/data/protein]

Prints the curve and writes ``benchmarks/results/protein_gifford_ceiling.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch
import yaml
from diled_core import RegressionHead
from diled_protein.metrics import correlations
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "protein" / "gifford_cpu.yaml"


def build(spec: dict, **override):
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**{**spec.get("init_args", {}), **override})


@torch.no_grad()
def predict(model: torch.nn.Module, batches: list[dict]) -> torch.Tensor:
    model.eval()
    out = torch.cat([model(b) for b in batches])
    model.train()
    return out


def ridge_spearman(train: list[str], y: torch.Tensor, test: list[str], y_test: torch.Tensor) -> float:
    """Ridge (λ = 1) on one-hot residues of the J-padded, position-aligned 20-mers."""
    alphabet = sorted(set("".join(train + test)))

    def onehot(seqs: list[str]) -> torch.Tensor:
        idx = torch.tensor([[alphabet.index(c) for c in s] for s in seqs])
        x = torch.nn.functional.one_hot(idx, len(alphabet)).flatten(1).double()
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)

    x = onehot(train)
    w = torch.linalg.solve(x.T @ x + torch.eye(x.shape[1], dtype=x.dtype), x.T @ y.double())
    return correlations(onehot(test) @ w, y_test)["spearman"]


def read_csv(path: Path) -> tuple[list[str], torch.Tensor]:
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    return [r[0] for r in rows], torch.tensor([float(r[1]) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--eval-minutes", type=float, default=2.0)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "protein")
    args = parser.parse_args()
    if not (args.data / "gifford_train.csv").is_file():
        sys.exit(
            f"benchmark: {args.data}/gifford_train.csv not found; pass --data DIR (../shared/data/README.md)"
        )
    config = yaml.safe_load(CONFIG.read_text())
    torch.manual_seed(config["seed_everything"])
    data = build(
        config["data"],
        path=str(args.data / "gifford_train.csv"),
        test_path=str(args.data / "gifford_test.csv"),
    )
    data.setup("fit")
    data.setup("test")
    encoder = build(config["model"]["encoder"])
    head = RegressionHead(encoder.latent_dim, **config["model"]["head"]["init_args"])
    model = torch.nn.Sequential(encoder, head)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
    optimizer = build(config["model"]["optimizer"], params=model.parameters())
    test_batches = list(data.test_dataloader())
    y_test = torch.cat([b["property"] for b in test_batches])

    curve, step, start, next_eval = [], 0, time.time(), args.eval_minutes * 60
    budget = args.minutes * 60
    while time.time() - start < budget:
        for batch in data.train_dataloader():
            loss = head.loss(encoder(batch), batch).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config["trainer"]["gradient_clip_val"])
            optimizer.step()
            ema.update_parameters(model)
            step += 1
            elapsed = time.time() - start
            if elapsed >= next_eval or elapsed >= budget:
                point = {
                    "minutes": round(elapsed / 60, 1),
                    "steps": step,
                    "spearman": round(correlations(predict(model, test_batches), y_test)["spearman"], 4),
                    "spearman_ema": round(
                        correlations(predict(ema.module, test_batches), y_test)["spearman"], 4
                    ),
                }
                print(json.dumps(point), flush=True)
                curve.append(point)
                next_eval += args.eval_minutes * 60
            if elapsed >= budget:
                break

    train_seqs, y_train = read_csv(args.data / "gifford_train.csv")
    test_seqs, y_test_raw = read_csv(args.data / "gifford_test.csv")
    ridge = round(ridge_spearman(train_seqs, y_train, test_seqs, y_test_raw), 4)
    print(
        f"supervised encoder+head after {curve[-1]['minutes']} min ({step} steps): "
        f"Spearman {curve[-1]['spearman']} (EMA {curve[-1]['spearman_ema']}); "
        f"range over the curve {min(p['spearman'] for p in curve)}..{max(p['spearman'] for p in curve)}"
    )
    print(f"ridge on one-hot residues: Spearman {ridge}")
    out_file = REPO / "benchmarks" / "results" / "protein_gifford_ceiling.json"
    out_file.write_text(
        json.dumps(
            {
                "minutes": args.minutes,
                "cpu_threads": torch.get_num_threads(),
                "test_examples": len(y_test),
                "supervised_curve": curve,
                "ridge_onehot_spearman": ridge,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
