"""Predict-task outputs -> files, batch by batch (the protein side of ``diled predict``).

:func:`task_writers` gives one rank's :class:`~diled_core.RecordWriter` objects of a task; each gets
every batch's outputs (CPU tensors, the keys of :mod:`diled_core.predict.tasks`) once, as it comes,
and nothing is concatenated across batches. Files per task (rank r > 0 adds ``.rank<r>``, named by
:func:`diled_core.rank_file`):

=============  ===================================================================================
reconstruct    ``reconstructions.fasta``: ``>id input`` and ``>id reconstruction identity=.. nll=..``
generate       ``samples.fasta``: ``>sample<index> length=<n>`` (``index``: the global sample index;
               rank r > 0 prefixes ``rank<r>_``)
encode         ``embeddings.csv`` (id, property, [other properties], [prediction], mu_0..),
               ``embeddings.npy`` (μ), ``embeddings_xT.npy`` (DDIM-inverted x_T, if given),
               ``latent_pca.png`` (PCA of the first :data:`PCA_ROWS` = 5,000 rows of μ at most)
interpolate    ``interpolations.fasta``: per pair its start, the decoded points (with alpha), its end
optimise       ``optimised.fasta``: input, reconstruction and optimised sequence with predictions
=============  ===================================================================================
"""

from __future__ import annotations

import csv
import math
from functools import partial
from pathlib import Path
from typing import Iterable, Sequence

import torch
from diled_core import ArrayWriter, Batch, PredictTask, RecordWriter, TextWriter, rank_file
from torch import Tensor

from .metrics import identity
from .plots import latent_figure
from .vocab import ProteinVocab

__all__ = ["PCA_ROWS", "EmbeddingsWriter", "format_fasta", "task_writers"]

#: ``latent_pca.png`` is drawn from at most this many rows of μ (the first ones of the rank)
PCA_ROWS = 5000


def format_fasta(records: Iterable[tuple[str, str]]) -> str:
    """``(header without '>', sequence)`` pairs -> FASTA text, one line per sequence."""
    return "".join(f">{h}\n{s}\n" for h, s in records)


def _num(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4g}"


def _property(batch: Batch) -> Tensor:
    """The first property ``[B]`` with ``nan`` where unlabelled."""
    y = batch["property"].float()
    return torch.where(batch["property_mask"].bool(), y, torch.full_like(y, math.nan))


def _label(batch: Batch, i: int, names: Sequence[str]) -> str:
    y = float(_property(batch)[i])
    return "" if math.isnan(y) else f" {names[0] if names else 'property'}={_num(y)}"


def reconstruct_fasta(o: Batch, vocab: ProteinVocab, names: Sequence[str] = ()) -> str:
    """One batch of ``reconstruct`` outputs -> FASTA: each input, then its reconstruction with its
    identity and the decoder's ``nll`` term (``nan`` if the decoder has none)."""
    src, rec = vocab.decode(o["input"]["tokens"]), vocab.decode(o["output"]["tokens"])
    nll = o.get("loss", {}).get("nll")
    nll = nll.tolist() if nll is not None else [math.nan] * len(src)
    recs = []
    for i, (rid, a, b) in enumerate(zip(o["input"]["id"], src, rec)):
        recs += [
            (f"{rid} input{_label(o['input'], i, names)}", a),
            (f"{rid} reconstruction identity={identity(a, b):.3f} nll={_num(nll[i])}", b),
        ]
    return format_fasta(recs)


def generate_fasta(o: Batch, vocab: ProteinVocab, rank: int = 0) -> str:
    """One batch of ``generate`` outputs -> FASTA named by the global sample ``index``."""
    prefix = "" if rank == 0 else f"rank{rank}_"
    seqs = vocab.decode(o["output"]["tokens"])
    return format_fasta((f"{prefix}sample{i} length={len(s)}", s) for i, s in zip(o["index"].tolist(), seqs))


def interpolate_fasta(o: Batch, vocab: ProteinVocab) -> str:
    """One batch of ``interpolate`` outputs -> FASTA. Rows of a pair are consecutive (``pair``,
    ``alpha``; ``input_a`` / ``input_b`` repeated per point): each pair is written as its start, its
    decoded points and its end."""
    seq_a, seq_b = vocab.decode(o["input_a"]["tokens"]), vocab.decode(o["input_b"]["tokens"])
    seqs = vocab.decode(o["output"]["tokens"])
    pair, alpha = o["pair"].tolist(), o["alpha"].tolist()
    ids_a, ids_b = o["input_a"]["id"], o["input_b"]["id"]
    recs = []
    for k, p in enumerate(pair):
        if k == 0 or pair[k - 1] != p:
            recs.append((f"pair{p} start {ids_a[k]}", seq_a[k]))
        recs.append((f"pair{p} {ids_a[k]}->{ids_b[k]} alpha={alpha[k]:.3f}", seqs[k]))
        if k == len(pair) - 1 or pair[k + 1] != p:
            recs.append((f"pair{p} end {ids_b[k]}", seq_b[k]))
    return format_fasta(recs)


