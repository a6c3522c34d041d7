"""``benchmarks/combine_runs.py``: repeats of a quality benchmark as one median [min–max] table, which
``readme_performance.py`` labels with each run's arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from combine_runs import combine_tables, lacks  # noqa: E402


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, check=False
    )


def results(table: list[list[str]], fit_args: str = "", load: float = 1.0) -> dict:
    machine = {"cpu_model": "Xeon", "cpu_count": 2}
    machine |= {"load_avg_1min_start": load, "load_avg_1min_end": load}
    args = {"minutes": 20, "fit_args": fit_args}
    return {"date": "2026-11-27T01:00", "args": args, "machine": machine, "table": table}


def test_cells_become_median_and_range_over_the_runs_that_have_them() -> None:
    head = ["metric", "joint", "two_stage", "real"]
    a = [head, ["MAUVE", "0.04", "0.02", "0.97"], ["note", "ok", "ok", ""], ["BLEU", "2.0", "3.0", ""]]
    b = [head, ["MAUVE", "0.03", "0.06", "0.97"], ["note", "ok", "bad", ""], ["BLEU", "2.2", "n/a", ""]]
    c = [  # another column order, an arm and a row the other runs lack
        ["metric", "two_stage", "joint", "autoencoder", "real"],
        ["MAUVE", "0.05", "0.01", "0.5", "0.97"],
        ["note", "ok", "ok", "x", ""],
        ["BLEU", "4.0", "1.0", "5", ""],
        ["extra", "1", "2", "3", ""],
    ]
    assert combine_tables([a, b, c]) == [
        ["metric", "joint", "two_stage", "autoencoder", "real"],
        ["MAUVE", "0.03 [0.01–0.04]", "0.05 [0.02–0.06]", "0.5", "0.97"],
        ["note", "ok", "ok / bad / ok", "x", ""],
        ["BLEU", "2 [1–2.2]", "3.0 / n/a / 4.0", "5", ""],
        ["extra", "2", "1", "3", ""],
    ]
    assert lacks(a, combine_tables([a, b, c])) == ["extra", "autoencoder"]


def test_runs_of_one_arm_each_combine_per_arm() -> None:
    """An image benchmark's arms are rows: seed 1 of joint and of two_stage ran apart, seed 2 together."""
    head = ["arm", "steps", "gen FID"]
    real = ["held-out real", "", "43.6"]
    joint_1 = [head, ["joint", "2482", "111.5"], real]
    two_stage_1 = [head, ["two_stage", "5839", "110.4"], real]
    both_2 = [head, ["joint", "2753", "104.0"], ["two_stage", "5181", "106.0"], real]
    assert combine_tables([joint_1, two_stage_1, both_2]) == [
        head,
        ["joint", "2618 [2482–2753]", "107.8 [104–111.5]"],
        ["two_stage", "5510 [5181–5839]", "108.2 [106–110.4]"],
        ["held-out real", "", "43.6"],
    ]


def test_the_cli_writes_the_combined_table_and_the_readme_names_each_run(tmp_path: Path) -> None:
    table = lambda x: [["metric", "joint", "held-out real"], ["MAUVE", x, "0.97"]]  # noqa: E731
    files = []
    runs = [("0.04", ""), ("0.03", "--seed_everything 1"), ("0.05", "--seed_everything 2")]
    for i, (x, fit_args) in enumerate(runs):
        files.append(tmp_path / f"run{i}.json")
        record = results(table(x), fit_args, load=float(i))
        if i == 0:
            record["date"] = "2026-11-26T21:52"  # an earlier day's run
        files[-1].write_text(json.dumps(record))
    results_dir = tmp_path / "results"
    proc = run(REPO / "benchmarks" / "combine_runs.py", *files, "--out", results_dir / "bench_seeds.json")
    assert proc.returncode == 0, proc.stderr
    combined = json.loads((results_dir / "bench_seeds.json").read_text())
    assert combined["table"][1] == ["MAUVE", "0.04 [0.03–0.05]", "0.97"]
    assert [r["fit_args"] for r in combined["runs"]] == ["", "--seed_everything 1", "--seed_everything 2"]
    machine = combined["machine"]
    assert (machine["load_avg_1min_start"], machine["load_avg_1min_end"]) == (0.0, 2.0)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Reliability\n")
    proc = run(REPO / "benchmarks" / "readme_performance.py", "--readme", readme, "--results", results_dir)
    assert proc.returncode == 0, proc.stderr
    label = (
        "`bench_seeds` (2026-11-26 to 2026-11-27; Xeon ×2, load 0.0→2.0; 20 min per arm; "
        "median [min–max] of 3 runs: defaults; `--seed_everything 1`; `--seed_everything 2`):"
    )
    assert label in readme.read_text()
    assert "| MAUVE | 0.04 [0.03–0.05] | 0.97 |" in readme.read_text()


