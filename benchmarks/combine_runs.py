"""Repeats of one quality benchmark as one table: each cell the median [min–max] over the runs.

A quality benchmark (``text_vader.py``, ``image_fashion_mnist.py``) trains each arm once per run, and
one run does not rank two arms whose gap is smaller than the run-to-run spread. Run it again with
another seed (e.g. ``--fit-args '--seed_everything 1'``), then combine the results files:

    python benchmarks/combine_runs.py benchmarks/results/text_vader_seeds/seed{0,1,2}.json \
        --out benchmarks/results/text_vader_seeds.json

Columns and rows are those of any run, in the first run's order (the others slotted in where their
run has them), so a run of one arm (e.g. ``--arms two_stage`` with the seed of an earlier ``--arms
joint`` run) counts for that arm alone. Each cell is combined over the runs whose table has its row
and column: a numeric cell becomes ``median [min–max]``, or the value where those runs agree; text
cells are kept where they agree and joined with `` / `` where they do not. The output records each
run's file, date, machine, ``fit_args`` and the rows and columns its table ``lacks``;
``readme_performance.py`` labels the table with them.
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
    """Tables (a header row, then rows whose first cell is the label) combined cell by cell over the
    tables that have the cell's row and column."""
    columns = first_seen(t[0][1:] for t in tables)
    by_label = [{row[0]: dict(zip(t[0][1:], row[1:])) for row in t[1:]} for t in tables]
    rows = [[tables[0][0][0], *columns]]
    for label in first_seen(by_label):
        cells = [[r[label][c] for r in by_label if c in r.get(label, {})] for c in columns]
        rows.append([label, *(combine_cells(c) if c else "" for c in cells)])
    return rows


def first_seen(groups) -> list[str]:
    """The labels of all ``groups`` (iterables of labels), each once: the first group's order, and a
    label the earlier groups lack placed before the next label of its group that is already placed."""
    order: list[str] = []
    for group in map(list, groups):
        for i, label in enumerate(group):
            if label not in order:
                after = next((x for x in group[i + 1 :] if x in order), None)
                order.insert(order.index(after) if after is not None else len(order), label)
    return order


def lacks(table: list[list[str]], combined: list[list[str]]) -> list[str]:
    """The combined table's row labels and columns that ``table`` does not have."""
    have = {row[0] for row in table[1:]} | set(table[0][1:])
    return [x for x in [*(row[0] for row in combined[1:]), *combined[0][1:]] if x not in have]


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
    combined = combine_tables([r["table"] for r in records])
    for run, record in zip(runs, records):
        if missing := lacks(record["table"], combined):
            run["lacks"] = missing
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
    out["table"] = combined
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
