"""The README's "Performance" section, generated from ``benchmarks/results/*.json`` (issue: benchmarks).

One table line per headline figure, with the date and the machine of the run that measured it; the
section sits between ``<!-- performance:start -->`` and ``<!-- performance:end -->`` (added before
"## Reliability" the first time). Never type it by hand: ``make bench`` / ``make bench-quality``
rerun the benchmarks, then this.

    python benchmarks/readme_performance.py           # rewrite the section
    python benchmarks/readme_performance.py --check   # exit 1 when README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- performance:start -->", "<!-- performance:end -->"
ANCHOR = "## Reliability"
Line = tuple[str, str]  # (figure, value)


def span(s: dict, unit: str = "×", digits: int = 2) -> str:
    """``median unit [min-max]`` of a summary dict."""
    if s.get("n", 1) > 1:
        return f"{s['median']:.{digits}f}{unit} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"
    return f"{s['median']:.{digits}f}{unit}"


# ------------------------------------------------------------------------------ one extractor per file
def protein_authors(r: dict) -> list[Line]:
    ratios = r["ratios"]
    size = "paper size" if "paper" in r["config"] else Path(r["config"]).name
    return [
        (
            f"diled joint step / authors' joint step ({size}, batch {r['batch_size']}; target ≤ 0.8)",
            span(ratios["diled_joint_over_authors_joint"]),
        ),
        ("diled autoencoder step / authors' autoencoder step", span(ratios["diled_ae_over_authors_ae"])),
    ]


#: training_cost ablations shown as paired ratios: (group, label, variant, baseline variant)
ABLATION_LINES = [
    ("dropout", "joint step, RandDropout / nn.Dropout masks", "rand_dropout", "nn_dropout"),
    ("dropout_autoencoder", "autoencoder step, RandDropout / nn.Dropout masks", "rand_dropout", "nn_dropout"),
    ("skip_align", "joint step, SkipMLP skip input aligned to 16 columns / unaligned", "align_16", "align_1"),
    ("compile", "joint step, denoiser through torch.compile / eager", "compiled", "eager"),
]


def training_cost(r: dict) -> list[Line]:
    lines = []
    for c in r["configs"].values():
        if "skipped" in c:
            continue
        rates = ", ".join(f"{arm} {c[arm]['samples_per_s']:,.0f}" for arm in ("joint", "autoencoder"))
        lines.append(
            (
                f"joint / autoencoder step, {c['config']} (FLOP limit {c['flop_limit_ratio']:.2f}×; "
                f"samples/s {rates})",
                span(c["joint_over_autoencoder"]),
            )
        )
        share = 100 * c["joint"]["fraction_of_matmul_peak"]
        lines.append((f"joint step's GFLOP/s vs matmul peak, {c['config']}", f"{share:.0f} %"))
    if "profile" in r:
        p = r["profile"]
        parts = ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in p["ms_per_step"].items())
        lines.append(
            (
                f"joint step under torch.profiler, ms per step, {p['config']}",
                f"{p['profiled_step_ms']:.0f}: {parts}; the denoiser's matmuls at "
                f"{p['denoiser_matmul_gflops']:.0f} GFLOP/s",
            )
        )
    for group, label, fast, plain in ABLATION_LINES:
        if group in r.get("ablations", {}):
            ratios = sorted(
                a / b
                for a, b in zip(*(r["ablations"][group][v]["block_medians_ms"] for v in (fast, plain)))
            )
            paired = {
                "median": statistics.median(ratios),
                "min": ratios[0],
                "max": ratios[-1],
                "n": len(ratios),
            }
            lines.append((f"{label} (paper size)", span(paired)))
    return lines


#: the generation metrics shown beside the times, where a run recorded them
GENERATION_METRICS = ("validity", "uniqueness", "novelty", "diversity")


def generation(r: dict) -> list[Line]:
    """One line per sampler: the time of each precision, then its generation metrics."""
    lines = []
    for sampler in dict.fromkeys(x["sampler"] for x in r["generation"]):
        rows = [x for x in r["generation"] if x["sampler"] == sampler]
        value = ", ".join(f"{x['precision']} {x['seconds']['median']:.1f} s" for x in rows)
        for x in rows:
            shown = [f"{k} {x['metrics'][k]:.3f}" for k in GENERATION_METRICS if k in x.get("metrics", {})]
            if shown:
                value += f"; {x['precision']}: " + ", ".join(shown)
        if not any(x.get("metrics") for x in rows):
            value += "; no generation metrics recorded"
        what = f"generate {rows[0]['samples']} samples, {sampler.upper()} ({Path(r['config']).name})"
        lines.append((what, value))
    for c in r.get("diffusers", []):
        value = f"{span(c['time_ratio_diled_over_diffusers'])}; {c['relative_diff']:.0e}"
        lines.append(
            (
                f"diled / diffusers sampler: time, and max\\|Δ\\|/RMS of the samples, {c['sampler'].upper()}",
                value,
            )
        )
    return lines


def data_pipeline(r: dict) -> list[Line]:
    ran = {k: v for k, v in r["pipelines"].items() if "skipped" not in v}
    lines = []
    if ran:
        name, worst = min(ran.items(), key=lambda kv: kv[1]["loader_over_step"]["median"])
        lines.append(
            (
                f"dataloader / training-step rate, slowest of {len(ran)} datamodules ({name})",
                span(worst["loader_over_step"], digits=1),
            )
        )
    for f in r["fit_peak_rss"]:
        if f.get("peak_rss_mb") and f.get("returncode") == 0:
            lines.append(
                (f"peak RSS of a {f['max_steps']}-step fit, {f['config']}", f"{f['peak_rss_mb']:.0f} MB")
            )
    return lines


def ddp_scale(r: dict) -> list[Line]:
    value = span(r["two_over_one"]) + f" (vs 1 process with 1 thread: {span(r['two_over_one_thread'])})"
    return [(f"samples/s, 2 DDP processes / 1 process (CPU, gloo, {r['config']})", value)]


def predict_memory(r: dict) -> list[Line]:
    rows = {x["num_samples"]: x for x in r["rows"]}
    big = max(rows)
    ratio = rows[big].get("ratio_to_2000")
    return [(f"peak RSS of diled predict, {big:,} / 2,000 samples", f"{ratio:.2f}×" if ratio else "—")]


def gpu_scale(r: dict) -> list[Line]:
    """Per config: samples/s fp32 -> bf16 at the config's batch, and at the largest batches that ran."""
    lines = []
    for name, c in r["configs"].items():
        if "skipped" in c:
            continue
        at, big = c["at_config_batch"], c["largest_batch"]
        fp32, bf16 = (at[p]["samples_per_s"]["median"] for p in ("32-true", "bf16-mixed"))
        best = {p: max(x["samples_per_s"] for x in big[p]["rows"]) for p in big}
        largest = " / ".join(
            ("" if big[p]["stopped_by"] == "out_of_memory" else "≥") + f"{big[p]['largest']:,}" for p in big
        )
        lines.append(
            (
                f"GPU samples/s fp32 → bf16, {name} (batch {at['batch_size']}; at the largest batches, "
                f"fp32 / bf16: {largest})",
                f"{fp32:,.0f} → {bf16:,.0f}; {best['32-true']:,.0f} → {best['bf16-mixed']:,.0f}",
            )
        )
    return lines


