"""Data pipeline and memory: is the loader the bottleneck, what memory does a fit take (issue: benchmarks).

1. For each modality's default datamodule (protein: the demo's AMP set and gifford; text: VADER; image:
   Fashion-MNIST; a data set that is absent is skipped with the reason), batches/s of its training
   dataloader alone, with the config's own workers (after the first batch: worker start-up is reported
   apart), interleaved with the training step's consumption rate: steps/s of the same config's joint
   step on batches collated once (as ``benchmarks/_common.step_times``). The ratio loader / step must be
   well above 1 for the loader not to be the bottleneck.
2. Peak RSS of a step-bounded ``diled fit`` of ``configs/protein/demo.yaml`` and of a short paper-size fit
   (``configs/protein/paper_gifford.yaml``; ``gifford.yaml`` when it is absent), each the child of a
   small interpreter that reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the fit or its largest
   dataloader worker).

    python benchmarks/data_pipeline.py [--quick] [--repeats 3] [--batches 50] [--steps 5]

Prints two tables and writes ``benchmarks/results/data_pipeline.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    build,
    collate,
    fmt,
    interleave,
    ratio_summary,
    start_run,
    step_times,
    summary,
    table,
    write_results,
)

SHARED = REPO.parent / "shared" / "data"
PAPER = "configs/protein/paper_gifford.yaml"
FASHION_DIRS = [SHARED / "image" / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist")]
CONFIGS = {  # name -> (config, why it cannot run here, or None)
    "protein_demo": (
        "configs/protein/demo.yaml",
        None
        if importlib.util.find_spec("modlamp")
        else "modlamp is not installed (pip install --no-deps modlamp)",
    ),
    "protein_gifford": (
        "configs/protein/gifford.yaml",
        None
        if (SHARED / "protein" / "gifford_train.csv").is_file()
        else f"{SHARED}/protein/gifford_train.csv absent",
    ),
    "text_vader": (
        "configs/text/vader_cpu.yaml",
        None if (SHARED / "text" / "vader").is_dir() else f"{SHARED}/text/vader absent",
    ),
    "image_fashion_mnist": (
        "configs/image/fashion_mnist_cpu.yaml",
        None
        if any(any(d.glob("train-images-idx3-ubyte*")) for d in FASHION_DIRS if d.is_dir())
        else "the Fashion-MNIST IDX files are absent (" + ", ".join(map(str, FASHION_DIRS)) + ")",
    ),
}


# ------------------------------------------------------------------------------ 1. loader vs step
def loader_run(dm: Any, batches: int, record: dict) -> None:
    """Iterate ``batches`` training batches after the first one (restarting the loader at an epoch's end)."""
    start = time.perf_counter()
    it = iter(dm.train_dataloader())
    next(it)
    record.setdefault("first_batch_s", []).append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            next(it)
    record.setdefault("batches_s", []).append(time.perf_counter() - start)


def loader_vs_step(config: str, args: argparse.Namespace) -> dict:
    model, dm, opts = build(config, workers=True)
    fed = collate(dm, args.steps + 3)
    bs = next(len(v) for v in fed.batches[0].values() if hasattr(v, "__len__"))
    record: dict[str, list[float]] = {}

    def step() -> None:
        record.setdefault("step_s", []).append(summary(step_times(model, fed, args.steps, opts))["median"])

    interleave({"loader": lambda: loader_run(dm, args.batches, record), "step": step}, args.repeats, warmup=0)
    loader_bps = [args.batches / s for s in record["batches_s"]]
    step_ps = [1 / s for s in record["step_s"]]
    return {
        "config": config,
        "batch_size": bs,
        "num_workers": dm.num_workers,
        "loader_batches_per_s": summary(loader_bps),
        "loader_first_batch_s": summary(record["first_batch_s"]),
        "step_per_s": summary(step_ps),
        "loader_over_step": ratio_summary(loader_bps, step_ps),
    }


# ------------------------------------------------------------------------------ 2. peak RSS of fits
#: run argv[2:] as a child of this small interpreter, write the child's peak RSS (KiB) to argv[1]. Not
#: measured from this script's own children: a child forked from a big process inherits its RSS high-water
#: mark at exec, so a fit started by a script that has built models would report the script's peak.
PEAK_RSS = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(rc)"
)


