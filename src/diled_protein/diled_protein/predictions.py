"""Predict-task outputs -> files and metrics (the protein side of ``diled predict``).

``outputs`` is one rank's (for files) or all ranks' (for metrics) predictions with every batch
concatenated; see :class:`diled_core.DiledDataModule`. Files per task (rank r > 0 adds ``.rank<r>``):

=============  ===================================================================================
reconstruct    ``reconstructions.fasta``: ``>id input`` and ``>id reconstruction identity=.. nll=..``
generate       ``samples.fasta``: ``>sample<i> length=<n>``
encode         ``embeddings.csv`` (id, property, [other properties], [prediction], mu_0..),
               ``embeddings.npy`` (μ),
               ``embeddings_xT.npy`` (DDIM-inverted x_T, if given), ``latent_pca.png``
interpolate    ``interpolations.fasta``: per pair its start, the decoded points (with alpha), its end
optimise       ``optimised.fasta``: input, reconstruction and optimised sequence with predictions
=============  ===================================================================================
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from diled_core import Batch, PredictTask, atomic_write
from torch import Tensor

from .metrics import correlations, exact_match, generation_metrics, identity, perplexity, token_accuracy
from .plots import latent_figure, save_figure
from .vocab import CANONICAL, ProteinVocab
from .writers import format_fasta, rank_file, write_text

__all__ = ["task_metrics", "write_task"]


def _cpu(x: Any) -> Any:
    return x.detach().cpu() if isinstance(x, Tensor) else x


def _num(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4g}"


def _property(batch: Batch) -> Tensor:
    """The first property ``[N]`` with ``nan`` where unlabelled."""
    y = _cpu(batch["property"]).float()
    return torch.where(_cpu(batch["property_mask"]).bool(), y, torch.full_like(y, math.nan))


def _label(batch: Batch, i: int, names: Sequence[str]) -> str:
    y = float(_property(batch)[i])
    return "" if math.isnan(y) else f" {names[0] if names else 'property'}={_num(y)}"


def _write_reconstruct(
    o: Batch, out: Path, rank: int, vocab: ProteinVocab, names: Sequence[str]
) -> list[Path]:
    src, rec = vocab.decode(_cpu(o["input"]["tokens"])), vocab.decode(_cpu(o["output"]["tokens"]))
    nll = _cpu(o["nll"]).tolist() if "nll" in o else [math.nan] * len(src)
    recs = []
    for i, (rid, a, b) in enumerate(zip(o["input"]["id"], src, rec)):
        recs += [
            (f"{rid} input{_label(o['input'], i, names)}", a),
            (f"{rid} reconstruction identity={identity(a, b):.3f} nll={_num(nll[i])}", b),
        ]
    return [write_text(rank_file(out, "reconstructions.fasta", rank), format_fasta(recs))]


def _write_generate(o: Batch, out: Path, rank: int, vocab: ProteinVocab, names: Sequence[str]) -> list[Path]:
    prefix = "" if rank == 0 else f"rank{rank}_"
    seqs = vocab.decode(_cpu(o["output"]["tokens"]))
    recs = [(f"{prefix}sample{i} length={len(s)}", s) for i, s in enumerate(seqs)]
    return [write_text(rank_file(out, "samples.fasta", rank), format_fasta(recs))]


def _write_encode(o: Batch, out: Path, rank: int, vocab: ProteinVocab, names: Sequence[str]) -> list[Path]:
    inp, mu = o["input"], _cpu(o["mu"]).float()
    props = _cpu(inp["properties"]).float() if "properties" in inp else _property(inp)[:, None]
    k = props.shape[1]  # column "property" is the head's target (the first property), then the others by name
    others = list(names[1:]) if len(names) == k else [f"property_{j}" for j in range(1, k)]
    cols = ["property", *others]
    pred = _cpu(o["prediction"]).float().flatten() if "prediction" in o else None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["id", *cols, *(["prediction"] if pred is not None else []), *(f"mu_{j}" for j in range(mu.shape[1]))]
    )
    for i, rid in enumerate(inp["id"]):
        vals = ["" if math.isnan(v) else repr(v) for v in props[i].tolist()]
        w.writerow(
            [rid, *vals, *([repr(float(pred[i]))] if pred is not None else []), *map(repr, mu[i].tolist())]
        )
    files = [write_text(rank_file(out, "embeddings.csv", rank), buf.getvalue())]
    for key, name in (("mu", "embeddings.npy"), ("x_T", "embeddings_xT.npy")):
        if key in o:
            path = rank_file(out, name, rank)
            with atomic_write(path, "wb") as fh:
                np.save(fh, _cpu(o[key]).float().numpy())
            files.append(path)
    colour = props[:, 0] if k and not props[:, 0].isnan().all() else None
    fig = latent_figure(mu, colour, label=names[0] if names else "property")
    files.append(save_figure(fig, rank_file(out, "latent_pca.png", rank)))
    return files


def _write_interpolate(
    o: Batch, out: Path, rank: int, vocab: ProteinVocab, names: Sequence[str]
) -> list[Path]:
    seq_a, seq_b = vocab.decode(_cpu(o["input_a"]["tokens"])), vocab.decode(_cpu(o["input_b"]["tokens"]))
    seqs = vocab.decode(_cpu(o["output"]["tokens"]))
    pair, alpha = _cpu(o["pair"]).tolist(), _cpu(o["alpha"]).tolist()
    recs = []
    for p in range(len(seq_a)):
        ida, idb = o["input_a"]["id"][p], o["input_b"]["id"][p]
        recs.append((f"pair{p} start {ida}", seq_a[p]))
        recs += [
            (f"pair{p} {ida}->{idb} alpha={alpha[k]:.3f}", seqs[k]) for k in range(len(seqs)) if pair[k] == p
        ]
        recs.append((f"pair{p} end {idb}", seq_b[p]))
    return [write_text(rank_file(out, "interpolations.fasta", rank), format_fasta(recs))]


def _write_optimise(o: Batch, out: Path, rank: int, vocab: ProteinVocab, names: Sequence[str]) -> list[Path]:
    src = vocab.decode(_cpu(o["input"]["tokens"]))
    rec, opt = vocab.decode(_cpu(o["reconstruction"]["tokens"])), vocab.decode(_cpu(o["output"]["tokens"]))
    before, after = _cpu(o["pred_before"]).tolist(), _cpu(o["pred_after"]).tolist()
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
    return [write_text(rank_file(out, "optimised.fasta", rank), format_fasta(recs))]


_WRITERS = {
    "reconstruct": _write_reconstruct,
    "generate": _write_generate,
    "encode": _write_encode,
    "interpolate": _write_interpolate,
    "optimise": _write_optimise,
}


def write_task(
    task: PredictTask,
    outputs: Batch,
    out_dir: Path,
    rank: int,
    vocab: ProteinVocab,
    property_names: Sequence[str] = (),
) -> list[Path]:
    """Write one rank's outputs of ``task`` under ``out_dir``; return the files written."""
    if task not in _WRITERS:
        raise ValueError(f"unknown predict task {task!r}; choose one of {sorted(_WRITERS)}")
    return _WRITERS[task](outputs, Path(out_dir), rank, vocab, property_names)


