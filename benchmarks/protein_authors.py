"""The authors' protein code as baseline: their joint and autoencoder steps vs diled's (issue: benchmarks).

The authors' code (github guangyliu/EDDPM, ``Protein/``) is never copied here: export that folder and
name it in ``DILED_AUTHORS_CODE``, e.g. ``git archive`` of a clone, then

    DILED_AUTHORS_CODE=/tmp/eddpm_protein/Protein python benchmarks/protein_authors.py [--quick]

Their models are built as ``train.py``'s defaults build them (``--dataset gifford --joint_regressor``):
``RelsoDiffusion`` (ReLSO encoder: embedding 100, 6 layers, 4 heads, feed-forward 200, dropout 0.2;
ResNet-block decoder; base regressor; ``MLPSkipNet``: 20 linear layers of width 2048) and, for the
autoencoder step, ``RelsoVAE`` (the same autoencoder, no diffusion: their ``--only_vae``), with their
Adam (lr 2e-5, no clipping), batch 128 of gifford CDR3s (20 residues with J padding, indices by their
``data_utils.load_raw_giff_data``). diled's are ``configs/protein/paper_gifford.yaml`` (20 × 2048;
``gifford.yaml``, 10 × 2048, when it is absent, which the output says) with ``training: joint`` and
``training: autoencoder``. The four are timed in this process, interleaved: each repeat is one short
``Trainer.fit`` per model over batches collated once (their Lightning is ``pytorch_lightning``, ours
``lightning``; a step is one ``on_train_batch_start`` to the next, the first dropped). Reported: step
times (median, min-max) and the ratios diled / authors per repeat. Target: diled's joint step <= 0.8×
the authors'. Their ``wandb`` import (a logger the timed steps never call) gets an empty stand-in module
when wandb is not installed.

Without ``DILED_AUTHORS_CODE``, when their code does not import, or without the gifford data in
``../shared/data/protein`` (both sides train on it), the script says so and prints the last recorded
figures with their date. Writes ``benchmarks/results/protein_authors.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    Batches,
    build,
    collate,
    fmt,
    ratio_summary,
    skip,
    start_run,
    step_times,
    summary,
    table,
    write_results,
)

PAPER = "configs/protein/paper_gifford.yaml"
GIFFORD = REPO.parent / "shared" / "data" / "protein" / "gifford_train.csv"
#: train.py's argparse defaults (their README: --dataset gifford --joint_regressor); seq_len is the data's
AUTHORS_HPARAMS = dict(
    input_dim=22,
    batch_size=128,
    lr=2e-5,
    latent_dim=30,
    hidden_dim=200,
    embedding_dim=100,
    layers=6,
    probs=0.2,
    kernel_size=4,
    auxnetwork="base_reg",
    ddpm_weight=1.0,
    nt=1000,
    joint_regressor=True,
    kl_weight=1.0,
    alpha_val=1.0,
    beta_val=0.0005,
    gamma_val=1.0,
    sigma_val=1.5,
    eta_val=0.001,
    interp_samp=False,
    interp_size=16,
    interp_weight=0.001,
    neg_samp=False,
    neg_size=16,
    neg_weight=0.8,
    neg_floor=-2.0,
    neg_norm=4.0,
    neg_focus=False,
    wl2norm=False,
    seq_len=20,
)
ORDER = ("authors_joint", "diled_joint", "authors_autoencoder", "diled_autoencoder")


def import_authors(folder: str) -> tuple[Any, Any, Any, list[str]]:
    """(their models module, data_utils module, pytorch_lightning, notes) from their ``Protein/`` folder."""
    notes = []
    try:
        import wandb  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("wandb")

        def log(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("the authors' code called wandb.log inside a timed step")

        stand_in.log = log
        sys.modules["wandb"] = stand_in
        notes.append("wandb is not installed: an empty stand-in module satisfies their import (never called)")
    sys.path.insert(0, folder)
    import pytorch_lightning
    from codes.nn import models
    from codes.utils import data_utils

    return models, data_utils, pytorch_lightning, notes


def authors_batches(data_utils: Any, n: int, batch_size: int) -> Batches:
    import pandas as pd

    seqs, fitness = data_utils.load_raw_giff_data(pd.read_csv(GIFFORD))
    order = torch.randperm(len(seqs), generator=torch.Generator().manual_seed(0))
    batches = []
    for i in range(n):
        idx = order[i * batch_size : (i + 1) * batch_size]
        batches.append((seqs[idx], seqs[idx], fitness[idx]))  # their 'recon' task: (data, targets, fitness)
    return Batches(batches)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure(folder: str, config: str, args: argparse.Namespace) -> dict:
    models, data_utils, pl, notes = import_authors(folder)
    hp = argparse.Namespace(**AUTHORS_HPARAMS)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # their constructors print the decoder's layers
        theirs = {
            "authors_joint": models.RelsoDiffusion(hparams=hp),
            "authors_autoencoder": models.RelsoVAE(hparams=hp),
        }
    their_batches = authors_batches(data_utils, args.steps + 3, hp.batch_size)
    joint, dm, opts = build(config)
    ae, _, _ = build(config, "--model.training", "autoencoder")
    ours = collate(dm, args.steps + 3)
    variants = {
        "authors_joint": (theirs["authors_joint"], their_batches, {}, pl),
        "authors_autoencoder": (theirs["authors_autoencoder"], their_batches, {}, pl),
        "diled_joint": (joint, ours, opts, None),
        "diled_autoencoder": (ae, ours, opts, None),
    }
    blocks: dict[str, list[list[float]]] = {k: [] for k in ORDER}
    for r in range(args.repeats):
        for name in ORDER:
            model, batches, trainer_opts, namespace = variants[name]
            print(f"   repeat {r + 1}/{args.repeats}: {name}", flush=True)
            blocks[name].append(step_times(model, batches, args.steps, trainer_opts, namespace))
    medians = {k: [summary(b)["median"] for b in v] for k, v in blocks.items()}
    return {
        "authors_code": folder,
        "data": str(GIFFORD),
        "config": config,
        "batch_size": hp.batch_size,
        "parameters": {
            "authors_joint": count(theirs["authors_joint"]),
            "authors_denoiser": count(theirs["authors_joint"].ddpm.eps_model),
            "authors_autoencoder": count(theirs["authors_autoencoder"]),
            "diled_denoiser": count(joint.denoiser),
            "diled_autoencoder": count(ae),
        },
        "step_ms": {k: summary([1e3 * t for b in v for t in b]) for k, v in blocks.items()},
        "ratios": {
            "diled_joint_over_authors_joint": ratio_summary(medians["diled_joint"], medians["authors_joint"]),
            "diled_ae_over_authors_ae": ratio_summary(
                medians["diled_autoencoder"], medians["authors_autoencoder"]
            ),
            "authors_joint_over_ae": ratio_summary(medians["authors_joint"], medians["authors_autoencoder"]),
            "diled_joint_over_ae": ratio_summary(medians["diled_joint"], medians["diled_autoencoder"]),
        },
        "target": "diled_joint_over_authors_joint <= 0.8",
        "notes": notes,
    }


def report(result: dict) -> None:
    print(f"diled config: {result['config']}; authors' code: {result['authors_code']}")
    print(table(["step", "ms median [min-max]"], [[k, fmt(result["step_ms"][k], digits=0)] for k in ORDER]))
    print(table(["ratio", "median [min-max]"], [[k, fmt(v)] for k, v in result["ratios"].items()]))
    ratio = result["ratios"]["diled_joint_over_authors_joint"]["median"]
    print(f"target diled joint <= 0.8 × authors' joint: {'met' if ratio <= 0.8 else 'NOT met'} ({ratio:.2f})")
    for note in result.get("notes", []):
        print(f"note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 timed steps per model")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per fit")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps = 1, 2
    folder = os.environ.get("DILED_AUTHORS_CODE")
    if not folder or not (Path(folder) / "codes" / "nn" / "models.py").is_file():
        where = "unset" if not folder else f"{folder}, which has no codes/nn/models.py"
        return skip(
            "protein_authors",
            f"DILED_AUTHORS_CODE is {where}: export the authors' Protein/ folder (github guangyliu/EDDPM) "
            "and name it there",
            report,
        )
    if not GIFFORD.is_file():
        reason = f"{GIFFORD} is absent (both sides train on it; ../shared/data/README.md)"
        return skip("protein_authors", reason, report)
    os.chdir(REPO)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    config = PAPER if (REPO / PAPER).is_file() else "configs/protein/gifford.yaml"
    if config != PAPER:
        print(f"{PAPER} is absent: diled's side is {config} (10 × 2048 denoiser, not the paper's 20)")
    run = start_run(args)
    try:
        result = measure(folder, config, args)
    except ImportError as err:
        reason = f"the authors' code in {folder} does not import ({type(err).__name__}: {err})"
        return skip("protein_authors", reason, report)
    report(result)
    write_results("protein_authors", run, result)


if __name__ == "__main__":
    main()