EXTRACTORS: dict[str, Callable[[dict], list[Line]]] = {
    "protein_authors": protein_authors,
    "training_cost": training_cost,
    "training_cost_compile": training_cost,  # --configs paper_gifford --ablations compile --out ...
    "generation": generation,
    "data_pipeline": data_pipeline,
    "ddp_scale": ddp_scale,
    "predict_memory": predict_memory,
    "gpu_scale": gpu_scale,
}


# ------------------------------------------------------------------------------ the section
def cpu_label(m: dict) -> str:
    return f"{m.get('cpu_model', '?')} ×{m.get('cpu_count', '?')}"


def run_label(r: dict) -> tuple[str, str]:
    """(date, machine) of a results file; 'not recorded' where the file has none."""
    date = str(r.get("date", "not recorded"))[:10]
    m = r.get("machine")
    if not m:
        return date, "not recorded"
    machine = cpu_label(m) + (f", {m['gpu']}" if m.get("gpu") else "")
    if "load_avg_1min_start" in m:
        machine += f", load {m['load_avg_1min_start']:.1f}→{m.get('load_avg_1min_end', float('nan')):.1f}"
    if (r.get("args") or {}).get("quick"):
        machine += ", quick"
    return date, machine


def quality(stem: str, r: dict) -> list[str]:
    """A quality benchmark's own table (``table``: a header row, then rows of cells) as markdown; a run
    whose arms were trained and decoded elsewhere (``trained_and_decoded_on``, e.g. a lent GPU) or whose
    perplexities were scored elsewhere (``ppl_scored_on``) says so, and the label names the minutes per arm
    and the extra ``fit_args`` where the run had them; a table of several runs (``runs``, from
    ``combine_runs.py``) names each run's ``fit_args`` and the rows or columns it ``lacks``."""
    date, machine = run_label(r)
    apart = bool(r.get("runs")) and not r.get("machine")  # combine_runs.py: the runs' machines differ
    if apart:
        machine = "machines differ"
    if elsewhere := r.get("trained_and_decoded_on"):
        where = elsewhere.get("gpu") or cpu_label(elsewhere)
        machine = f"trained and decoded on {where}, scored on {machine}"
    if scored := r.get("ppl_scored_on"):
        machine += f"; reference-LM perplexity scored on {cpu_label(scored)}"
    if minutes := r.get("minutes") or (r.get("args") or {}).get("minutes"):
        machine += f"; {minutes:g} min per arm"
    if fit_args := (r.get("args") or {}).get("fit_args"):
        machine += f"; `--fit-args '{fit_args}'`"
    if runs := r.get("runs"):  # benchmarks/combine_runs.py
        dates = sorted({str(run.get("date") or "not recorded")[:10] for run in runs})
        date = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
        each = "; ".join(
            (f"`{run['fit_args']}`" if run.get("fit_args") else "defaults")
            + (f" on {cpu_label(run.get('machine') or {})}" if apart else "")
            + (f" (no {', '.join(run['lacks'])})" if run.get("lacks") else "")
            for run in runs
        )
        over = " (each cell over the runs that have its row and column)"
        over = over if any(run.get("lacks") for run in runs) else ""
        machine += f"; median [min–max] of {len(runs)} runs{over}: {each}"
    head, *body = r["table"]
    modes = {a.get("interpolation_mode") for a in (r.get("arms") or {}).values() if isinstance(a, dict)}
    if "slerp" in modes and not any("slerp" in cell for cell in head):  # before the columns named the path
        machine += "; the diffusion arms interpolate by slerp of DDIM-inverted latents"
    return [
        f"`{stem}` ({date}; {machine}):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(cell.strip() for cell in row) + " |" for row in body),
        "",
    ]


