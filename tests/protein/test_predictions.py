"""Prediction writers (per rank, batch by batch, staged until close), streaming task metrics (equal to
the all-at-once functions on the concatenated outputs) and the latent PCA picture."""

from __future__ import annotations

import csv
import math
import random

import numpy as np
import pytest
import torch
from diled_core import PredictionMetric, RecordWriter
from diled_protein import CSVDataModule, ProteinVocab, latent_figure
from diled_protein import predictions as predictions_module
from diled_protein.metrics import (
    correlations,
    diversity,
    exact_match,
    generation_metrics,
    identity,
    is_valid,
    perplexity,
    token_accuracy,
)
from diled_protein.plots import pca, save_figure
from diled_protein.predictions import EmbeddingsWriter, format_fasta, task_writers
from diled_protein.streaming import edit_distance_metrics, sequence_hash, task_metrics

V = ProteinVocab()
PNG = b"\x89PNG\r\n\x1a\n"
CANONICAL = "ACDEFGHIKLMNPQRSTVWY"


def batch(seqs: list[str], props: list[float | None], max_length: int = 10, first: int = 0) -> dict:
    t = torch.stack([V.encode(s, max_length) for s in seqs])
    return {
        "tokens": t,
        "mask": V.residue_mask(t),
        "id": [f"s{first + i}" for i in range(len(seqs))],
        "property": torch.tensor([0.0 if p is None else p for p in props]),
        "property_mask": torch.tensor([0.0 if p is None else 1.0 for p in props]),
    }


def decoded(seqs: list[str], max_length: int = 10) -> dict:
    t = torch.stack([V.encode(s, max_length) for s in seqs])
    return {"tokens": t, "mask": V.residue_mask(t)}


