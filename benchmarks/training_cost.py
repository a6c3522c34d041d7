"""Training cost: step time and samples/s of ``training: joint`` vs ``training: autoencoder`` (issue: speed).

For (1) the paper's protein model (``configs/protein/paper_gifford.yaml``), (2)
``configs/protein/gifford.yaml`` and (3) each modality's default CPU config (a modality whose plugin or
data is absent is skipped, with the reason), one process builds both models from the config and times
them interleaved (A B A B ...): each repeat is one short ``Trainer.fit`` per model over batches collated
once (so data loading is not timed), and a step is the time from one ``on_train_batch_start`` to the
next (forward, backward, clipping, optimizer, EMA, loss check, logging). The first step of every fit is
a warm-up and is dropped. Reported: median and min–max over the steps, the joint/autoencoder ratio of
each repeat (median, min–max), the FLOP-limit ratio 1 + FLOPs(denoiser) / FLOPs(autoencoder) of one
step (``torch.utils.flop_counter.FlopCounterMode``, forward + backward; the joint step's FLOPs over the
autoencoder's), and the achieved GFLOP/s against plain ``torch.mm`` at the denoiser's shapes (and 2048³)
measured in the same run. Ablations of the speed switches on the paper config, as whole steps and
alone: Adam for-loop / foreach / fused (and its step alone), EMA off / every step / every 10 steps (and
the update alone: torch's ``AveragedModel.update_parameters`` vs diled's foreach update), the NaN check
every step vs every 50, the denoiser's skip input unaligned vs zero-padded to 16 columns (SkipMLP
``align``), the denoiser eager vs through ``torch.compile`` (``compile_denoiser``; the compilation falls
in the dropped warm-up step), dropout masks from ``nn.Dropout`` vs ``diled_core.RandDropout`` (joint
and autoencoder steps).
A profile of the first config's joint step (``--profile-steps``, :func:`step_profile`) splits its time
into the denoiser's matmuls (and their GFLOP/s), other matmuls, the optimizer step, the EMA and the rest.

    python benchmarks/training_cost.py [--quick] [--repeats 5] [--steps 6] [--skip-ablations]
    python benchmarks/training_cost.py --configs paper_gifford --ablations compile --out /tmp/compile.json

Prints a table and writes ``benchmarks/results/training_cost.json`` with the machine and its load
(``_common.write_results``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    build,
    collate,
    interleave,
    start_run,
    step_times,
    summary,
    write_results,
)

#: what building a config raises when its plugin (parser: no module) or its data (DataError) is absent
ABSENT = (ImportError, OSError, ValueError, KeyError, argparse.ArgumentError)
CONFIGS = {  # name -> config; the first is also the one the ablations use
    "paper_gifford": "configs/protein/paper_gifford.yaml",
    "gifford": "configs/protein/gifford.yaml",
    "protein_default": "configs/protein/demo.yaml",
    "text_default": "configs/text/vader_cpu.yaml",
    "image_default": "configs/image/fashion_mnist_cpu.yaml",
}
ABLATIONS = {  # group -> variant -> CLI overrides of the paper config (joint)
    "optimizer": {
        "adam_for_loop": [
            "--model.optimizer.init_args.fused",
            "false",
            "--model.optimizer.init_args.foreach",
            "false",
        ],
        "adam_foreach": [
            "--model.optimizer.init_args.fused",
            "false",
            "--model.optimizer.init_args.foreach",
            "true",
        ],
        "adam_fused": ["--model.optimizer.init_args.fused", "true"],
    },
    "ema": {
        "ema_off": ["--model.ema_decay", "null"],
        "ema_every_step": ["--model.ema_every", "1"],
        "ema_every_10": ["--model.ema_every", "10"],
    },
    "nan_check": {
        "nan_check_every_step": ["--model.nan_check_every", "1"],
        "nan_check_every_50": ["--model.nan_check_every", "50"],
    },
    "dropout": {  # the encoder's dropout 0.2: masks from bernoulli_ (nn.Dropout) or torch.rand
        "nn_dropout": ["--model.encoder.init_args.fast_dropout", "false"],
        "rand_dropout": ["--model.encoder.init_args.fast_dropout", "true"],
    },
    "skip_align": {  # SkipMLP's skip input 2048 + 30 = 2078 columns, or zero-padded to 2080
        "align_1": ["--model.denoiser.init_args.align", "1"],
        "align_16": ["--model.denoiser.init_args.align", "16"],
    },
    "compile": {  # the denoiser eager or through torch.compile (inductor; the first step compiles, untimed)
        "eager": ["--model.compile_denoiser", "false"],
        "compiled": ["--model.compile_denoiser", "true"],
    },
    "dropout_autoencoder": {  # the same in the autoencoder step, where dropout is a larger share
        "nn_dropout": ["--model.encoder.init_args.fast_dropout", "false", "--model.training", "autoencoder"],
        "rand_dropout": ["--model.encoder.init_args.fast_dropout", "true", "--model.training", "autoencoder"],
    },
}


# ------------------------------------------------------------------------------ measurements
def step_flops(model: Any, batch: dict) -> int:
    """FLOPs of one training step's forward and backward (matmuls, convolutions, attention)."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        model.objective(batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak(model: Any, batch_size: int, repeats: int) -> dict:
    """GFLOP/s of ``torch.mm`` at the shapes of the denoiser's largest linear layer (forward, and both
    matmuls of its backward) and at 2048³ (a large square one: small denoisers run far from the
    machine's peak), each from its fastest repeat; ``peak_gflops`` is the best of them."""
    linear = max(
        (m for m in model.denoiser.modules() if isinstance(m, nn.Linear)), key=lambda m: m.weight.numel()
    )
    n_out, n_in = linear.weight.shape
    shapes = {
        "forward": (batch_size, n_in, n_out),
        "grad_input": (batch_size, n_out, n_in),
        "grad_weight": (n_out, batch_size, n_in),
        "square_2048": (2048, 2048, 2048),
    }
    out = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        out[name] = {"shape": [m, k, n], "gflops": 2 * m * k * n / min(times) / 1e9}
    out["peak_gflops"] = max(v["gflops"] for v in out.values())
    return out


