"""Quality benchmark on the paper's gifford antibody CDR3 data (issue: protein plugin).

Trains ``configs/protein/gifford_cpu.yaml`` under a fixed wall-clock budget (default 20 minutes on the
machine's CPU cores) three times: ``training=joint`` (DiLED), ``two_stage`` (autoencoder for half of the
joint run's steps, then frozen autoencoder + latent diffusion) and ``autoencoder``; then evaluates each
on the full test file:

* reconstruction from μ: non-padding token accuracy, exact-match rate (``diled predict`` reconstruct);
* representation: Spearman of the regressor's predicted enrichment vs the truth (``diled predict`` encode);
* generation of 256 sequences with 50-step DDIM: wall time, validity, median minimum Hamming distance
  to 5,000 training sequences, mean pairwise Hamming diversity (sequences padded with J to 20, as in the
  data set; the real test sequences give the reference row).

``--modes joint_denoiser_2048x10`` adds a fourth arm: joint with ``gifford.yaml``'s denoiser (SkipMLP
2048 × 10, 40M parameters) instead of ``gifford_cpu.yaml``'s (512 × 6) in the same wall-clock budget,
which shows what the smaller denoiser, sized to the 30-d latent, gives up (issue: speed). Rows of
earlier runs with the same budget are kept, so arms can be run one at a time.

    python benchmarks/protein_gifford.py [--minutes 20] [--data ../shared/data/protein] [--modes joint ...]

Prints a table and writes ``benchmarks/results/protein_gifford.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, max_time, run_child  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "protein" / "gifford_cpu.yaml"
CANONICAL = set("ACDEFGHIKLMNPQRSTVWY")


def hamming(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a.ljust(20, "J"), b.ljust(20, "J")))


def generation_stats(seqs: list[str], train: list[str], rng: random.Random) -> dict[str, float]:
    ref = rng.sample(train, min(5000, len(train)))
    min_dist = [min(hamming(s, r) for r in ref) for s in seqs]
    pairs = [hamming(a, b) for i, a in enumerate(seqs) for b in seqs[i + 1 :]]
    return {
        "validity": sum(bool(s) and set(s) <= CANONICAL for s in seqs) / len(seqs),
        "median_min_hamming_to_train": statistics.median(min_dist),
        "diversity_mean_pairwise_hamming": statistics.fmean(pairs),
    }


def diled(*args: str) -> None:
    run_child([sys.executable, "-m", "diled_core.cli", *args], cwd=REPO)


#: arms beyond the three training modes: name -> (training mode, overrides of gifford_cpu.yaml)
VARIANTS = {
    "joint_denoiser_2048x10": (
        "joint",
        ["--model.denoiser.init_args.width", "2048", "--model.denoiser.init_args.depth", "10"],
    ),
}
MODES = ["joint", "two_stage", "autoencoder"]


def run_mode(mode: str, minutes: float, data: Path, root: Path, stage_one_steps: int) -> dict:
    data_args = [
        "--data.init_args.path",
        str(data / "gifford_train.csv"),
        "--data.init_args.test_path",
        str(data / "gifford_test.csv"),
    ]
    training, overrides = VARIANTS.get(mode, (mode, []))
    run_root = root / mode
    start = time.time()
    diled(
        "fit",
        "--config",
        str(CONFIG),
        "--trainer.default_root_dir",
        str(run_root),
        *data_args,
        "--trainer.max_time",
        max_time(minutes),
        "--model.training",
        training,
        *overrides,
        "--model.stage_one_steps",
        str(stage_one_steps),
    )
    fit_seconds = time.time() - start
    runs = sorted(run_root.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    ckpt = runs[-1] / "checkpoints" / "last.ckpt"  # this run's (earlier runs keep their folders)
    out = run_root / "predictions"
    for task in ("reconstruct", "encode"):
        diled(
            "predict",
            "--config",
            str(ckpt.parents[1] / "config.yaml"),
            "--ckpt_path",
            str(ckpt),
            "--prediction.task",
            task,
            "--prediction.output_dir",
            str(out),
            "--trainer.enable_progress_bar",
            "false",
        )
    metrics = json.loads((out / "metrics.json").read_text())

    from diled_core import DiLED
    from diled_protein import ProteinVocab

    model = DiLED.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    steps = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
    generator = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    tokens = model.sample(256, steps=50, eta=0.0, generator=generator)["tokens"]
    gen_seconds = time.perf_counter() - t0
    seqs = ProteinVocab().decode(tokens.cpu())
    return {
        "mode": mode,
        "date": datetime.date.today().isoformat(),  # rows of earlier runs are kept: say where each ran
        "machine": f"{cpu_model()} x{torch.get_num_threads()}",
        "fit_seconds": round(fit_seconds, 1),
        "optimizer_steps": steps,
        "token_accuracy": metrics["reconstruct"]["token_accuracy"],
        "exact_match": metrics["reconstruct"]["exact_match"],
        "spearman": metrics["encode"].get("spearman"),
        "generate_256_seconds": round(gen_seconds, 2),
        "samples": seqs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "protein")
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "bench_gifford")
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES + list(VARIANTS))
    parser.add_argument(
        "--stage-one-steps",
        type=int,
        default=None,
        help="two_stage autoencoder steps (default: half of joint's)",
    )
    args = parser.parse_args()
    if not (args.data / "gifford_train.csv").is_file():
        sys.exit(
            f"benchmark: {args.data}/gifford_train.csv not found; pass --data DIR (../shared/data/README.md)"
        )

    train = [
        line.split(",")[0].replace("J", "")
        for line in (args.data / "gifford_train.csv").read_text().splitlines()[1:]
    ]
    test = [
        line.split(",")[0].replace("J", "")
        for line in (args.data / "gifford_test.csv").read_text().splitlines()[1:]
    ]
    out_file = REPO / "benchmarks" / "results" / "protein_gifford.json"
    previous = json.loads(out_file.read_text()) if out_file.is_file() else {}
    by_mode = {r["mode"]: r for r in previous.get("rows", []) if previous.get("minutes") == args.minutes}
    stage_one = args.stage_one_steps or by_mode.get("joint", {}).get("optimizer_steps", 2000) // 2
    rows = []
    for mode in args.modes:
        row = run_mode(mode, args.minutes, args.data, args.root, stage_one)
        if mode == "joint" and args.stage_one_steps is None:  # two_stage: half the budget for its autoencoder
            stage_one = max(1, row["optimizer_steps"] // 2)
        row.update(generation_stats(row.pop("samples"), train, random.Random(0)))
        row["stage_one_steps"] = stage_one if mode == "two_stage" else None
        rows.append(row)
        by_mode[mode] = row
        print(json.dumps(row), flush=True)
    rows = list(by_mode.values())  # rows of earlier runs with the same budget are kept
    reference = generation_stats(random.Random(1).sample(test, 256), train, random.Random(0))

    cols = [
        "mode",
        "optimizer_steps",
        "token_accuracy",
        "exact_match",
        "spearman",
        "validity",
        "median_min_hamming_to_train",
        "diversity_mean_pairwise_hamming",
        "generate_256_seconds",
        "date",
        "machine",
    ]
    print("\n" + " | ".join(cols))
    for row in rows:
        cells = [row.get(c, "not recorded") for c in cols]
        print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in cells))
    print(
        "real test sequences (256) | - | - | - | - | "
        + " | ".join(
            f"{reference[c]:.4g}"
            for c in ("validity", "median_min_hamming_to_train", "diversity_mean_pairwise_hamming")
        )
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(
        json.dumps(
            {
                "minutes": args.minutes,
                "cpu_threads": torch.get_num_threads(),
                "rows": rows,
                "test_reference": reference,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
