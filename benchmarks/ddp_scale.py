"""Scale: samples/s of 1 vs 2 DDP processes on the CPU (gloo), protein default config (issue: benchmarks).

Each run is a step-bounded ``diled fit --config configs/protein/demo.yaml --trainer.max_steps N``, with
``--trainer.strategy ddp --trainer.devices 2 --trainer.accelerator cpu`` for two processes, in a child
process: one process (default threads), one process with one thread (``OMP_NUM_THREADS=1``: the threads
Lightning gives each of two DDP processes on two cores) and two DDP processes, alternating. Throughput is
measured inside the run, without start-up: :class:`StepClock`, a callback this script adds on the
command line, stamps the end of every optimizer step on rank 0, and samples/s = world size × batch ×
(steps after ``--skip``) / their seconds. Reported: each run's samples/s and the ratio 2 processes / 1
process (default threads); on 2 cores expect about 1× or less.

    python benchmarks/ddp_scale.py [--quick] [--steps 100] [--skip 10] [--repeats 3]

Prints a table and writes ``benchmarks/results/ddp_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, fmt, ratio_summary, start_run, summary, table, write_results  # noqa: E402

CONFIG = "configs/protein/demo.yaml"
VARIANTS = {  # name -> (processes, OMP_NUM_THREADS or None for the default)
    "1 process": (1, None),
    "1 process, 1 thread": (1, 1),  # the same threads per process as each of the two below
    "2 DDP processes": (2, None),
}


class StepClock(pl.Callback):
    """Rank 0 writes ``{"world_size", "batch_size", "threads_per_process", "steps", "times"}`` to ``out`` at
    the end of the fit: the global step and ``time.perf_counter()`` after each optimizer step."""

    def __init__(self, out: str) -> None:
        self.out, self.steps, self.times = out, [], []
        self.batch_size = 0

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.steps.append(trainer.global_step)
        self.times.append(time.perf_counter())
        self.batch_size = self.batch_size or next(len(v) for v in batch.values() if hasattr(v, "__len__"))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            record = {
                "world_size": trainer.world_size,
                "batch_size": self.batch_size,
                "threads_per_process": torch.get_num_threads(),
            }
            Path(self.out).write_text(json.dumps({**record, "steps": self.steps, "times": self.times}))


def fit(devices: int, threads: int | None, steps: int, work: Path, name: str) -> dict:
    """One ``diled fit`` child (``threads``: its OMP_NUM_THREADS, or Lightning's choice); its StepClock
    record plus the wall seconds of the whole process."""
    clock = work / f"{name}.json"
    callback = {"class_path": "ddp_scale.StepClock", "init_args": {"out": str(clock)}}
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", str(devices)] if devices > 1 else []
    cmd = [
        sys.executable,
        "-m",
        "diled_core.cli",
        "fit",
        "--config",
        CONFIG,
        "--trainer.max_steps",
        str(steps),
        "--trainer.accelerator",
        "cpu",
        *ddp,
        "--trainer.default_root_dir",
        str(work / name),
        "--trainer.enable_progress_bar",
        "false",
        f"--trainer.callbacks+={json.dumps(callback)}",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not clock.is_file():
        raise RuntimeError(f"diled fit ({name}) failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    shutil.rmtree(work / name, ignore_errors=True)
    return {**json.loads(clock.read_text()), "process_seconds": wall}


def throughput(record: dict, skip: int) -> float:
    """Samples/s over the steps after ``skip`` (start-up, the first steps and their warm-up excluded)."""
    steps, times = record["steps"], record["times"]
    first = next(i for i, s in enumerate(steps) if s >= skip)
    done = steps[-1] - steps[first]
    return record["world_size"] * record["batch_size"] * done / (times[-1] - times[first])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of 30 steps, 10 skipped")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--skip", type=int, default=10, help="optimizer steps left out at the start")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.skip, args.repeats = 30, 10, 1
    run = start_run(args)
    work = Path(tempfile.mkdtemp(prefix="diled_ddp_scale_"))
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
    threads: dict[str, int] = {}
    try:
        for r in range(args.repeats):
            for name, (devices, omp) in VARIANTS.items():
                print(f"== repeat {r + 1}/{args.repeats}: {name}, {args.steps} steps", flush=True)
                record = fit(devices, omp, args.steps, work, f"r{r}_" + "".join(filter(str.isalnum, name)))
                rates[name].append(throughput(record, args.skip))
                walls[name].append(record["process_seconds"])
                threads[name] = record["threads_per_process"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        name: {
            "samples_per_s": summary(rates[name]),
            "process_seconds": summary(walls[name]),
            "threads_per_process": threads[name],
        }
        for name in VARIANTS
    }
    one, one_thread, two = VARIANTS
    scaling = ratio_summary(rates[two], rates[one])
    per_thread = ratio_summary(rates[two], rates[one_thread])
    rows = [
        [name, threads[name], fmt(r["samples_per_s"], digits=1), fmt(r["process_seconds"], digits=1)]
        for name, r in results.items()
    ]
    print(table(["run", "threads each", "samples/s median [min-max]", "process s (with start-up)"], rows))
    print(f"{two} / {one}: {fmt(scaling)}; / {one_thread}: {fmt(per_thread)} (on {os.cpu_count()} cores)")
    write_results(
        "ddp_scale",
        run,
        {
            "config": CONFIG,
            "backend": "gloo",
            "runs": results,
            "two_over_one": scaling,
            "two_over_one_thread": per_thread,
        },
    )


if __name__ == "__main__":
    main()