def trained(module: nn.Module | None) -> int:
    """Parameters the optimizer updates (EMA copies excluded)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters() if p.requires_grad)


def state_mb(module: nn.Module) -> float:
    """Size of the module's state dict (what a checkpoint's weights take), MB."""
    return sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 1e6


# ------------------------------------------------------------------------------ the two measurements
def compare(variants: dict[str, tuple], repeats: int, steps: int) -> dict[str, dict]:
    """Interleaved repeats of several (model, batches, trainer options): step times in ms per variant."""
    times: dict[str, list[list[float]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (model, batches, opts) in variants.items():
            times[name].append([1e3 * s for s in step_times(model, batches, steps, opts)])
    return {
        name: {
            "step_ms": summary([t for block in blocks for t in block]),
            "block_medians_ms": [statistics.median(b) for b in blocks],
        }
        for name, blocks in times.items()
    }


def training_cost(config: str, args: argparse.Namespace) -> dict:
    joint, dm, opts = build(config)
    ae, _, _ = build(config, "--model.training", "autoencoder")
    batches = collate(dm, args.steps + 3)
    batch = batches.batches[0]
    bs = next(v for v in batch.values() if torch.is_tensor(v)).shape[0]
    result = {
        "config": config,
        "batch_size": bs,
        "trainer": opts,
        "trained_parameters": {
            "denoiser": trained(joint.denoiser),
            "joint": trained(joint),
            "autoencoder": trained(ae),
        },
        "state_dict_mb": {"joint": state_mb(joint), "autoencoder": state_mb(ae)},
        "matmul": matmul_peak(joint, bs, args.mm_repeats),
    }
    flops = {"joint": step_flops(joint, batch), "autoencoder": step_flops(ae, batch)}
    timed = compare(
        {"joint": (joint, batches, opts), "autoencoder": (ae, batches, opts)}, args.repeats, args.steps
    )
    peak = result["matmul"]["peak_gflops"]
    for mode, t in timed.items():
        median_s = t["step_ms"]["median"] / 1e3
        gflops = flops[mode] / median_s / 1e9
        result[mode] = {
            **t,
            "samples_per_s": bs / median_s,
            "flops_per_step": flops[mode],
            "gflops_per_s": gflops,
            "fraction_of_matmul_peak": gflops / peak,
        }
    ratios = [
        a / b for a, b in zip(timed["joint"]["block_medians_ms"], timed["autoencoder"]["block_medians_ms"])
    ]
    result["joint_over_autoencoder"] = summary(ratios)
    result["flop_limit_ratio"] = flops["joint"] / flops["autoencoder"]
    return result


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")


def step_part(event: Any) -> str:
    """The part of a step a profiler event's self time belongs to, matmuls aside. Lightning runs forward
    and backward in the closure it passes to ``optimizer.step``, so under torch's ``Optimizer.step``
    range only the optimizer's fused or foreach kernels (and their children) are the optimizer; a
    ``_foreach_lerp_`` outside it is diled's EMA update (on a CPU its per-tensor ``lerp_`` calls are
    children)."""
    names = []
    while event is not None:
        names.append(event.name)
        event = event.cpu_parent
    in_optimizer = any(n.startswith("Optimizer.step") for n in names)
    if in_optimizer and any(n.startswith(("aten::_fused_adam", "aten::_foreach_")) for n in names):
        return "optimizer"
    if not in_optimizer and "aten::_foreach_lerp_" in names:
        return "ema"
    return "other_ops"


def matmul_part(event: Any, width: int) -> str | None:
    """``denoiser_matmuls`` or ``other_matmuls`` for a matmul event, else None."""
    if event.name not in MATMULS:
        return None
    ours = any(width in shape for shape in event.input_shapes if shape)
    return "denoiser_matmuls" if ours else "other_matmuls"


def step_profile(model: Any, batches: Any, steps: int, trainer_opts: dict) -> dict:
    """Where a training step's time goes: self CPU time per step under ``torch.profiler`` over ``steps``
    steps (after two untimed ones) of a ``Trainer.fit``, split into the denoiser's matmuls (an input
    dimension equal to its width; with their GFLOP/s), the other matmuls, the optimizer's kernels, the
    EMA update and the rest (other ops, and time outside ops): :func:`matmul_part`, :func:`step_part`.
    The profiler's own cost inflates the many small ops: the parts add up to a slower step than the
    timed one."""
    from torch.profiler import ProfilerActivity, profile, schedule

    import lightning.pytorch as pl

    width = max(m.out_features for m in model.denoiser.modules() if isinstance(m, nn.Linear))
    prof = profile(
        activities=[ProfilerActivity.CPU],
        record_shapes=True,
        with_flops=True,
        schedule=schedule(wait=1, warmup=1, active=steps),
    )

    class Step(pl.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            prof.step()

    with prof:
        step_times(model, batches, steps, {**trainer_opts, "callbacks": [Step()]})
    parts = dict.fromkeys(("denoiser_matmuls", "other_matmuls", "optimizer", "ema", "other_ops"), 0.0)
    denoiser_flops = 0
    for e in prof.events():
        part = matmul_part(e, width) or step_part(e)
        parts[part] += e.self_cpu_time_total
        denoiser_flops += (e.flops or 0) if part == "denoiser_matmuls" else 0
    ms = {k: v / 1e3 / steps for k, v in parts.items()}  # profiler times are in microseconds
    return {
        "steps": steps,
        "ms_per_step": ms,
        "profiled_step_ms": sum(ms.values()),
        "denoiser_matmul_gflops": denoiser_flops / steps / (ms["denoiser_matmuls"] / 1e3) / 1e9,
    }


def ema_update_only(model: Any, repeats: int) -> dict:
    """The EMA update alone on the config's denoiser: torch's AveragedModel path vs diled's foreach one."""
    from diled_core.module import ema_lerp_
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model.denoiser, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
    ema.update_parameters(model.denoiser)
    tensors = lambda m: list(m.parameters()) + list(m.buffers())  # noqa: E731
    runs = {
        "averaged_model_update_parameters": lambda: ema.update_parameters(model.denoiser),
        "foreach_lerp": lambda: ema_lerp_(tensors(ema.module), tensors(model.denoiser), 1e-3),
    }
    return {name: summary([1e3 * t for t in ts]) for name, ts in interleave(runs, repeats).items()}