def read_fasta(path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    return [(lines[i][1:], lines[i + 1]) for i in range(0, len(lines), 2)]


def write_all(task: str, outputs: list[dict], out_dir, rank: int = 0, names=()) -> list:
    """Stream every batch through the task's writers, as ``diled predict`` does; the written paths."""
    writers = task_writers(task, out_dir, rank, V, names)  # type: ignore[arg-type]
    assert all(isinstance(w, RecordWriter) for w in writers)
    for o in outputs:
        for w in writers:
            w.write(o)
    return [p for w in writers for p in w.close()]


def stream(task: str, outputs: list[dict], train=(), **kw) -> dict:
    """Update fresh streaming metrics with every batch, then compute them (one rank)."""
    metrics = task_metrics(task, V, train, **kw)  # type: ignore[arg-type]
    assert all(isinstance(m, PredictionMetric) for m in metrics)
    for o in outputs:
        for m in metrics:
            m.update(o)
    return {k: v for m in metrics for k, v in m.compute().items()}


def pick_rows(value, rows: list[int]):
    """Rows of every tensor, list and nested dict (like the core's ``select_rows``)."""
    if isinstance(value, dict):
        return {k: pick_rows(v, rows) for k, v in value.items()}
    return value[torch.tensor(rows)] if isinstance(value, torch.Tensor) else [value[i] for i in rows]


def random_seqs(n: int, rng: random.Random, lo: int = 0, hi: int = 10, letters: str = CANONICAL) -> list[str]:
    return ["".join(rng.choice(letters) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def pad_to(tokens: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(tokens, (0, width - tokens.shape[1]), value=V.pad_idx)


# ------------------------------------------------------------------------------------ writers
def test_files_are_per_rank_and_appear_only_on_close(tmp_path):
    o = {"index": torch.tensor([0, 1]), "latent": torch.zeros(2, 4), "output": decoded(["ACDE", "WY"])}
    (writer,) = task_writers("generate", tmp_path, 3, V)
    writer.write(o)
    assert not (tmp_path / "samples.rank3.fasta").exists()  # staged under a hidden name until close
    assert writer.close() == [tmp_path / "samples.rank3.fasta"]
    assert [p.name for p in tmp_path.iterdir()] == ["samples.rank3.fasta"]  # no temporary file left behind
    assert format_fasta([("x 1", "ACD"), ("y", "K")]) == ">x 1\nACD\n>y\nK\n"
    enc = {"input": batch(["ACDE"], [1.0]), "mu": torch.zeros(1, 2), "x_T": torch.ones(1, 2)}
    names = sorted(p.name for p in write_all("encode", [enc], tmp_path / "e", rank=1))
    assert names == [
        "embeddings.rank1.csv",
        "embeddings.rank1.npy",
        "embeddings_xT.rank1.npy",
        "latent_pca.rank1.png",
    ]


def test_aborted_writers_leave_nothing(tmp_path):
    for task in ("reconstruct", "encode"):
        for w in task_writers(task, tmp_path, 0, V):
            w.abort()
    assert list(tmp_path.iterdir()) == []


def test_reconstruct_file_and_metrics(tmp_path):
    o = {
        "input": batch(["ACDE", "KLMN"], [1.0, None]),
        "output": decoded(["ACDF", "KLMN"]),
        "mu": torch.zeros(2, 3),
        "loss": {"nll": torch.tensor([0.5, 1.5])},
    }
    (path,) = write_all("reconstruct", [o], tmp_path, names=["y"])
    assert path.name == "reconstructions.fasta"
    assert read_fasta(path) == [
        ("s0 input y=1", "ACDE"),
        ("s0 reconstruction identity=0.750 nll=0.5", "ACDF"),
        ("s1 input", "KLMN"),
        ("s1 reconstruction identity=1.000 nll=1.5", "KLMN"),
    ]
    m = stream("reconstruct", [o])
    assert m["token_accuracy"] == pytest.approx(9 / 10)  # 8 residues + 2 <eos>, one wrong
    assert m["exact_match"] == 0.5 and m["perplexity"] == pytest.approx(math.e)
    assert m["identity_mean"] == pytest.approx(0.875)
    without_nll = {**o, "loss": {}}  # a decoder without an nll term: no perplexity, "nan" in the file
    assert "perplexity" not in stream("reconstruct", [without_nll])
    (path,) = write_all("reconstruct", [without_nll], tmp_path / "b")
    assert read_fasta(path)[1][0] == "s0 reconstruction identity=0.750 nll=nan"


def test_generate_files_are_named_by_the_global_index_and_metrics(tmp_path):
    o = {
        "index": torch.tensor([0, 1, 2]),
        "output": decoded(["ACDE", "ACDE", "WY"]),
        "latent": torch.zeros(3, 4),
    }
    (p0,) = write_all("generate", [o], tmp_path)
    later = {**o, "index": torch.tensor([7, 8, 9])}  # rank 2's share of the samples
    (p2,) = write_all("generate", [later], tmp_path, rank=2)
    assert read_fasta(p0)[0] == ("sample0 length=4", "ACDE")
    assert p2.name == "samples.rank2.fasta" and read_fasta(p2)[2] == ("rank2_sample9 length=2", "WY")
    m = stream("generate", [o], train=["ACDE", "KLM"])
    assert m["validity"] == 1.0 and m["uniqueness"] == pytest.approx(2 / 3)
    assert m["novelty"] == pytest.approx(1 / 3) and m["novelty_median_min_edit_distance"] == 0.0
    assert m["diversity"] == pytest.approx((0 + 4 + 4) / 3)
    assert m["diversity_samples"] == 3 and m["novelty_median_min_edit_distance_samples"] == 3
    assert m["length_mean"] == pytest.approx(10 / 3) and m["data_length_mean"] == pytest.approx(3.5)
    # ACDE ACDE WY vs ACDE KLM: frequencies A C D E .2 each, W Y .1 vs A C D E K L M 1/7 each
    assert m["composition_distance"] == pytest.approx(0.5 * (4 * (0.2 - 1 / 7) + 3 / 7 + 0.2))
    assert m["composition_distance"] == pytest.approx(
        generation_metrics(["ACDE", "ACDE", "WY"], ["ACDE", "KLM"])["composition_distance"]
    )


def test_encode_writes_csv_npy_png_and_correlations(tmp_path):
    inp = batch(["ACDE", "KLMN", "WYV", "PQ"], [1.0, 2.0, None, 4.0])
    mu = torch.randn(4, 3)
    o = {"input": inp, "mu": mu, "x_T": mu * 2, "prediction": torch.tensor([0.1, 0.2, 9.0, 0.3])}
    files = write_all("encode", [o], tmp_path, names=["y"])
    assert sorted(f.name for f in files) == [
        "embeddings.csv",
        "embeddings.npy",
        "embeddings_xT.npy",
        "latent_pca.png",
    ]
    rows = list(csv.reader((tmp_path / "embeddings.csv").open()))
    assert rows[0] == ["id", "property", "prediction", "mu_0", "mu_1", "mu_2"]
    assert rows[3][:2] == ["s2", ""] and float(rows[1][1]) == 1.0
    np.testing.assert_allclose(np.array(rows[1][3:], dtype=float), mu[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "embeddings.npy"), mu.numpy())
    np.testing.assert_allclose(np.load(tmp_path / "embeddings_xT.npy"), 2 * mu.numpy())
    assert (tmp_path / "latent_pca.png").read_bytes()[:8] == PNG
    m = stream("encode", [o])  # only labelled rows: predictions rank like the truth
    assert m["spearman"] == pytest.approx(1.0, abs=1e-5)
    assert m["pearson"] == pytest.approx(float(np.corrcoef([0.1, 0.2, 0.3], [1.0, 2.0, 4.0])[0, 1]), abs=1e-5)
    assert stream("encode", [{"input": inp, "mu": mu}]) == {}  # no head: no correlations


def test_encode_csv_with_several_properties_names_the_extra_columns(tmp_path):
    inp = batch(["ACDE", "KLMN"], [1.0, None])
    inp["properties"] = torch.tensor([[1.0, 5.0], [float("nan"), 6.0]])
    write_all("encode", [{"input": inp, "mu": torch.zeros(2, 2)}], tmp_path, names=["a", "b"])
    rows = list(csv.reader((tmp_path / "embeddings.csv").open()))
    assert rows == [
        ["id", "property", "b", "mu_0", "mu_1"],
        ["s0", "1.0", "5.0", "0.0", "0.0"],
        ["s1", "", "6.0", "0.0", "0.0"],
    ]


def test_encode_streams_several_batches_and_draws_the_picture_from_a_bounded_buffer(tmp_path, monkeypatch):
    drawn = {}

    def spy(mu, prop=None, **kw):
        drawn.update(mu=mu, prop=prop, **kw)
        return latent_figure(mu, prop, **kw)

    monkeypatch.setattr(predictions_module, "latent_figure", spy)
    g = torch.Generator().manual_seed(0)
    mus = [torch.randn(n, 3, generator=g) for n in (2, 2, 1)]
    outputs = [
        {"input": batch(["ACDE", "KL"], [1.0, None]), "mu": mus[0]},
        {"input": batch(["MNPQ", "RS"], [3.0, 4.0], first=2), "mu": mus[1]},
        {"input": batch(["WY"], [5.0], first=4), "mu": mus[2]},
    ]
    writer = EmbeddingsWriter(tmp_path, 0, ["y"], pca_rows=3)
    for o in outputs:
        writer.write(o)
    writer.close()
    rows = list(csv.reader((tmp_path / "embeddings.csv").open()))
    assert [r[0] for r in rows[1:]] == [f"s{i}" for i in range(5)] and rows.count(rows[0]) == 1  # one header
    np.testing.assert_allclose(np.load(tmp_path / "embeddings.npy"), torch.cat(mus).numpy())  # every row
    torch.testing.assert_close(drawn["mu"], torch.cat(mus)[:3])  # the picture: the first 3 rows only
    prop = drawn["prop"].tolist()
    assert len(prop) == 3 and prop[0] == 1.0 and math.isnan(prop[1]) and prop[2] == 3.0  # nan: unlabelled
    assert "first 3 of 5" in drawn["title"] and drawn["label"] == "y"
    assert (tmp_path / "latent_pca.png").read_bytes()[:8] == PNG


def test_interpolate_file_lists_each_path_between_its_endpoints(tmp_path):
    a, b = batch(["ACDE", "KL"], [None, None]), batch(["WWWW", "MN"], [None, None])
    per_point = [0, 0, 0, 1, 1, 1]  # input_a / input_b are repeated for each path point
    o = {
        "pair": torch.tensor([0, 0, 0, 1, 1, 1]),
        "alpha": torch.tensor([0.0, 0.5, 1.0] * 2),
        "input_a": pick_rows(a, per_point),
        "input_b": pick_rows(b, per_point),
        "output": decoded(["ACDE", "ACWW", "WWWW", "KL", "KN", "MN"]),
    }
    (path,) = write_all("interpolate", [o], tmp_path)
    recs = read_fasta(path)
    assert recs[0] == ("pair0 start s0", "ACDE") and recs[2] == ("pair0 s0->s0 alpha=0.500", "ACWW")
    assert recs[4] == ("pair0 end s0", "WWWW") and recs[7] == ("pair1 s1->s1 alpha=0.500", "KN")
    assert len(recs) == 10
    assert stream("interpolate", [o]) == {"validity": 1.0}
    halves = [pick_rows(o, [0, 1, 2]), pick_rows(o, [3, 4, 5])]
    (split,) = write_all("interpolate", halves, tmp_path / "split")  # one pair per batch: the same file
    assert read_fasta(split) == recs


def test_optimise_file_and_metrics(tmp_path):
    o = {
        "input": batch(["ACDE", "KLMN"], [0.5, 0.7]),
        "mu": torch.zeros(2, 3),
        "mu_opt": torch.ones(2, 3),
        "output": decoded(["ACDW", "KLMN"]),
        "reconstruction": decoded(["ACDE", "KLMA"]),
        "pred_before": torch.tensor([0.1, 0.2]),
        "pred_after": torch.tensor([0.4, 0.1]),
    }
    (path,) = write_all("optimise", [o], tmp_path, rank=1, names=["fitness"])
    assert path.name == "optimised.rank1.fasta"
    assert read_fasta(path)[:3] == [
        ("s0 input fitness=0.5", "ACDE"),
        ("s0 reconstruction pred=0.1", "ACDE"),
        ("s0 optimised pred_before=0.1 pred_after=0.4 identity_to_input=0.750", "ACDW"),
    ]
    assert stream("optimise", [o]) == {"identity_to_input_mean": pytest.approx(0.875), "validity": 1.0}


def test_unknown_task_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown predict task"):
        task_writers("paint", tmp_path, 0, V)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown predict task"):
        task_metrics("paint", V)  # type: ignore[arg-type]


def test_datamodule_generate_metrics_use_its_training_split(seq_csv, tmp_path):
    dm = CSVDataModule(str(seq_csv), property_columns=["score"], max_length=20)
    dm.setup()
    train = dm.dataset("train").sequences
    o = {
        "index": torch.arange(4),
        "output": decoded(train[:3] + ["WWWWWWWWWW"], 20),
        "latent": torch.zeros(4, 2),
    }
    metrics = dm.prediction_metrics("generate")
    for m in metrics:
        m.update(o)
    values = {k: v for m in metrics for k, v in m.compute().items()}
    assert values["novelty"] == pytest.approx(1 / 4)
    assert values["data_length_mean"] == pytest.approx(float(np.mean([len(s) for s in train])))
    writers = dm.prediction_writers("generate", tmp_path, 0)
    for w in writers:
        w.write(o)
    assert [p.name for w in writers for p in w.close()] == ["samples.fasta"]


# ------------------------------------------------------------- streaming == all at once
def reconstruct_batches(rng: random.Random, widths=(11, 16, 13)) -> list[dict]:
    """Three batches of different token widths (padded per batch), different sizes."""
    out = []
    for k, (width, n) in enumerate(zip(widths, (5, 3, 6))):
        src = random_seqs(n, rng, hi=width - 1)
        rec = [
            s if rng.random() < 0.3 else "".join(rng.choice(CANONICAL) for _ in s[: rng.randint(0, len(s))])
            for s in src
        ]
        inp = batch(src, [None] * n, max_length=width - 1, first=10 * k)
        out.append(
            {
                "input": inp,
                "output": decoded(rec, max_length=width - 1),
                "mu": torch.zeros(n, 2),
                "loss": {"nll": torch.rand(n, generator=torch.Generator().manual_seed(k)) * 3},
            }
        )
    return out


def test_streamed_reconstruct_metrics_equal_the_functions_on_the_concatenation():
    outputs = reconstruct_batches(random.Random(0))
    width = max(o["input"]["tokens"].shape[1] for o in outputs)
    src = torch.cat([pad_to(o["input"]["tokens"], width) for o in outputs])
    pred = torch.cat([pad_to(o["output"]["tokens"], width) for o in outputs])
    nll = torch.cat([o["loss"]["nll"] for o in outputs])
    m = stream("reconstruct", outputs)
    assert m["token_accuracy"] == pytest.approx(token_accuracy(pred, src, V.pad_idx, V.size), rel=1e-6)
    assert m["exact_match"] == pytest.approx(exact_match(pred, src), rel=1e-6)
    assert 0 < m["exact_match"] < 1 and 0 < m["token_accuracy"] < 1  # the data has both cases
    identities = [identity(a, b) for a, b in zip(V.decode(src), V.decode(pred))]
    assert m["identity_mean"] == pytest.approx(float(np.mean(identities)), abs=1e-12)
    assert m["perplexity"] == pytest.approx(perplexity(nll), rel=1e-6)


def test_streamed_generate_metrics_equal_the_functions_on_the_concatenation():
    rng = random.Random(1)
    train = random_seqs(30, rng, lo=1)
    batches = [random_seqs(6, rng, letters=CANONICAL + "X") + train[:2] for _ in range(3)]  # repeats, X, ""
    outputs = [{"index": torch.arange(8) + 8 * k, "output": decoded(s)} for k, s in enumerate(batches)]
    samples = [s for b in batches for s in b]
    want = generation_metrics(samples, train)
    got = stream("generate", outputs, train=train)
    assert set(want) <= set(got)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key
    assert 0 < got["validity"] < 1 and 0 < got["uniqueness"] < 1 and 0 < got["novelty"] < 1


def test_streamed_encode_interpolate_optimise_metrics_equal_the_functions():
    rng, g = random.Random(2), torch.Generator().manual_seed(2)
    outputs, preds, ys, outs, srcs = [], [], [], [], []
    for k, n in enumerate((4, 7, 5)):
        y = [None if rng.random() < 0.3 else rng.uniform(-1, 1) for _ in range(n)]
        src, out = random_seqs(n, rng), random_seqs(n, rng, letters=CANONICAL + "BZ")
        pred = torch.randn(n, generator=g)
        outputs.append(
            {
                "input": batch(src, y, first=10 * k),
                "mu": torch.zeros(n, 2),
                "prediction": pred,
                "output": decoded(out),
            }
        )
        preds += [p for p, v in zip(pred.tolist(), y) if v is not None]
        ys += [v for v in y if v is not None]
        outs, srcs = outs + out, srcs + src
    assert stream("encode", outputs) == pytest.approx(correlations(torch.tensor(preds), torch.tensor(ys)))
    validity = float(np.mean([is_valid(s) for s in outs]))
    assert stream("interpolate", outputs) == {"validity": pytest.approx(validity)}
    assert stream("optimise", outputs) == {
        "identity_to_input_mean": pytest.approx(float(np.mean([identity(a, b) for a, b in zip(srcs, outs)]))),
        "validity": pytest.approx(validity),
    }


def test_metrics_of_two_ranks_reduce_to_the_metrics_of_all_rows():
    """The states' DDP reductions (sum / cat), simulated with torchmetrics' merge_state."""
    rng = random.Random(3)
    train = random_seqs(20, rng, lo=1)
    gen = [
        {"index": torch.arange(5) + 5 * k, "output": decoded(random_seqs(4, rng) + train[:1])}
        for k in range(4)
    ]
    cases = [("reconstruct", reconstruct_batches(rng, widths=(11, 11, 11)), ()), ("generate", gen, train)]
    for task, outputs, ref in cases:
        ranks = [task_metrics(task, V, ref, width=11) for _ in range(2)]  # type: ignore[arg-type]
        for i, o in enumerate(outputs):
            for m in ranks[i % 2]:
                m.update(o)
        for mine, theirs in zip(*ranks):
            mine.merge_state(theirs)
        merged = {k: v for m in ranks[0] for k, v in m.compute().items()}
        assert merged == pytest.approx(stream(task, outputs, ref)), task


def test_diversity_uses_a_bounded_sample_and_says_how_many():
    rng = random.Random(4)
    train = random_seqs(50, rng, lo=1)
    outputs = [{"index": torch.arange(6) + 6 * k, "output": decoded(random_seqs(6, rng))} for k in range(3)]
    samples = [s for o in outputs for s in V.decode(o["output"]["tokens"])]
    m = stream("generate", outputs, train=train, capacity=10)
    assert m["diversity_samples"] == 10 and m["novelty_median_min_edit_distance_samples"] == 10
    assert m["diversity"] == pytest.approx(diversity(samples[:10]))  # the first 10 of 18
    assert m["diversity"] != pytest.approx(diversity(samples))
    assert m["validity"] == pytest.approx(float(np.mean([is_valid(s) for s in samples])))  # these use all 18
    reservoir = edit_distance_metrics(V, train, width=12, capacity=10)
    for o in outputs:
        reservoir.update(o)
    kept = reservoir.rows if isinstance(reservoir.rows, torch.Tensor) else torch.cat(reservoir.rows)
    assert kept.shape == (10, 12)  # the state itself holds no more than capacity rows
    other = edit_distance_metrics(V, train, width=12, capacity=10)  # a second rank's reservoir
    for o in outputs[::-1]:
        other.update(o)
    reservoir.merge_state(other)  # 20 rows from two ranks: the pairwise metrics still use 10 in all
    assert reservoir.compute()["diversity_samples"] == 10


def test_sequence_hash_is_stable_across_processes():
    assert sequence_hash("ACDE") == -1293425095069130091  # blake2b, not Python's salted hash()
    seqs = random_seqs(500, random.Random(5), lo=1, hi=20)
    assert len({sequence_hash(s) for s in seqs}) == len(set(seqs))


# ----------------------------------------------------------------------------------- figure
def test_pca_finds_the_main_axis_and_the_figure_is_a_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g) * torch.tensor([0.1, 5.0, 0.1, 0.1, 1.0])
    xy, ratio = pca(x)
    assert xy.shape == (200, 2) and ratio[0] > 0.9 and ratio[1] < ratio[0]
    assert abs(torch.corrcoef(torch.stack([xy[:, 0], x[:, 1]]))[0, 1]) > 0.99
    prop = x[:, 1].clone()
    prop[:10] = float("nan")
    fig = latent_figure(x, prop, label="fitness")
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "fitness"  # the colour bar
    path = save_figure(fig, tmp_path / "latent.png")
    assert path.read_bytes()[:8] == PNG
    assert len(latent_figure(x[:1]).axes) == 1  # one point, no property: still a picture
