"""Predict-task outputs -> files, batch by batch (the text side of ``diled predict``).

Each writer gets every batch's outputs once (CPU tensors; the keys of :mod:`diled_core.predict.tasks`)
and writes them as they come. Files per task (rank r > 0 adds ``.rank<r>``, by
:func:`diled_core.rank_file`); TSV cells have tabs and newlines replaced by spaces:

=============  ===================================================================================
reconstruct    ``reconstructions.tsv``: ``id, input`` (as read), ``reference`` (as the tokenizer sees
               it, the BLEU reference), ``output`` (the reconstruction), ``nll`` (the decoder's term)
generate       ``samples.txt``: one sentence per line, in sample order
encode         ``embeddings.csv`` (``id, label, [prediction], mu_0 …``), ``embeddings.npy`` (μ
               ``[N, d]``), ``embeddings_xT.npy`` (DDIM-inverted x_T, with ``--prediction.invert``)
interpolate    ``interpolations.tsv``: ``pair, alpha, id_a, id_b, text``
optimise       ``optimised.tsv``: ``id, input, reconstruction, optimised, pred_before, pred_after``
transfer       ``transfers.tsv``: ``id, label`` (the source class, -1 unknown), ``target`` (the class
               transferred to), ``input`` (as read), ``output`` (the transferred sentence)
=============  ===================================================================================
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Callable

from diled_core import ArrayWriter, Batch, PredictTask, RecordWriter, TextWriter, rank_file

from .decoder import target_tokens
from .tokenizer import TextTokenizer

__all__ = ["EmbeddingsWriter", "TsvWriter", "task_writers"]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return " ".join(str(value).split())  # no tabs or newlines inside a cell


class TsvWriter(RecordWriter):
    """A TSV file with a header; ``rows(outputs)`` gives each batch's rows."""

    def __init__(self, path: Path, header: list[str], rows: Callable[[Batch], list[list[object]]]) -> None:
        super().__init__()
        self.rows = rows
        self.file = self.open(path, encoding="utf-8", newline="")
        self.file.write("\t".join(header) + "\n")

    def write(self, outputs: Batch) -> None:
        self.file.write("".join("\t".join(map(_cell, row)) + "\n" for row in self.rows(outputs)))


class EmbeddingsWriter(RecordWriter):
    """``encode`` outputs -> ``embeddings.csv`` (id, label, [prediction], mu_*), ``embeddings.npy`` and,
    when given, ``embeddings_xT.npy``."""

    def __init__(self, out_dir: Path, rank: int) -> None:
        super().__init__()
        self.out_dir, self.rank = Path(out_dir), rank
        self._csv = csv.writer(
            self.open(rank_file(out_dir, "embeddings.csv", rank), encoding="utf-8", newline=""),
            lineterminator="\n",
        )
        self._header = False
        self._arrays: dict[str, ArrayWriter] = {}

    def write(self, outputs: Batch) -> None:
        inp, mu = outputs["input"], outputs["mu"].float()
        pred = outputs["prediction"].float().tolist() if "prediction" in outputs else None
        if not self._header:
            self._csv.writerow(
                ["id", "label", *(["prediction"] if pred else []), *(f"mu_{j}" for j in range(mu.shape[1]))]
            )
            self._header = True
        labels = inp["label"].tolist()
        for i, rid in enumerate(inp["id"]):
            label = "" if math.isnan(labels[i]) else repr(labels[i])
            self._csv.writerow([rid, label, *([repr(pred[i])] if pred else []), *map(repr, mu[i].tolist())])
        for key, name in (("mu", "embeddings.npy"), ("x_T", "embeddings_xT.npy")):
            if key in outputs:
                if key not in self._arrays:
                    self._arrays[key] = self.part(ArrayWriter(rank_file(self.out_dir, name, self.rank)))
                self._arrays[key].write(outputs[key])


def task_writers(task: PredictTask, out_dir: Path, rank: int, tokenizer: TextTokenizer) -> list[RecordWriter]:
    """The writers of one rank's records of ``task`` under ``out_dir`` (see the module docstring)."""

    def reconstruct(o: Batch) -> list[list[object]]:
        refs = tokenizer.decode_batch(target_tokens(o["input"])[0])
        nll = o["loss"]["nll"].tolist() if "nll" in o.get("loss", {}) else [math.nan] * len(refs)
        return [
            list(row) for row in zip(o["input"]["id"], o["input"]["text"], refs, o["output"]["text"], nll)
        ]

    def interpolate(o: Batch) -> list[list[object]]:
        return [
            list(r)
            for r in zip(
                o["pair"].tolist(),
                o["alpha"].tolist(),
                o["input_a"]["id"],
                o["input_b"]["id"],
                o["output"]["text"],
            )
        ]

    def optimise(o: Batch) -> list[list[object]]:
        return [
            list(r)
            for r in zip(
                o["input"]["id"],
                o["input"]["text"],
                o["reconstruction"]["text"],
                o["output"]["text"],
                o["pred_before"].tolist(),
                o["pred_after"].tolist(),
            )
        ]

    def transfer(o: Batch) -> list[list[object]]:
        return [
            list(r)
            for r in zip(
                o["input"]["id"],
                o["label"].tolist(),
                o["target"].tolist(),
                o["input"]["text"],
                o["output"]["text"],
            )
        ]

    out_dir = Path(out_dir)
    if task == "transfer":
        return [
            TsvWriter(
                rank_file(out_dir, "transfers.tsv", rank),
                ["id", "label", "target", "input", "output"],
                transfer,
            )
        ]
    if task == "reconstruct":
        return [
            TsvWriter(
                rank_file(out_dir, "reconstructions.tsv", rank),
                ["id", "input", "reference", "output", "nll"],
                reconstruct,
            )
        ]
    if task == "generate":
        return [
            TextWriter(
                rank_file(out_dir, "samples.txt", rank),
                lambda o: "".join(_cell(t) + "\n" for t in o["output"]["text"]),
            )
        ]
    if task == "encode":
        return [EmbeddingsWriter(out_dir, rank)]
    if task == "interpolate":
        return [
            TsvWriter(
                rank_file(out_dir, "interpolations.tsv", rank),
                ["pair", "alpha", "id_a", "id_b", "text"],
                interpolate,
            )
        ]
    if task == "optimise":
        return [
            TsvWriter(
                rank_file(out_dir, "optimised.tsv", rank),
                ["id", "input", "reconstruction", "optimised", "pred_before", "pred_after"],
                optimise,
            )
        ]
    raise ValueError(
        f"unknown predict task {task!r}; choose reconstruct, generate, encode, interpolate, optimise or "
        "transfer"
    )