def fit_peak_rss(config: str, steps: int, work: Path) -> dict:
    root = work / Path(config).stem
    cmd = [
        sys.executable,
        "-m",
        "diled_core.cli",
        "fit",
        "--config",
        config,
        "--trainer.max_steps",
        str(steps),
        "--trainer.default_root_dir",
        str(root),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.limit_val_batches",
        "0",
        "--trainer.num_sanity_val_steps",
        "0",
    ]
    log, report = work / f"{Path(config).stem}.log", work / f"{Path(config).stem}.maxrss"
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, str(report), *cmd], cwd=REPO, stdout=out, stderr=out
        )
    result = {
        "config": config,
        "max_steps": steps,
        "returncode": proc.returncode,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(int(report.read_text()) / 1024, 1) if report.is_file() else None,  # from KiB
    }
    if proc.returncode != 0:
        result["error_tail"] = log.read_text()[-2000:]
    shutil.rmtree(root, ignore_errors=True)  # a paper-size checkpoint is over 1 GB
    return result


# ------------------------------------------------------------------------------ report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, 10 batches, 2 steps, short fits")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=50, help="loader batches timed per repeat")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed per repeat")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--demo-steps", type=int, default=200, help="optimizer steps of the demo fit")
    parser.add_argument("--paper-steps", type=int, default=10, help="optimizer steps of the paper-size fit")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.batches, args.steps, args.demo_steps, args.paper_steps = 1, 10, 2, 20, 2
    os.chdir(REPO)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    run = start_run(args)

    pipelines: dict[str, dict] = {}
    for name in args.configs:
        config, missing = CONFIGS[name]
        print(f"== {name}: {config}", flush=True)
        if missing:
            pipelines[name] = {"config": config, "skipped": missing}
            continue
        try:
            pipelines[name] = loader_vs_step(config, args)
        except (ImportError, OSError, ValueError, KeyError) as err:  # a plugin or its data is unusable
            pipelines[name] = {
                "config": config,
                "skipped": " ".join(f"{type(err).__name__}: {err}".split())[:300],
            }
    rows = []
    for name, r in pipelines.items():
        if "skipped" in r:
            rows.append([name, "skipped: " + r["skipped"], "", "", "", ""])
            continue
        rows.append(
            [
                name,
                r["batch_size"],
                r["num_workers"],
                fmt(r["loader_batches_per_s"], digits=1),
                fmt(r["step_per_s"], digits=2),
                fmt(r["loader_over_step"], digits=1),
            ]
        )
    print(table(["config", "batch", "workers", "loader batches/s", "steps/s", "loader/step"], rows))

    work = Path(tempfile.mkdtemp(prefix="diled_data_pipeline_"))
    paper = PAPER if (REPO / PAPER).is_file() else "configs/protein/gifford.yaml"
    fits = []
    try:
        for config, steps, missing in (
            ("configs/protein/demo.yaml", args.demo_steps, CONFIGS["protein_demo"][1]),
            (paper, args.paper_steps, CONFIGS["protein_gifford"][1]),
        ):
            print(f"== peak RSS: diled fit --config {config} --trainer.max_steps {steps}", flush=True)
            fits.append(
                {"config": config, "skipped": missing} if missing else fit_peak_rss(config, steps, work)
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        table(
            ["fit", "steps", "peak RSS MB", "seconds", "rc"],
            [
                [
                    f["config"],
                    f.get("max_steps", "-"),
                    f.get("peak_rss_mb", f.get("skipped")),
                    f.get("seconds", "-"),
                    f.get("returncode", "-"),
                ]
                for f in fits
            ],
        )
    )
    for f in fits:
        if f.get("error_tail"):
            print(f"\n{f['config']} failed:\n{f['error_tail']}")
    write_results("data_pipeline", run, {"pipelines": pipelines, "fit_peak_rss": fits})


if __name__ == "__main__":
    main()