def section(results: Path) -> str:
    rows, others, tables = [], [], []
    for path in sorted(results.glob("*.json")):
        record: dict[str, Any] = json.loads(path.read_text())
        extract = EXTRACTORS.get(path.stem)
        if extract is None and isinstance(record.get("table"), list):
            tables += quality(path.stem, record)
            continue
        if extract is None:
            others.append(f"`{path.name}`")
            continue
        date, machine = run_label(record)
        try:
            lines = extract(record)
        except (KeyError, TypeError, ValueError, IndexError, StopIteration) as err:
            why = " ".join(f"{type(err).__name__} {err}".split()).replace("|", "/")
            lines = [(f"{path.name}: format not recognised ({why})", "—")]
        rows += [f"| {what} | {value} | {date} | {machine} | `{path.stem}` |" for what, value in lines]
    out = [
        "## Performance",
        "",
        "Generated by `python benchmarks/readme_performance.py` from `benchmarks/results/*.json`",
        "(`make bench` reruns the speed benchmarks, `make bench-quality` the quality ones, then this);",
        "never typed. Ratios are medians over repeats",
        'interleaved in one process, [min–max]; "quick" marks a smoke run; load: the 1-minute load average',
        "at start→end.",
        "",
        "| figure | value | date | machine | script |",
        "|---|---|---|---|---|",
        *rows,
    ]
    if tables:
        out += ["", "### Quality", "", "Each table as its benchmark printed it; the cells of a table of"]
        out += ["several runs are median [min–max] over them (`benchmarks/combine_runs.py`).", ""]
        out += tables[:-1]
    if others:
        out += ["", "Other results (quality, not speed): " + ", ".join(others) + "."]
    return "\n".join([START, *out, END]) + "\n"


def updated(readme: str, new: str) -> str:
    if START in readme and END in readme:
        head, rest = readme.split(START, 1)
        return head + new + "\n" + rest.split(END, 1)[1].lstrip("\n")
    if ANCHOR not in readme:
        raise SystemExit(
            f"README has neither the {START} markers nor a {ANCHOR!r} heading to put them before"
        )
    head, rest = readme.split(ANCHOR, 1)
    return head + new + "\n" + ANCHOR + rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the README is out of date")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    readme = args.readme.read_text()
    new = updated(readme, section(args.results))
    if args.check:
        if new != readme:
            print(
                f"{args.readme}: the Performance section is out of date with {args.results}/*.json; "
                "regenerate it with `python benchmarks/readme_performance.py` (never edit it by hand)."
            )
            return 1
        print(f"{args.readme}: the Performance section is up to date")
        return 0
    if new != readme:
        args.readme.write_text(new)
        print(f"rewrote the Performance section of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
