"""Repeats of one quality benchmark as one table: each cell the median [min–max] over the runs.

A quality benchmark (``text_vader.py``, ``image_fashion_mnist.py``) trains each arm once per run, and
one run does not rank two arms whose gap is smaller than the run-to-run spread. Run it again with
another seed (e.g. ``--fit-args '--seed_everything 1'``), then combine the results files:

    python benchmarks/combine_runs.py benchmarks/results/text_vader_seeds/seed{0,1,2}.json \
        --out benchmarks/results/text_vader_seeds.json

Columns (arms) and rows (metrics) are those every run has, in the first run's order. A numeric cell
becomes ``median [min–max]``, or the value where every run agrees; text cells are kept where they
agree and joined with `` / `` where they do not. The output records each run's file, date, machine
and ``fit_args``; ``readme_performance.py`` labels the table with them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402


def number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def combine_cells(cells: list[str]) -> str:
    """One cell from each run's same cell: ``median [min–max]``, the common value, or the texts."""
    cells = [c.strip() for c in cells]
    if len(set(cells)) == 1:
        return cells[0]
    values = [number(c) for c in cells]
    if all(v is not None for v in values):
        if min(values) == max(values):
            return cells[0]
        return f"{statistics.median(values):.4g} [{min(values):.4g}–{max(values):.4g}]"
    return " / ".join(cells)


def combine_tables(tables: list[list[list[str]]]) -> list[list[str]]:
    """Tables (a header row, then rows whose first cell is the label) combined cell by cell."""
    headers = [t[0] for t in tables]
    columns = [c for c in headers[0][1:] if all(c in h[1:] for h in headers[1:])]
    by_label = [{row[0]: dict(zip(t[0][1:], row[1:])) for row in t[1:]} for t in tables]
    rows = [[headers[0][0], *columns]]
    for label in by_label[0]:
        if all(label in rows_of for rows_of in by_label[1:]):
            rows.append([label, *(combine_cells([r[label][c] for r in by_label]) for c in columns)])
    return rows


def combine(paths: list[Path]) -> dict[str, Any]:
    records = []
    for path in paths:
        try:
            records.append(json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SystemExit(f"combine_runs: {path} is not a JSON results file ({err})") from None
    for path, record in zip(paths, records):
        table = record.get("table") if isinstance(record, dict) else None
        if not isinstance(table, list) or len(table) < 2:
            raise SystemExit(f"combine_runs: {path} has no results table (is it a quality benchmark's JSON?)")
    runs = [
        {
            "file": str(path),
            "date": r.get("date"),
            "machine": r.get("machine"),
            "fit_args": (r.get("args") or {}).get("fit_args", ""),
        }
        for path, r in zip(paths, records)
    ]
    out: dict[str, Any] = {"date": max(str(r.get("date", "")) for r in records), "runs": runs}
    machines = [r.get("machine") or {} for r in records]
    if len({(m.get("cpu_model"), m.get("cpu_count"), m.get("gpu")) for m in machines}) == 1:
        out["machine"] = {
            **machines[0],
            "load_avg_1min_start": machines[0].get("load_avg_1min_start"),
            "load_avg_1min_end": machines[-1].get("load_avg_1min_end"),
        }
    minutes = {(r.get("args") or {}).get("minutes") for r in records}
    if len(minutes) == 1:
        out["args"] = {"minutes": minutes.pop()}
    out["table"] = combine_tables([r["table"] for r in records])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="results files of the same benchmark")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give two or more results files")
    missing = [str(p) for p in args.runs if not p.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    result = combine(args.runs)
    print(table(result["table"][0], result["table"][1:]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, allow_nan=False))
    print(f"\ncombine_runs: median [min–max] of {len(args.runs)} runs; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
