"""GPU scale: bf16-mixed vs fp32 samples/s, and the largest batch that fits (issue: benchmarks).

Needs a CUDA GPU; without one it measures nothing and prints the last recorded figures. For the paper's
protein model (``configs/protein/paper_gifford.yaml``), the text default (``configs/text/vader_cpu.yaml``),
the text model at the paper's sizes (that config with a BERT-small encoder, a GPT-2 (124M) decoder and
the paper's 2048 x 6 denoiser, batch 64), the image default (``configs/image/fashion_mnist_cpu.yaml``) and
the paper-size image model (``configs/image/celeba64.yaml`` on synthetic 3 x 64 x 64 images):

The batch measured is the largest of the config's first 20 training batches (the longest, where text is
bucketed by length).

- **samples/s at the config's batch**, ``32-true`` vs ``bf16-mixed`` interleaved (A B A B ...): each
  repeat is one short ``Trainer.fit`` of ``--steps`` steps on batches collated once and already on the
  GPU (data loading is not timed; the first step is a warm-up), a step being one
  ``on_train_batch_start`` to the next after ``torch.cuda.synchronize()``;
- **the largest batch that fits**, per precision: the config's batch doubled (the collated batch tiled)
  until CUDA runs out of memory, ``--max-batch`` or ``--budget-s`` seconds per config and precision
  (a search stopped by either reports a lower bound, shown as ``≥``); at each size,
  samples/s over ``--search-steps`` steps and the peak allocated memory.

Text models are random-init at the named shapes (step time does not depend on the weights; no
pretrained weights travel to the GPU machine); ``--tokenizer`` names the tokenizer folder where the
installed MiniLM is absent. A config whose data or plugin is missing is skipped with the reason.

    python benchmarks/gpu_scale.py [--steps 10] [--repeats 3] [--configs paper_gifford text_default ...]

Prints a table and writes ``benchmarks/results/gpu_scale.json`` (``_common.write_results``).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Batches,
    build,
    collate,
    ratio_summary,
    read_results,
    start_run,
    step_times,
    summary,
    table,
    write_results,
)
from training_cost import ABSENT, trained  # noqa: E402

PRECISIONS = ("32-true", "bf16-mixed")
MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}
BERT_SMALL = {"hidden_size": 512, "num_hidden_layers": 4, "num_attention_heads": 8, "intermediate_size": 2048}
GPT2 = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 64}


def text(encoder: dict, *extra: str) -> list[str]:
    return [
        "--model.encoder.init_args.config",
        json.dumps(encoder),
        "--data.init_args.reference_lm",
        "null",
        *extra,
    ]


CONFIGS: dict[str, tuple[str, list[str]]] = {  # name -> (config, overrides)
    "paper_gifford": ("configs/protein/paper_gifford.yaml", []),
    "text_default": ("configs/text/vader_cpu.yaml", text(MINILM)),
    "text_paper_size": (
        "configs/text/vader_cpu.yaml",
        text(
            BERT_SMALL,
            "--model.decoder.init_args.config",
            json.dumps(GPT2),
            "--model.denoiser.init_args.width",
            "2048",
            "--model.denoiser.init_args.depth",
            "6",
            "--data.init_args.batch_size",
            "64",
        ),
    ),
    "image_default": ("configs/image/fashion_mnist_cpu.yaml", []),
    "image_celeba64": (
        "configs/image/celeba64.yaml",
        [
            "--data",
            "diled_image.SyntheticImageDataModule",
            "--data.init_args.channels",
            "3",
            "--data.init_args.image_size",
            "64",
            "--data.init_args.n_train",
            "256",
        ],
    ),
}


def to_device(batch: Any, device: torch.device, repeat: int = 1) -> Any:
    """``batch`` on ``device``, every tensor (and list of per-example items) repeated ``repeat`` times
    along the batch dimension."""
    if isinstance(batch, torch.Tensor):
        return (
            batch.repeat(repeat, *([1] * (batch.dim() - 1))).to(device) if batch.dim() else batch.to(device)
        )
    if isinstance(batch, dict):
        return {k: to_device(v, device, repeat) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(to_device(v, device, repeat) for v in batch)
    if isinstance(batch, list):
        if batch and not isinstance(batch[0], (torch.Tensor, dict, list, tuple)):
            return batch * repeat  # per-example items (e.g. strings)
        return [to_device(v, device, repeat) for v in batch]
    return batch


def batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    values = batch.values() if isinstance(batch, dict) else batch
    return next(batch_size(v) for v in values if isinstance(v, (torch.Tensor, dict, list, tuple)))


def numel(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.numel()
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else []
    return sum(numel(v) for v in values)


def longest(datamodule: Any, n: int = 20) -> Any:
    """The largest of the first ``n`` training batches (the longest, where batches are bucketed by length):
    the shapes that decide what fits."""
    return max(collate(datamodule, n).batches, key=numel)


def shapes(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return list(batch.shape)
    if isinstance(batch, dict):
        return {k: shapes(v) for k, v in batch.items() if isinstance(v, (torch.Tensor, dict))}
    return [shapes(v) for v in batch if isinstance(v, (torch.Tensor, dict))]


def fresh(config: str, overrides: list[str], tokenizer: str | None) -> tuple[Any, Any, dict]:
    extra = ["--data.init_args.tokenizer", tokenizer] if tokenizer and "text" in config else []
    return build(config, *overrides, *extra)


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def at_config_batch(config: str, overrides: list[str], args: argparse.Namespace, device) -> tuple[dict, Any]:
    """Interleaved 32-true / bf16-mixed step times at the config's batch; the record and that batch."""
    runs, base = {}, None
    for precision in PRECISIONS:
        model, dm, opts = fresh(config, overrides, args.tokenizer)
        if base is None:
            base = longest(dm)
        on_gpu = to_device(base, device)
        runs[precision] = (model, Batches([on_gpu] * (args.steps + 2)), {**opts, "precision": precision})
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(args.repeats):
        for precision, (model, batches, opts) in runs.items():
            steps = step_times(model, batches, args.steps, opts, accelerator=args.accelerator)
            times[precision].append(statistics.median(steps))
    n = batch_size(base)
    out = {"batch_size": n, "shapes": shapes(base), "trained_params_m": trained(runs["32-true"][0]) / 1e6}
    for precision in PRECISIONS:
        out[precision] = {
            "step_ms": summary([1e3 * t for t in times[precision]]),
            "samples_per_s": summary([n / t for t in times[precision]]),
        }
    out["bf16_speedup"] = ratio_summary(times["32-true"], times["bf16-mixed"])
    del runs
    free()
    return out, base


