"""Memory benchmark of ``diled predict`` (issue: streaming predict outputs and metrics).

``diled predict`` streams each batch's outputs to per-rank files and updates its metrics incrementally,
so its peak memory should not grow with the number of rows. This script trains a tiny toy model once
(``configs/toy/fit.yaml`` for ``--fit-steps`` optimizer steps, or takes ``--ckpt``), then runs

    diled predict --prediction.task generate --prediction.num_samples N --prediction.steps 10

for each N in ``--counts`` (default 2,000, 8,000 and 200,000), each in a fresh child process, and
records the child's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss`` taken inside the child, plus a
sampled RSS trace), wall seconds, the rows of ``samples.csv`` and ``count`` in ``metrics.json``. A
baseline child only imports torch, lightning and diled_core and builds the model from the checkpoint,
which shows the fixed overhead. Checks (printed as PASS/FAIL; the exit code is 0 either way):

* peak RSS(8,000) / peak RSS(2,000) <= 1.25 (``--ratio-limit``);
* the largest run finished with all its rows written and counted.

    python benchmarks/predict_memory.py [--counts 2000 8000 200000] [--ckpt RUN/checkpoints/last.ckpt]
        [--steps 10] [--fit-steps 20] [--root DIR] [--keep]

Prints a table and writes ``benchmarks/results/predict_memory.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIT_CONFIG = REPO / "configs" / "toy" / "fit.yaml"
OUT_FILE = REPO / "benchmarks" / "results" / "predict_memory.json"


# --- the child side: run one thing in this process, then report its own peak RSS ----------------------


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _child(kind: str, report: Path, args: list[str]) -> int:
    """``kind`` is ``predict`` (``args`` go to ``diled_core.cli.main``) or ``baseline`` (``args`` is
    ``[ckpt]``). Writes ``{"maxrss_kb", "seconds", "rc", "trace"}`` to ``report``."""
    import resource

    start = time.perf_counter()
    trace: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:  # current RSS every 0.2 s, to see whether memory climbs during the run
        while not done.wait(0.2):
            trace.append((round(time.perf_counter() - start, 2), _rss_kb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = 0
    if kind == "predict":
        from diled_core.cli import main

        rc = main(args)
    else:
        import lightning  # noqa: F401
        import torch  # noqa: F401
        from diled_core import DiLED
        from diled_core.registry import load_modalities

        load_modalities()
        DiLED.load_from_checkpoint(args[0], map_location="cpu", weights_only=True).eval()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    step = max(1, len(trace) // 40)  # keep about 40 points
    report.write_text(
        json.dumps(
            {
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
                "rss_end_kb": _rss_kb(),
                "seconds": seconds,
                "rc": rc,
                "trace": trace[::step] + trace[-1:],
            }
        )
    )
    return rc


# --- the parent side -------------------------------------------------------------------------------------


def measure(kind: str, args: list[str], work: Path, name: str) -> dict:
    """Run one child of this script and return its report (or the error it ended with)."""
    report = work / f"{name}.report.json"
    log = work / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--_child", kind, "--_report", str(report),
             "--", *args],  # fmt: skip
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wall = time.perf_counter() - start
    result: dict = {"process_seconds": round(wall, 2), "returncode": proc.returncode}
    if report.is_file():
        r = json.loads(report.read_text())
        result.update(
            peak_rss_mb=round(r["maxrss_kb"] / 1024, 1),
            end_rss_mb=round(r["rss_end_kb"] / 1024, 1),
            seconds=round(r["seconds"], 2),
            rss_trace_mb=[(t, round(kb / 1024, 1)) for t, kb in r["trace"]],
        )
        # RSS halfway through the run: the streaming plateau, before any end-of-run metric computation
        mid = [kb for t, kb in r["trace"] if t <= r["seconds"] / 2]
        result["rss_at_half_time_mb"] = round(mid[-1] / 1024, 1) if mid else None
    if proc.returncode != 0 or not report.is_file():
        result["error_tail"] = log.read_text()[-3000:]
    return result


def train(root: Path, fit_steps: int) -> Path:
    """Fit the toy model for ``fit_steps`` steps under ``root``; return its ``last.ckpt``."""
    cmd = [sys.executable, "-m", "diled_core.cli", "fit", "--config", str(FIT_CONFIG),
           "--trainer.max_steps", str(fit_steps), "--trainer.default_root_dir", str(root),
           "--trainer.enable_progress_bar", "false"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"benchmark: training the toy model failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    runs = sorted(root.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    if not runs or not (runs[-1] / "checkpoints" / "last.ckpt").is_file():
        sys.exit(f"benchmark: no lightning_logs/version_*/checkpoints/last.ckpt under {root}")
    return runs[-1] / "checkpoints" / "last.ckpt"


def csv_rows(path: Path) -> int | None:
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return max(0, sum(1 for _ in f) - 1)  # minus the header


def machine_info() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": gpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 8000, 200000])
    parser.add_argument("--ckpt", type=Path, default=None, help="a trained run's last.ckpt (else train one)")
    parser.add_argument(
        "--config", type=Path, default=None, help="the run's config.yaml (default: beside --ckpt)"
    )
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps of generate")
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument("--ratio-limit", type=float, default=1.25)
    parser.add_argument("--root", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--out", type=Path, default=OUT_FILE)
    parser.add_argument("--_child", choices=["predict", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--_report", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.chdir(REPO)
    if args._child:
        sys.exit(_child(args._child, args._report, args.rest))

    load_start = os.getloadavg()[0]
    started = datetime.datetime.now(datetime.timezone.utc)
    work = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="diled_predict_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.ckpt is None:
            t0 = time.perf_counter()
            ckpt = train(work / "fit", args.fit_steps)
            print(f"trained the toy model ({args.fit_steps} steps, {time.perf_counter() - t0:.1f} s): {ckpt}")
        else:
            ckpt = args.ckpt.resolve()
        config = (args.config or ckpt.parents[1] / "config.yaml").resolve()

        baseline = measure("baseline", [str(ckpt)], work, "baseline")
        brief = {k: v for k, v in baseline.items() if k != "rss_trace_mb"}
        print(f"baseline (imports + model): {json.dumps(brief)}", flush=True)
        rows = []
        for n in args.counts:
            out_dir = work / f"gen_{n}"
            predict_args = ["predict", "--config", str(config), "--ckpt_path", str(ckpt),
                            "--prediction.task", "generate", "--prediction.num_samples", str(n),
                            "--prediction.steps", str(args.steps), "--prediction.output_dir", str(out_dir),
                            "--trainer.enable_progress_bar", "false"]  # fmt: skip
            row = {"num_samples": n, **measure("predict", predict_args, work, f"gen_{n}")}
            row["rows_written"] = csv_rows(out_dir / "samples.csv")
            metrics_file = out_dir / "metrics.json"
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
            metrics = metrics.get("generate", {})
            row["metrics_count"] = metrics.get("count")
            row["metrics"] = {k: v for k, v in metrics.items() if k not in ("count", "options")}
            rows.append(row)
            keys = ("num_samples", "peak_rss_mb", "seconds", "rows_written", "returncode")
            print(json.dumps({k: row.get(k) for k in keys}), flush=True)
            if not args.keep:
                shutil.rmtree(out_dir, ignore_errors=True)
    finally:
        if not args.keep and args.root is None:
            shutil.rmtree(work, ignore_errors=True)

    by_n = {r["num_samples"]: r for r in rows}
    ref = by_n.get(2000, rows[0] if rows else {}).get("peak_rss_mb")
    base = baseline.get("peak_rss_mb")
    for r in rows:
        rss = r.get("peak_rss_mb")
        r["ratio_to_2000"] = round(rss / ref, 3) if rss and ref else None
        r["above_baseline_mb"] = round(rss - base, 1) if rss and base else None

    print(f"\nbaseline (import torch/lightning/diled_core + build model): peak RSS {base} MB")
    header = (
        f"{'N':>8} | {'peak RSS MB':>11} | {'ratio':>6} | {'above base MB':>13} | {'RSS@50% MB':>10} | "
        f"{'rows':>8} | {'count':>8} | {'s':>7}"
    )
    print(header + "\n" + "-" * len(header))
    for r in rows:
        print(
            f"{r['num_samples']:>8} | {r.get('peak_rss_mb', '-')!s:>11} | "
            f"{r.get('ratio_to_2000') or '-'!s:>6} | "
            f"{r.get('above_baseline_mb', '-')!s:>13} | {r.get('rss_at_half_time_mb', '-')!s:>10} | "
            f"{r['rows_written']!s:>8} | {r['metrics_count']!s:>8} | "
            f"{r.get('seconds', '-')!s:>7}"
        )

    checks = {}
    if 2000 in by_n and 8000 in by_n:
        ratio = by_n[8000].get("ratio_to_2000")
        checks[f"rss_8000_over_2000_le_{args.ratio_limit}"] = {
            "value": ratio,
            "pass": ratio is not None and ratio <= args.ratio_limit and by_n[8000]["returncode"] == 0,
        }
    largest = max(rows, key=lambda r: r["num_samples"]) if rows else None
    if largest is not None:
        n = largest["num_samples"]
        ok = largest["returncode"] == 0 and largest["rows_written"] == n and largest["metrics_count"] == n
        checks[f"run_{n}_complete"] = {"value": largest["rows_written"], "pass": ok}
    for name, check in checks.items():
        print(f"{'PASS' if check['pass'] else 'FAIL'}: {name} (value {check['value']})")
    for r in rows:
        if r.get("error_tail"):
            print(f"\nN={r['num_samples']} failed (rc {r['returncode']}):\n{r['error_tail']}")

    machine = machine_info()
    machine.update(load_avg_1min_start=load_start, load_avg_1min_end=os.getloadavg()[0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": started.isoformat(timespec="seconds"),
                "task": "generate",
                "steps": args.steps,
                "fit_steps": args.fit_steps if args.ckpt is None else None,
                "ckpt": None if args.ckpt is None else str(args.ckpt),
                "rss_measure": "getrusage(RUSAGE_SELF).ru_maxrss inside a fresh child process",
                "machine": machine,
                "baseline": baseline,
                "rows": rows,
                "checks": checks,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