def test_a_file_without_a_results_table_is_refused_by_name(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "speed.json"
    good.write_text(json.dumps(results([["metric", "joint"], ["BLEU", "1"]])))
    bad.write_text(json.dumps({"date": "2026-11-27", "configs": {}}))
    proc = run(REPO / "benchmarks" / "combine_runs.py", good, bad, "--out", tmp_path / "out.json")
    assert proc.returncode != 0
    assert f"{bad} has no results table" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.json").exists()
    broken = tmp_path / "broken.json"
    broken.write_text('{"table": [["metric"')  # a run cut off while writing
    proc = run(REPO / "benchmarks" / "combine_runs.py", good, broken, "--out", tmp_path / "out.json")
    assert proc.returncode != 0
    assert f"{broken} is not a JSON results file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.json").exists()


def test_the_readme_says_which_arms_a_run_lacks(tmp_path: Path) -> None:
    head, real = ["arm", "gen FID"], ["held-out real", "43.6"]
    tables = [[head, ["joint", "111.5"], real], [head, ["two_stage", "110.4"], real]]
    tables.append([head, ["joint", "104.0"], ["two_stage", "106.0"], real])
    files = []
    for i, (table, seed) in enumerate(zip(tables, (1, 1, 2))):
        files.append(tmp_path / f"run{i}.json")
        files[-1].write_text(json.dumps(results(table, f"--seed_everything {seed}")))
    results_dir = tmp_path / "results"
    proc = run(REPO / "benchmarks" / "combine_runs.py", *files, "--out", results_dir / "img_seeds.json")
    assert proc.returncode == 0, proc.stderr
    combined = json.loads((results_dir / "img_seeds.json").read_text())
    assert [r.get("lacks") for r in combined["runs"]] == [["two_stage"], ["joint"], None]
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Reliability\n")
    proc = run(REPO / "benchmarks" / "readme_performance.py", "--readme", readme, "--results", results_dir)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    assert (
        "median [min–max] of 3 runs (each cell over the runs that have its row and column): "
        "`--seed_everything 1` (no two_stage); `--seed_everything 1` (no joint); `--seed_everything 2`):"
    ) in text
    assert "| joint | 107.8 [104–111.5] |" in text and "| two_stage | 108.2 [106–110.4] |" in text


def test_runs_on_different_machines_are_each_named(tmp_path: Path) -> None:
    """combine_runs.py keeps no single machine when the runs' CPUs differ; the README names each run's."""
    table = [["metric", "joint"], ["MAUVE", "0.04"]]
    files = []
    for i, cpu in enumerate(("Intel Xeon", "AMD EPYC")):
        record = results(table, f"--seed_everything {i}")
        record["machine"]["cpu_model"] = cpu
        files.append(tmp_path / f"run{i}.json")
        files[-1].write_text(json.dumps(record))
    results_dir = tmp_path / "results"
    proc = run(REPO / "benchmarks" / "combine_runs.py", *files, "--out", results_dir / "mixed.json")
    assert proc.returncode == 0, proc.stderr
    assert "machine" not in json.loads((results_dir / "mixed.json").read_text())
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Reliability\n")
    proc = run(REPO / "benchmarks" / "readme_performance.py", "--readme", readme, "--results", results_dir)
    assert proc.returncode == 0, proc.stderr
    assert (
        "`mixed` (2026-11-27; machines differ; 20 min per arm; median [min–max] of 2 runs: "
        "`--seed_everything 0` on Intel Xeon ×2; `--seed_everything 1` on AMD EPYC ×2):"
    ) in readme.read_text()