def _valid_fraction(seqs: Sequence[str]) -> float:
    return sum(bool(s) and all(c in CANONICAL for c in s) for s in seqs) / max(len(seqs), 1)


def task_metrics(
    task: PredictTask, o: Batch, vocab: ProteinVocab, train: Sequence[str] = ()
) -> dict[str, float]:
    """Metrics of ``task`` over all outputs (``train``: training sequences, for generation novelty)."""
    if task == "reconstruct":
        src, pred = _cpu(o["input"]["tokens"]), _cpu(o["output"]["tokens"])
        m = {
            "token_accuracy": token_accuracy(pred, src, vocab.pad_idx, vocab.size),
            "exact_match": exact_match(pred, src),
            "identity_mean": float(
                np.mean([identity(a, b) for a, b in zip(vocab.decode(src), vocab.decode(pred))])
            ),
        }
        if "nll" in o:
            m["perplexity"] = perplexity(_cpu(o["nll"]))
        return m
    if task == "generate":
        return generation_metrics(vocab.decode(_cpu(o["output"]["tokens"])), train)
    if task == "encode":
        if "prediction" not in o:
            return {}
        y, known = _property(o["input"]), _cpu(o["input"]["property_mask"]).bool()
        return correlations(_cpu(o["prediction"]).flatten()[known], y[known])
    if task == "interpolate":
        return {"validity": _valid_fraction(vocab.decode(_cpu(o["output"]["tokens"])))}
    if task == "optimise":  # the core adds pred_before_mean, pred_after_mean and improved_fraction
        src, opt = vocab.decode(_cpu(o["input"]["tokens"])), vocab.decode(_cpu(o["output"]["tokens"]))
        return {
            "identity_to_input_mean": float(np.mean([identity(a, b) for a, b in zip(src, opt)])),
            "validity": _valid_fraction(opt),
        }
    raise ValueError(f"unknown predict task {task!r}")
