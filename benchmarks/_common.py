"""What every benchmark shares: the machine and its load, interleaved timing, model building, results files.

A benchmark script records ``run = start_run(args)`` first, measures, then ``write_results(name, run,
payload)``: the JSON in ``benchmarks/results/<name>.json`` gets the date, the machine (CPU model, cores,
torch version and threads, GPU if any, bf16 support) and the 1-minute load average at start and end.
Timings compare variants interleaved (A B A B ...) in one process (:func:`interleave`) and report the
median and min-max over repeats (:func:`summary`).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


# ------------------------------------------------------------------------------ child processes
def run_child(cmd: list[str], **popen: Any) -> None:
    """``subprocess.run(cmd, check=True, **popen)`` that ends the child when this process is stopped
    (SIGTERM, e.g. from ``timeout`` or a scheduler, or Ctrl-C): a benchmark stopped mid-arm leaves no
    training behind to slow whatever runs next. The child gets SIGTERM, then SIGKILL after 10 s."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    child = subprocess.Popen(cmd, **popen)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    if code:
        raise subprocess.CalledProcessError(code, cmd)


def max_time(minutes: float) -> str:
    """``--trainer.max_time`` for a budget in minutes (at least one second): Lightning's DD:HH:MM:SS."""
    seconds = max(1, round(minutes * 60))
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ------------------------------------------------------------------------------ the machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_supports_bf16() -> bool:
    """True when oneDNN has fast bf16 kernels on this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_bf16": cpu_supports_bf16(),
    }


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------------------ timing
def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def interleave(runs: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each call of every run, called in turn (A B A B ...) ``repeats`` times after
    ``warmup`` untimed rounds."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(warmup + repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def ratio_summary(a: list[float], b: list[float]) -> dict[str, float]:
    """Median and min-max of the per-repeat ratios a_i / b_i (interleaved repeats are paired)."""
    return summary([x / y for x, y in zip(a, b)])


def fmt(s: dict[str, float], scale: float = 1.0, digits: int = 2) -> str:
    """``median [min-max]`` of a :func:`summary`, times ``scale`` (the median alone for one value)."""
    if s["n"] == 1:
        return f"{s['median'] * scale:.{digits}f}"
    return f"{s['median'] * scale:.{digits}f} [{s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f}]"


# ------------------------------------------------------------------------------ models and steps
def build(config: str | Path, *overrides: str, workers: bool = False) -> tuple[Any, Any, dict]:
    """(model, datamodule, trainer options) from a config, as ``diled fit`` builds them; without the
    config's dataloader workers unless ``workers``."""
    from diled_core.cli import DiledCLI

    path = REPO / config
    content = yaml.safe_load(path.read_text())
    fit_options = [k for k in ("ckpt_path", "weights_only") if k in content]
    if fit_options:  # a run's saved config.yaml: options of `diled fit` itself, not of the model
        path = yaml.safe_dump({k: v for k, v in content.items() if k not in fit_options})  # YAML text works
    extra = [] if workers else ["--data.init_args.num_workers", "0"]
    torch.manual_seed(0)
    cli = DiledCLI(args=["--config", str(path), *extra, *overrides], run=False)
    keys = ("precision", "gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches")
    trainer = {k: cli.config["trainer"][k] for k in keys if cli.config["trainer"].get(k) is not None}
    return cli.model, cli.datamodule, trainer


class Batches:
    """Batches collated once, served as a dataloader (Lightning takes a list for several loaders)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def collate(datamodule: Any, n: int) -> Batches:
    """The first ``n`` training batches of a datamodule (set up for ``fit`` here)."""
    datamodule.setup("fit")
    batches: list = []
    while len(batches) < n:
        for batch in datamodule.train_dataloader():
            batches.append(batch)
            if len(batches) == n:
                break
    return Batches(batches)


def quiet_trainer(max_steps: int, pl: Any = None, accelerator: str = "cpu", **opts: Any) -> Any:
    """A one-device ``Trainer`` (CPU unless ``accelerator``) for ``max_steps`` with no logger,
    checkpoints, progress bar, summary or validation. ``pl``: the Lightning namespace
    (``lightning.pytorch``, or an older ``pytorch_lightning``)."""
    if pl is None:
        import lightning.pytorch as pl
    return pl.Trainer(
        max_steps=max_steps,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        **opts,
    )


def step_times(
    model: Any,
    batches: Batches,
    steps: int,
    trainer_opts: dict | None = None,
    pl: Any = None,
    accelerator: str = "cpu",
) -> list[float]:
    """Seconds of each of ``steps`` training steps (one ``on_train_batch_start`` to the next: forward,
    backward, clipping, optimizer, EMA, logging) in a fresh ``Trainer.fit``, after one warm-up step.
    ``pl``: the model's Lightning namespace (``lightning.pytorch``, or the older ``pytorch_lightning``);
    on a GPU (``accelerator="gpu"``) each stamp waits for the device."""
    if pl is None:
        import lightning.pytorch as pl
    starts: list[float] = []

    class StepTimer(pl.Callback):
        def on_train_batch_start(self, *args: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            starts.append(time.perf_counter())

    opts = dict(trainer_opts or {})
    opts["callbacks"] = [StepTimer(), *opts.get("callbacks", [])]
    trainer = quiet_trainer(steps + 2, pl, accelerator, **opts)
    trainer.fit(model, train_dataloaders=batches)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    return gaps[1:]  # the first step also builds the optimizer state


# ------------------------------------------------------------------------------ results
def start_run(args: Any = None) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc)
    args = {k: str(v) if isinstance(v, Path) else v for k, v in (vars(args) if args else {}).items()}
    return {"date": now.isoformat(timespec="seconds"), "args": args, "load_avg_1min_start": load_avg()}


def write_results(name: str, run: dict[str, Any], payload: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``out`` (default ``benchmarks/results/<name>.json``): the run's date and args, the machine,
    the load at start and end, and ``payload``."""
    machine = machine_info()
    machine.update(load_avg_1min_start=run["load_avg_1min_start"], load_avg_1min_end=load_avg())
    out = out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"date": run["date"], "args": run["args"], "machine": machine, **payload}
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return out


def read_results(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def skip(name: str, reason: str, show: Callable[[dict[str, Any]], str | None]) -> None:
    """A benchmark that cannot measure on this machine: say why, then its last recorded figures
    (``show`` prints them or returns them as text); nothing is written."""
    previous = read_results(name)
    print(f"{name}: skipped, {reason}")
    if previous is None:
        print("no recorded figures yet")
        return
    print(f"the last recorded figures ({previous['date']}):")
    if (text := show(previous)) is not None:
        print(text)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain text table, columns padded to their widest cell."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