def largest_batch(
    config: str, overrides: list[str], args: argparse.Namespace, device, precision: str, base: Any
):
    """Doubling the config's batch ``base`` until CUDA runs out of memory (or a cap): rows and the
    verdict."""
    n0, rows, repeat, stop = batch_size(base), [], 1, "max_batch"
    deadline = time.monotonic() + args.budget_s
    while n0 * repeat <= args.max_batch:
        if time.monotonic() > deadline:
            stop = "budget_s"
            break
        free()
        try:
            model, _, opts = fresh(config, overrides, args.tokenizer)
            batch = to_device(base, device, repeat)
            steps = step_times(
                model,
                Batches([batch] * (args.search_steps + 2)),
                args.search_steps,
                {**opts, "precision": precision},
                accelerator=args.accelerator,
            )
            n = n0 * repeat
            rows.append(
                {
                    "batch_size": n,
                    "samples_per_s": n / statistics.median(steps),
                    "peak_gib": peak_gib(),
                }
            )
        except torch.OutOfMemoryError:
            stop = "out_of_memory"
            break
        finally:
            model = batch = None  # noqa: F841 (drop the references before the next size)
        repeat *= 2
    free()
    return {"rows": rows, "largest": rows[-1]["batch_size"] if rows else None, "stopped_by": stop}


def show_last() -> int:
    last = read_results("gpu_scale")
    print("no CUDA GPU here: nothing measured.")
    if last:
        print(f"last recorded ({last['date'][:10]}, {last['machine'].get('gpu')}):")
        print(report(last["configs"]))
    return 0


def largest_cell(search: dict) -> str:
    """``65536 (101790/s)``: the largest batch that ran and the best samples/s of the search; ``≥`` where
    the search stopped before CUDA ran out of memory."""
    at_least = "" if search["stopped_by"] == "out_of_memory" else "≥"
    best = max((r["samples_per_s"] for r in search["rows"]), default=0)
    return f"{at_least}{search['largest']} ({best:.0f}/s)"


def report(configs: dict[str, Any]) -> str:
    rows = []
    for name, c in configs.items():
        if "skipped" in c:
            rows.append([name, "skipped: " + c["skipped"][:60], "", "", "", ""])
            continue
        b = c["at_config_batch"]
        big = {p: c["largest_batch"][p] for p in PRECISIONS}
        rows.append(
            [
                name,
                b["batch_size"],
                f"{b['32-true']['samples_per_s']['median']:.0f}",
                f"{b['bf16-mixed']['samples_per_s']['median']:.0f}",
                f"{b['bf16_speedup']['median']:.2f}×",
                " / ".join(largest_cell(big[p]) for p in PRECISIONS),
            ]
        )
    head = [
        "config",
        "batch",
        "fp32 samples/s",
        "bf16 samples/s",
        "bf16 speed-up",
        "largest batch fp32 / bf16 (best samples/s)",
    ]
    return table(head, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--search-steps", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=1 << 20)
    parser.add_argument(
        "--budget-s", type=float, default=60.0, help="batch search time per config and precision"
    )
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder for the text configs")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--accelerator", default="gpu", help="cpu: a smoke run of this script alone")
    args = parser.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        return show_last()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    run, configs = start_run(args), {}
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    for name in args.configs:
        config, overrides = CONFIGS[name]
        try:
            record = {"config": config, "overrides": overrides, "date": start_run()["date"]}
            record["at_config_batch"], base = at_config_batch(config, overrides, args, device)
            record["largest_batch"] = {
                p: largest_batch(config, overrides, args, device, p, base) for p in PRECISIONS
            }
        except ABSENT as err:
            record = {"config": config, "skipped": " ".join(f"{type(err).__name__}: {err}".split())[:300]}
        configs[name] = record
        print(report({name: record}), flush=True)
        write_results(
            "gpu_scale", run, {"configs": configs}, args.out
        )  # after each config: partial runs keep
    print(report(configs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