def optimizer_step_only(model: Any, repeats: int) -> dict:
    """One Adam step alone over the model's trained parameters (random gradients): for-loop, foreach,
    fused."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    kinds = {
        "adam_for_loop": {"foreach": False},
        "adam_foreach": {"foreach": True},
        "adam_fused": {"fused": True},
    }
    runs = {name: torch.optim.Adam(params, lr=1e-9, **kw).step for name, kw in kinds.items()}
    times = interleave(runs, repeats)
    model.zero_grad(set_to_none=True)
    return {name: summary([1e3 * t for t in ts]) for name, ts in times.items()}


def ablations(config: str, args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {}
    for group, variants in ABLATIONS.items():
        if group not in args.ablations:
            continue
        built = {}
        for name, overrides in variants.items():
            model, dm, opts = build(config, *overrides)
            built[name] = (model, collate(dm, args.steps + 3), opts)
        out[group] = compare(built, args.repeats, args.steps)
        if group == "optimizer":
            out["optimizer_step_only_ms"] = optimizer_step_only(built["adam_fused"][0], max(args.repeats, 3))
        if group == "ema":
            out["ema_update_only_ms"] = ema_update_only(
                built["ema_off"][0], max(args.repeats * args.steps, 5)
            )
        del built
    return out


# ------------------------------------------------------------------------------ report
def table(results: dict) -> str:
    lines = [
        f"{'config':<16} {'mode':<12} {'step ms median [min-max]':>26} {'samples/s':>10} {'GFLOP/s':>8} "
        f"{'% peak':>7} {'joint/AE [min-max]':>20} {'FLOP limit':>10}"
    ]
    for name, r in results["configs"].items():
        if "skipped" in r:
            lines.append(f"{name:<16} skipped: {r['skipped']}")
            continue
        ratio = r["joint_over_autoencoder"]
        for mode in ("joint", "autoencoder"):
            m, s = r[mode], r[mode]["step_ms"]
            cells = (
                f"{ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]",
                f"{r['flop_limit_ratio']:.2f}",
            )
            lines.append(
                f"{name:<16} {mode:<12} {s['median']:>10.1f} [{s['min']:.1f}-{s['max']:.1f}]".ljust(56)
                + f"{m['samples_per_s']:>10.0f} {m['gflops_per_s']:>8.1f} "
                f"{100 * m['fraction_of_matmul_peak']:>6.1f}% "
                + (f"{cells[0]:>20} {cells[1]:>10}" if mode == "joint" else "")
            )
        lines.append(
            f"{'':<16} matmul peak {r['matmul']['peak_gflops']:.1f} GFLOP/s (torch.mm); "
            f"denoiser {r['trained_parameters']['denoiser'] / 1e6:.1f}M parameters; weights "
            f"{r['state_dict_mb']['joint']:.0f} MB joint, {r['state_dict_mb']['autoencoder']:.1f} MB AE"
        )
    if "profile" in results:
        p = results["profile"]
        parts = ", ".join(f"{k} {v:.1f}" for k, v in p["ms_per_step"].items())
        lines.append(
            f"profile of {p['config']}, ms per step ({p['profiled_step_ms']:.1f} profiled): {parts}; "
            f"denoiser matmuls at {p['denoiser_matmul_gflops']:.1f} GFLOP/s"
        )
    for group, variants in results.get("ablations", {}).items():
        for name, v in variants.items():
            s = v.get("step_ms", v)
            lines.append(
                f"ablation {group:<18} {name:<34} {s['median']:>9.2f} ms [{s['min']:.2f}-{s['max']:.2f}]"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats of 2 steps: checks that it works")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved fits per model")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per fit")
    parser.add_argument(
        "--mm-repeats", type=int, default=30, help="torch.mm repeats per shape (fastest kept)"
    )
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--profile-steps", type=int, default=4, help="steps of the first config profiled (0: none)"
    )
    parser.add_argument("--skip-ablations", action="store_true")
    parser.add_argument(
        "--ablations", nargs="*", default=list(ABLATIONS), choices=list(ABLATIONS), help="groups to run"
    )
    parser.add_argument("--out", type=Path, help="default benchmarks/results/training_cost.json")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps, args.mm_repeats, args.profile_steps = 2, 2, 10, 1
    os.chdir(REPO)  # configs name data relative to the repository root
    import lightning.pytorch  # noqa: F401  (its import sets its logger's level: quiet it afterwards)

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    run = start_run(args)
    results: dict[str, Any] = {"configs": {}}
    for name in args.configs:
        print(f"== {name}: {CONFIGS[name]}", flush=True)
        try:
            results["configs"][name] = training_cost(CONFIGS[name], args)
        except ABSENT as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
            print(f"   skipped: {reason}", flush=True)
            results["configs"][name] = {"config": CONFIGS[name], "skipped": reason}
    first = args.configs[0] if args.configs else None
    if args.profile_steps and first and "skipped" not in results["configs"][first]:
        print(f"== profile of the joint step of {CONFIGS[first]}", flush=True)
        model, dm, opts = build(CONFIGS[first])
        batches = collate(dm, args.profile_steps + 3)
        profile = step_profile(model, batches, args.profile_steps, opts)  # as timed
        results["profile"] = {"config": CONFIGS[first], **profile}
        del model
    if not args.skip_ablations and first and "skipped" not in results["configs"][first]:
        print(f"== ablations on {CONFIGS[first]}", flush=True)
        results["ablations"] = ablations(CONFIGS[first], args)
    print(table(results))
    write_results("training_cost", run, results, args.out)


if __name__ == "__main__":
    main()
