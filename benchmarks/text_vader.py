"""Text benchmark on the VADER rated sentences (issue #9; a stand-in for the paper's Yelp).

Trains ``configs/text/vader_cpu.yaml`` (MiniLM encoder, small GPT-2-architecture decoder from scratch)
three times under the same wall-clock budget (default 20 minutes on this machine's CPU cores):
``training=joint`` (DiLED), ``two_stage`` (autoencoder for half the joint run's steps, then the
latent diffusion on the frozen autoencoder) and ``autoencoder`` (no latent diffusion: it cannot
generate). Then each is evaluated through ``diled predict`` on the same held-out test sentences:

* reconstruct: BLEU of the reconstruction from μ against the input (as the tokenizer writes it);
* generate (``--samples`` sentences, 50-step DDIM, greedy decoding): perplexity under SmolLM2-135M
  (``ref_ppl_smollm2_135m``), MAUVE on MiniLM features (``mauve_minilm``, not the paper's GPT-2-large
  MAUVE), distinct-1/2, self-BLEU, length; the same figures for held-out real sentences beside them;
* transfer (latent arithmetic to the other sentiment): accuracy under a logistic regression on MiniLM
  features trained on the validation split, whose accuracy on real test sentences is the real column.

    python benchmarks/text_vader.py [--minutes 20] [--arms joint two_stage autoencoder]
    python benchmarks/text_vader.py --max-steps 3 --samples 16 --examples 16   # a smoke run
    python benchmarks/text_vader.py --config configs/text/smollm2.yaml --arms joint \
        --fit-args '--trainer.precision bf16-mixed --data.init_args.batch_size 128'   # on a GPU

On a machine without the reference LM's weights (a lent GPU), train and predict there with
``--reference-lm null --save-predictions DIR``, then score the perplexities where the weights are:

    python benchmarks/text_vader.py --score-ppl DIR --out benchmarks/results/NAME.json

Prints a table and writes ``benchmarks/results/text_vader.json`` (with the machine, the load at start
and end, and the steps each arm trained).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import shutil
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, load_avg, machine_info, max_time, run_child, start_run  # noqa: E402

CONFIG = REPO / "configs" / "text" / "vader_cpu.yaml"
ARMS = ("joint", "two_stage", "autoencoder")
#: (task, metric key, label, key of the held-out real figure or None); {lm} is the reference LM's name
ROWS = [
    ("reconstruct", "bleu", "reconstruction BLEU (test)", None),
    ("reconstruct", "token_accuracy", "reconstruction token accuracy", None),
    ("generate", "ref_ppl_{lm}", "generation perplexity, ref LM {lm}", "real_ref_ppl_{lm}"),
    ("generate", "mauve_minilm", "MAUVE on MiniLM features", "real_mauve_minilm"),
    ("generate", "distinct_1", "distinct-1", "real_distinct_1"),
    ("generate", "distinct_2", "distinct-2", "real_distinct_2"),
    ("generate", "self_bleu", "self-BLEU (lower: more diverse)", "real_self_bleu"),
    ("generate", "length_mean", "length (tokens)", "real_length_mean"),
    (
        "transfer",
        "transfer_accuracy_minilm_logreg",
        "sentiment transfer accuracy",
        "classifier_accuracy_minilm_logreg",
    ),
    ("transfer", "transfer_accuracy_unchanged_minilm_logreg", "  same, inputs left unchanged", None),
    ("transfer", "bleu_to_input", "transfer BLEU to the input (content kept)", None),
    ("transfer", "distinct_2", "transfer distinct-2", None),
    ("transfer", "ref_ppl_{lm}", "transferred perplexity, ref LM {lm}", None),
]


def diled(*args: str) -> None:
    run_child([sys.executable, "-m", "diled_core.cli", *args], cwd=REPO)


def fit(arm: str, args: argparse.Namespace, stage_one: int) -> tuple[Path, float]:
    """Train one arm; its last checkpoint and the fit's wall-clock seconds."""
    root = args.root / arm
    extra = ["--trainer.max_steps", str(args.max_steps)] if args.max_steps else []
    start = time.time()
    diled(
        "fit",
        "--config",
        str(args.config),
        "--data.init_args.path",
        str(args.data),
        "--trainer.default_root_dir",
        str(root),
        "--trainer.max_time",
        max_time(args.minutes),
        "--model.training",
        arm,
        "--model.stage_one_steps",
        str(stage_one),
        *extra,
        *shlex.split(args.fit_args),
    )
    seconds = time.time() - start
    runs = sorted(root.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    return runs[-1] / "checkpoints" / "last.ckpt", seconds  # this run's (earlier runs keep theirs)


def evaluate(arm: str, ckpt: Path, args: argparse.Namespace) -> dict:
    """``diled predict`` of ``args.tasks`` (reconstruct, generate: not for the autoencoder, transfer):
    metrics.json; with ``--save-predictions`` the files each task wrote and the run's config, copied."""
    out = ckpt.parents[1] / "predictions"
    common = [
        "--config",
        str(ckpt.parents[1] / "config.yaml"),
        "--ckpt_path",
        str(ckpt),
        "--prediction.output_dir",
        str(out),
        "--prediction.overwrite",
        "true",
        "--data.init_args.reference_lm",
        args.reference_lm,
        "--data.init_args.eval_samples",
        str(args.samples),
        "--prediction.decode",
        args.decode,
    ]
    examples = ["--prediction.max_examples", str(args.examples)] if args.examples else []
    tasks = {"reconstruct": examples, "generate": ["--prediction.num_samples", str(args.samples)]}
    tasks["transfer"] = examples
    if arm == "autoencoder":
        del tasks["generate"]  # no latent diffusion to sample from
    for task, extra in tasks.items():
        if task in args.tasks:
            diled("predict", *common, "--prediction.task", task, *extra)
    if args.save_predictions:
        keep = args.save_predictions / arm
        keep.mkdir(parents=True, exist_ok=True)
        for path in [ckpt.parents[1] / "config.yaml", *out.glob("*.t[sx][vt]"), out / "metrics.json"]:
            shutil.copy(path, keep / path.name)
    return json.loads((out / "metrics.json").read_text())


def generated(folder: Path) -> list[str]:
    """The sentences of a ``generate`` run's ``samples.txt`` (one per line, empty ones kept)."""
    return (folder / "samples.txt").read_text(encoding="utf-8").split("\n")[:-1]


def transferred(folder: Path) -> list[str]:
    """The transferred sentences of a ``transfer`` run's ``transfers.tsv``."""
    with (folder / "transfers.tsv").open(encoding="utf-8", newline="") as f:
        return [row["output"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def score_ppl(args: argparse.Namespace) -> dict:
    """The results a ``--reference-lm null --save-predictions DIR`` run wrote, with the reference LM's
    perplexity of each arm's generated (``samples.txt``) and transferred (``transfers.tsv``) sentences
    and of the held-out real ones (rebuilt from the arm's config) filled in, as ``diled predict`` would."""
    from _common import build
    from diled_text.reference_lm import load_reference_lm, perplexity

    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # it prints the whole config
    results = json.loads((args.score_ppl / "results.json").read_text())
    lm = load_reference_lm(args.reference_lm)
    if lm is None:
        raise SystemExit(
            f"text_vader: --score-ppl needs a reference LM (got --reference-lm {args.reference_lm})"
        )
    key, real_key, samples = f"ref_ppl_{lm.name}", f"real_ref_ppl_{lm.name}", results["args"]["samples"]
    for arm, entry in results["arms"].items():
        folder = args.score_ppl / arm
        # not the other machine's device, data folder and tokenizer path (filled from the data again)
        here = [
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            "1",
            "--data.init_args.path",
            str(args.data),
        ]
        _, dm, _ = build(folder / "config.yaml", *here, "--model.decoder.init_args.tokenizer", "null")
        dm.setup("predict")
        for task, sentences in (("generate", generated), ("transfer", transferred)):
            if task in entry["metrics"]:
                nll, tokens = lm.score(sentences(folder))
                entry["metrics"][task].update(perplexity(key, float(nll.sum()), float(tokens.sum())))
        if "generate" in entry["metrics"]:
            nll, tokens = lm.score(dm.held_out("test", samples).texts)
            entry["metrics"]["generate"].update(perplexity(real_key, float(nll.sum()), float(tokens.sum())))
    results["ppl_scored_on"] = {**machine_info(), "load_avg_1min_end": load_avg()}
    return results


def steps_of(ckpt: Path) -> int:
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])


def table(results: dict, lm: str) -> list[list[str]]:
    arms = list(results["arms"])
    rows = [
        ["metric", *arms, "held-out real"],
        ["optimizer steps", *(str(results["arms"][a]["steps"]) for a in arms), ""],
    ]

    def cell(metrics: dict, task: str, key: str | None) -> str:
        value = metrics.get(task, {}).get(key.format(lm=lm)) if key else None
        return "n/a" if value is None else f"{value:.4g}"

    real = {}
    for arm in arms:  # the held-out real figures are the same in every arm: take the first that has them
        for task, metrics in results["arms"][arm]["metrics"].items():
            real.setdefault(task, metrics)
    for task, key, label, real_key in ROWS:
        values = [cell(results["arms"][a]["metrics"], task, key) for a in arms]
        rows.append([label.format(lm=lm), *values, cell(real, task, real_key) if real_key else ""])
    return rows


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="wall-clock training budget per arm")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="also stop each arm after this many steps"
    )
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "text" / "vader")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "bench_text_vader")
    parser.add_argument(
        "--stage-one-steps", type=int, default=None, help="two_stage: default half of joint's (else 1000)"
    )
    parser.add_argument("--samples", type=int, default=500, help="generated and held-out real sentences")
    parser.add_argument("--examples", type=int, default=None, help="test sentences (default: all)")
    parser.add_argument(
        "--reference-lm", default="smollm2", help="smollm2, a local causal-LM folder, or null"
    )
    parser.add_argument("--decode", default="{max_length: 32}", help="--prediction.decode of every task")
    parser.add_argument(
        "--fit-args",
        default="",
        help="more `diled fit` arguments for every arm, e.g. on a GPU: "
        "'--trainer.precision bf16-mixed --data.init_args.batch_size 128'",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=("reconstruct", "generate", "transfer"),
        default=["reconstruct", "generate", "transfer"],
        help="the predict tasks each arm is evaluated on",
    )
    parser.add_argument(
        "--save-predictions",
        type=Path,
        default=None,
        help="also copy each arm's prediction files and config to DIR/<arm>/ and the results to "
        "DIR/results.json (for --score-ppl on another machine)",
    )
    parser.add_argument(
        "--score-ppl",
        type=Path,
        default=None,
        help="no training: add the reference LM's perplexities to the results a --save-predictions DIR "
        "run wrote (made with --reference-lm null), and print and write them to --out",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "text_vader.json")
    args = parser.parse_args(argv)
    if args.save_predictions and args.score_ppl:
        parser.error("--save-predictions and --score-ppl are the two halves of one run: give one of them")
    if args.score_ppl and not (args.score_ppl / "results.json").is_file():
        parser.error(f"--score-ppl: no results.json in {args.score_ppl}: write it with --save-predictions")
    if not any(args.data.glob("*_GroundTruth.txt")):
        print(
            f"text_vader: no VADER *_GroundTruth.txt files in {args.data}; pass --data DIR", file=sys.stderr
        )
        return 2
    from diled_text.reference_lm import reference_lm_name

    lm = reference_lm_name(None if args.reference_lm == "null" else args.reference_lm) or "off"
    if args.score_ppl:
        finish(score_ppl(args), lm, args)
        return 0
    run = start_run(args)
    results: dict = {"date": run["date"], "args": run["args"], "arms": {}}
    stage_one = args.stage_one_steps or 1000
    for arm in args.arms:
        ckpt, seconds = fit(arm, args, stage_one)
        steps = steps_of(ckpt)
        if arm == "joint" and args.stage_one_steps is None:  # two_stage: half the joint run's steps
            stage_one = max(1, steps // 2)
        entry = {"steps": steps, "fit_seconds": round(seconds, 1), "checkpoint": str(ckpt)}
        if arm == "two_stage":
            entry["stage_one_steps"] = stage_one
        entry["metrics"] = evaluate(arm, ckpt, args)
        results["arms"][arm] = entry
        print(f"text_vader: {arm}: {steps} steps in {seconds:.0f} s", flush=True)
        write(results, args)  # so far: a run cut short keeps the arms it finished
    machine = machine_info()  # as benchmarks/_common.write_results records it, to --out
    machine.update(load_avg_1min_start=run["load_avg_1min_start"], load_avg_1min_end=load_avg())
    results["machine"] = machine
    finish(results, lm, args)
    return 0


def finish(results: dict, lm: str, args: argparse.Namespace) -> None:
    """Print the table and write the results."""
    rows = table(results, lm)
    results["table"] = rows
    print()
    print_table(rows)
    print(
        "\nheld-out real: the same figure for real test sentences, as the tokenizer writes them (MAUVE:"
        "\nvalidation against test sentences; transfer row: the evaluation classifier's accuracy on real"
        "\ntest sentences, the ceiling of transfer accuracy). n/a: not measured (the autoencoder cannot"
        "\ngenerate; a perplexity of empty outputs)."
    )
    write(results, args)
    print(f"\ntext_vader: wrote {args.out}")


def write(results: dict, args: argparse.Namespace) -> None:
    """The results to ``--out`` (and to ``--save-predictions`` DIR/results.json)."""
    text = json.dumps(results, indent=2, default=str, allow_nan=False)
    for path in [args.out] + ([args.save_predictions / "results.json"] if args.save_predictions else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