def optimise_fasta(o: Batch, vocab: ProteinVocab, names: Sequence[str] = ()) -> str:
    """One batch of ``optimise`` outputs -> FASTA: input, reconstruction, optimised sequence."""
    src = vocab.decode(o["input"]["tokens"])
    rec, opt = vocab.decode(o["reconstruction"]["tokens"]), vocab.decode(o["output"]["tokens"])
    before, after = o["pred_before"].tolist(), o["pred_after"].tolist()
    recs = []
    for i, rid in enumerate(o["input"]["id"]):
        recs += [
            (f"{rid} input{_label(o['input'], i, names)}", src[i]),
            (f"{rid} reconstruction pred={_num(before[i])}", rec[i]),
            (
                f"{rid} optimised pred_before={_num(before[i])} pred_after={_num(after[i])} "
                f"identity_to_input={identity(src[i], opt[i]):.3f}",
                opt[i],
            ),
        ]
    return format_fasta(recs)


class EmbeddingsWriter(RecordWriter):
    """``encode`` outputs -> ``embeddings.csv``, ``embeddings.npy`` (μ ``[N, d]``), ``embeddings_xT.npy``
    (x_T ``[N, d]``, when given) and ``latent_pca.png``.

    CSV columns: ``id``, ``property`` (the head's target, the first property; empty when unlabelled),
    the other properties by name, ``prediction`` (with a head), ``mu_0 … mu_{d-1}``. The picture is
    drawn on close from the first ``pca_rows`` rows of μ, the only rows kept in memory.
    """

    def __init__(
        self, out_dir: Path, rank: int, property_names: Sequence[str] = (), pca_rows: int = PCA_ROWS
    ) -> None:
        super().__init__()
        self.out_dir, self.rank, self.names, self.pca_rows = (
            Path(out_dir),
            rank,
            list(property_names),
            pca_rows,
        )
        csv_file = self.open(rank_file(out_dir, "embeddings.csv", rank), encoding="utf-8", newline="")
        self._csv = csv.writer(csv_file, lineterminator="\n")
        self._header: list[str] | None = None
        self._arrays: dict[str, ArrayWriter] = {}
        self._mu: list[Tensor] = []  # the first pca_rows rows of μ [n, d] and their property [n]
        self._colour: list[Tensor] = []
        self._kept = self._rows = 0

    def _columns(self, num_properties: int, has_prediction: bool, latent_dim: int) -> list[str]:
        k = num_properties  # "property" is the head's target (the first property), then the others by name
        others = self.names[1:] if len(self.names) == k else [f"property_{j}" for j in range(1, k)]
        pred = ["prediction"] if has_prediction else []
        return ["id", "property", *others, *pred, *(f"mu_{j}" for j in range(latent_dim))]

    def write(self, outputs: Batch) -> None:
        inp, mu = outputs["input"], outputs["mu"].float()
        props = inp["properties"].float() if "properties" in inp else _property(inp)[:, None]
        pred = outputs["prediction"].float().flatten() if "prediction" in outputs else None
        if self._header is None:
            self._header = self._columns(props.shape[1], pred is not None, mu.shape[1])
            self._csv.writerow(self._header)
        for i, rid in enumerate(inp["id"]):
            vals = ["" if math.isnan(v) else repr(v) for v in props[i].tolist()]
            p = [repr(float(pred[i]))] if pred is not None else []
            self._csv.writerow([rid, *vals, *p, *map(repr, mu[i].tolist())])
        for key, name in (("mu", "embeddings.npy"), ("x_T", "embeddings_xT.npy")):
            if key in outputs:
                if key not in self._arrays:
                    self._arrays[key] = self.part(ArrayWriter(rank_file(self.out_dir, name, self.rank)))
                self._arrays[key].write(outputs[key])
        self._keep(mu, props[:, 0])

    def _keep(self, mu: Tensor, colour: Tensor) -> None:
        take = min(self.pca_rows - self._kept, mu.shape[0])
        if take > 0:
            self._mu.append(mu[:take].clone())
            self._colour.append(colour[:take].clone())
            self._kept += take
        self._rows += mu.shape[0]

    def finish(self) -> None:
        """Draw ``latent_pca.png`` (nothing when no rows arrived)."""
        if not self._kept:
            return
        colour = torch.cat(self._colour)
        title = "Latent space (PCA of μ)"
        if self._kept < self._rows:
            title = f"Latent space (PCA of the first {self._kept} of {self._rows} μ)"
        fig = latent_figure(
            torch.cat(self._mu),
            None if colour.isnan().all() else colour,
            label=self.names[0] if self.names else "property",
            title=title,
        )
        fig.savefig(self.open(rank_file(self.out_dir, "latent_pca.png", self.rank), "wb"), format="png")


def task_writers(
    task: PredictTask, out_dir: Path, rank: int, vocab: ProteinVocab, property_names: Sequence[str] = ()
) -> list[RecordWriter]:
    """The writers of one rank's records of ``task`` under ``out_dir`` (see the module docstring)."""
    out_dir, names = Path(out_dir), list(property_names)
    if task == "encode":
        return [EmbeddingsWriter(out_dir, rank, names)]
    fasta = {
        "reconstruct": ("reconstructions.fasta", partial(reconstruct_fasta, vocab=vocab, names=names)),
        "generate": ("samples.fasta", partial(generate_fasta, vocab=vocab, rank=rank)),
        "interpolate": ("interpolations.fasta", partial(interpolate_fasta, vocab=vocab)),
        "optimise": ("optimised.fasta", partial(optimise_fasta, vocab=vocab, names=names)),
    }
    if task not in fasta:
        raise ValueError(f"unknown predict task {task!r}; choose one of {sorted([*fasta, 'encode'])}")
    name, format_batch = fasta[task]
    return [TextWriter(rank_file(out_dir, name, rank), format_batch)]
