"""The README's "Performance" section is generated from ``benchmarks/results/*.json``, never typed by hand
(``benchmarks/readme_performance.py``; ``make bench`` reruns the benchmarks, then it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "readme_performance.py"
FIX = "python benchmarks/readme_performance.py"


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", *args], cwd=REPO, capture_output=True, text=True
    )


def test_readme_performance_section_matches_the_results() -> None:
    proc = check()
    assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}\nregenerate it: {FIX}"


def test_check_refuses_a_hand_edited_section(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    head, section = readme.split("<!-- performance:start -->", 1)
    edited = head + "<!-- performance:start -->" + section.replace("| figure |", "| figures |", 1)
    assert edited != readme
    (tmp_path / "README.md").write_text(edited)
    proc = check("--readme", str(tmp_path / "README.md"))
    assert proc.returncode == 1
    assert FIX in proc.stdout


def test_a_quality_benchmark_table_is_rendered_as_printed(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    table = [["metric", "joint", "held-out real"], ["BLEU", "12.5", ""], ["  perplexity", "40.1", "30.2"]]
    (results / "some_quality.json").write_text(json.dumps({"date": "2026-11-25T20:00", "table": table}))
    gpu = {"date": "2026-11-26T10:40", "table": table, "machine": {"cpu_model": "EPYC", "cpu_count": 2}}
    gpu["trained_and_decoded_on"] = {"cpu_model": "Xeon", "cpu_count": 16, "gpu": "NVIDIA H100"}
    gpu |= {"minutes": 1.5, "args": {"fit_args": "--trainer.precision bf16-mixed"}}
    (results / "some_quality_gpu.json").write_text(json.dumps(gpu))
    text_gpu = {"date": "2026-11-26T13:30", "table": table, "args": {"minutes": 1.75}}
    text_gpu |= {"machine": {"cpu_model": "Xeon", "cpu_count": 16, "gpu": "NVIDIA H100"}}
    text_gpu["ppl_scored_on"] = {"cpu_model": "EPYC", "cpu_count": 2}
    (results / "text_quality_gpu.json").write_text(json.dumps(text_gpu))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Reliability\n")
    subprocess.run(
        [sys.executable, str(SCRIPT), "--readme", str(readme), "--results", str(results)], check=True
    )
    text = readme.read_text()
    assert "`some_quality` (2026-11-25; not recorded):" in text
    gpu_label = "trained and decoded on NVIDIA H100, scored on EPYC ×2; 1.5 min per arm"
    assert (
        f"`some_quality_gpu` (2026-11-26; {gpu_label}; `--fit-args '--trainer.precision bf16-mixed'`):"
        in text
    )
    text_label = "Xeon ×16, NVIDIA H100; reference-LM perplexity scored on EPYC ×2; 1.75 min per arm"
    assert f"`text_quality_gpu` (2026-11-26; {text_label}):" in text
    assert (
        "| metric | joint | held-out real |\n|---|---|---|\n| BLEU | 12.5 |  |\n| perplexity | 40.1 | 30.2 |"
        in text
    )


def test_an_image_table_whose_columns_do_not_name_the_interpolation_path_is_labelled_with_it(
    tmp_path: Path,
) -> None:
    """Image runs before 2026-11-27 interpolated by slerp without saying so in their columns."""
    results, readme = tmp_path / "results", tmp_path / "README.md"
    results.mkdir()
    arms = {"joint": {"interpolation_mode": "slerp"}, "autoencoder": {"interpolation_mode": "lerp"}}
    old = {"date": "2026-11-26T07:00", "arms": arms}
    old["table"] = [["arm", "interp FID-400 0.2"], ["joint", "60.8"]]
    new = {**old, "table": [["arm", "slerp interp FID-400 0.2"], ["joint", "60.8"]]}
    lerp = {"arms": {"joint": {"interpolation_mode": "lerp"}}, "table": [["arm", "lerp interp FID-400 0.2"]]}
    for name, record in (("old", old), ("named", new), ("lerp", lerp)):
        (results / f"{name}.json").write_text(json.dumps(record))
    readme.write_text("# x\n\n## Reliability\n")
    subprocess.run(
        [sys.executable, str(SCRIPT), "--readme", str(readme), "--results", str(results)], check=True
    )
    labels = {line.split("`")[1]: line for line in readme.read_text().splitlines() if line.startswith("`")}
    said = "the diffusion arms interpolate by slerp of DDIM-inverted latents"
    assert said in labels["old"] and said not in labels["named"] and said not in labels["lerp"]


def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_performance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generation_lines_give_every_sampler_with_its_metrics_or_say_there_are_none() -> None:
    script = load_script()
    def row(sampler: str, precision: str, seconds: float, **extra) -> dict:
        timed = {"median": seconds, "min": seconds, "max": seconds}
        return {"sampler": sampler, "precision": precision, "samples": 8, "seconds": timed, **extra}

    rows = [
        row("ddim-50", "fp32", 2.0, metrics={}),
        row("ddim-10", "fp32", 2.0),
        row("ddim-10", "bf16", 1.0, metrics={"validity": 0.5, "novelty": 1.0, "count": 8.0}),
    ]
    lines = dict(script.generation({"config": "configs/x.yaml", "generation": rows}))
    assert lines["generate 8 samples, DDIM-50 (x.yaml)"] == "fp32 2.0 s; no generation metrics recorded"
    assert lines["generate 8 samples, DDIM-10 (x.yaml)"] == (
        "fp32 2.0 s, bf16 1.0 s; bf16: validity 0.500, novelty 1.000"
    )


def test_training_cost_lines_give_every_config_measured() -> None:
    script = load_script()

    def config(name: str, ratio: float) -> dict:
        arm = {"samples_per_s": 100.0, "fraction_of_matmul_peak": 0.25}
        return {
            "config": f"configs/{name}.yaml",
            "flop_limit_ratio": 1.5,
            "joint": arm,
            "autoencoder": {"samples_per_s": 150.0},
            "joint_over_autoencoder": {"median": ratio, "min": ratio, "max": ratio, "n": 1},
        }

    record = {"configs": {"a": config("a", 1.2), "b": config("b", 3.0), "c": {"skipped": "no data"}}}
    lines = dict(script.training_cost(record))
    key = "joint / autoencoder step, configs/{} (FLOP limit 1.50×; samples/s joint 100, autoencoder 150)"
    assert lines[key.format("a.yaml")] == "1.20×"
    assert lines[key.format("b.yaml")] == "3.00×"
    assert lines["joint step's GFLOP/s vs matmul peak, configs/b.yaml"] == "25 %"
    assert not any("c.yaml" in what for what in lines)


def test_the_step_profile_line_gives_every_part_and_the_denoiser_matmul_rate() -> None:
    parts = {"denoiser_matmuls": 300.4, "other_matmuls": 20.0, "optimizer": 60.0, "ema": 15.0}
    parts["other_ops"] = 4.6
    profile = {
        "config": "configs/p.yaml",
        "ms_per_step": parts,
        "profiled_step_ms": 400.0,
        "denoiser_matmul_gflops": 212.6,
    }
    lines = dict(load_script().training_cost({"configs": {}, "profile": profile}))
    assert lines["joint step under torch.profiler, ms per step, configs/p.yaml"] == (
        "400: denoiser matmuls 300, other matmuls 20, optimizer 60, ema 15, other ops 5; "
        "the denoiser's matmuls at 213 GFLOP/s"
    )
