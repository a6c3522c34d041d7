"""Prediction writers (one file set per rank, atomic), task metrics and the latent PCA picture."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from diled_protein import CSVDataModule, ProteinVocab, latent_figure
from diled_protein.plots import pca, save_figure
from diled_protein.predictions import task_metrics, write_task
from diled_protein.writers import format_fasta, rank_file, write_text

V = ProteinVocab()
PNG = b"\x89PNG\r\n\x1a\n"


def batch(seqs: list[str], props: list[float | None], max_length: int = 10) -> dict:
    t = torch.stack([V.encode(s, max_length) for s in seqs])
    return {
        "tokens": t,
        "mask": V.residue_mask(t),
        "id": [f"s{i}" for i in range(len(seqs))],
        "property": torch.tensor([0.0 if p is None else p for p in props]),
        "property_mask": torch.tensor([0.0 if p is None else 1.0 for p in props]),
    }


def decoded(seqs: list[str], max_length: int = 10) -> dict:
    t = torch.stack([V.encode(s, max_length) for s in seqs])
    return {"tokens": t, "mask": V.residue_mask(t)}


def read_fasta(path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    return [(lines[i][1:], lines[i + 1]) for i in range(0, len(lines), 2)]


def test_rank_file_names_and_atomic_write(tmp_path):
    assert rank_file(tmp_path, "samples.fasta", 0) == tmp_path / "samples.fasta"
    assert rank_file(tmp_path, "samples.fasta", 3) == tmp_path / "samples.rank3.fasta"
    assert rank_file(tmp_path, "latent_pca.png", 1) == tmp_path / "latent_pca.rank1.png"
    path = write_text(tmp_path / "sub" / "a.fasta", format_fasta([("x 1", "ACD"), ("y", "K")]))
    assert path.read_text() == ">x 1\nACD\n>y\nK\n"
    assert [p.name for p in path.parent.iterdir()] == ["a.fasta"]  # no temporary file left behind


def test_reconstruct_files_and_metrics(tmp_path):
    o = {
        "input": batch(["ACDE", "KLMN"], [1.0, None]),
        "output": decoded(["ACDF", "KLMN"]),
        "mu": torch.zeros(2, 3),
        "nll": torch.tensor([0.5, 1.5]),
    }
    (path,) = write_task("reconstruct", o, tmp_path, 0, V, ["y"])
    assert path.name == "reconstructions.fasta"
    assert read_fasta(path) == [
        ("s0 input y=1", "ACDE"),
        ("s0 reconstruction identity=0.750 nll=0.5", "ACDF"),
        ("s1 input", "KLMN"),
        ("s1 reconstruction identity=1.000 nll=1.5", "KLMN"),
    ]
    m = task_metrics("reconstruct", o, V)
    assert m["token_accuracy"] == pytest.approx(9 / 10)  # 8 residues + 2 <eos>, one wrong
    assert m["exact_match"] == 0.5 and m["perplexity"] == pytest.approx(math.e)
    assert m["identity_mean"] == pytest.approx(0.875)


def test_generate_files_per_rank_and_metrics(tmp_path):
    o = {"output": decoded(["ACDE", "ACDE", "WY"]), "latent": torch.zeros(3, 4)}
    (p0,) = write_task("generate", o, tmp_path, 0, V)
    (p2,) = write_task("generate", o, tmp_path, 2, V)
    assert read_fasta(p0)[0] == ("sample0 length=4", "ACDE")
    assert p2.name == "samples.rank2.fasta" and read_fasta(p2)[2] == ("rank2_sample2 length=2", "WY")
    m = task_metrics("generate", o, V, train=["ACDE", "KLM"])
    assert m["validity"] == 1.0 and m["uniqueness"] == pytest.approx(2 / 3)
    assert m["novelty"] == pytest.approx(1 / 3) and m["novelty_median_min_edit_distance"] == 0.0
    assert m["diversity"] == pytest.approx((0 + 4 + 4) / 3)


def test_encode_writes_csv_npy_png_and_correlations(tmp_path):
    inp = batch(["ACDE", "KLMN", "WYV", "PQ"], [1.0, 2.0, None, 4.0])
    mu = torch.randn(4, 3)
    o = {"input": inp, "mu": mu, "x_T": mu * 2, "prediction": torch.tensor([0.1, 0.2, 9.0, 0.3])}
    files = write_task("encode", o, tmp_path, 0, V, ["y"])
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
    m = task_metrics("encode", o, V)  # only labelled rows: predictions rank like the truth
    assert m["spearman"] == pytest.approx(1.0, abs=1e-5)
    assert m["pearson"] == pytest.approx(float(np.corrcoef([0.1, 0.2, 0.3], [1.0, 2.0, 4.0])[0, 1]), abs=1e-5)
    assert task_metrics("encode", {"input": inp, "mu": mu}, V) == {}


def test_encode_csv_with_several_properties_names_the_extra_columns(tmp_path):
    inp = batch(["ACDE", "KLMN"], [1.0, None])
    inp["properties"] = torch.tensor([[1.0, 5.0], [float("nan"), 6.0]])
    write_task("encode", {"input": inp, "mu": torch.zeros(2, 2)}, tmp_path, 0, V, ["a", "b"])
    rows = list(csv.reader((tmp_path / "embeddings.csv").open()))
    assert rows == [
        ["id", "property", "b", "mu_0", "mu_1"],
        ["s0", "1.0", "5.0", "0.0", "0.0"],
        ["s1", "", "6.0", "0.0", "0.0"],
    ]


def test_interpolate_file_lists_each_path_between_its_endpoints(tmp_path):
    o = {
        "input_a": batch(["ACDE", "KL"], [None, None]),
        "input_b": batch(["WWWW", "MN"], [None, None]),
        "output": decoded(["ACDE", "ACWW", "WWWW", "KL", "KN", "MN"]),
        "pair": torch.tensor([0, 0, 0, 1, 1, 1]),
        "alpha": torch.tensor([0.0, 0.5, 1.0] * 2),
    }
    (path,) = write_task("interpolate", o, tmp_path, 0, V)
    recs = read_fasta(path)
    assert recs[0] == ("pair0 start s0", "ACDE") and recs[2] == ("pair0 s0->s0 alpha=0.500", "ACWW")
    assert recs[4] == ("pair0 end s0", "WWWW") and recs[7] == ("pair1 s1->s1 alpha=0.500", "KN")
    assert len(recs) == 10
    assert task_metrics("interpolate", o, V) == {"validity": 1.0}


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
    (path,) = write_task("optimise", o, tmp_path, 1, V, ["fitness"])
    assert path.name == "optimised.rank1.fasta"
    assert read_fasta(path)[:3] == [
        ("s0 input fitness=0.5", "ACDE"),
        ("s0 reconstruction pred=0.1", "ACDE"),
        ("s0 optimised pred_before=0.1 pred_after=0.4 identity_to_input=0.750", "ACDW"),
    ]
    assert task_metrics("optimise", o, V) == {"identity_to_input_mean": pytest.approx(0.875), "validity": 1.0}


def test_unknown_task_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown predict task"):
        write_task("paint", {}, tmp_path, 0, V)  # type: ignore[arg-type]


def test_datamodule_generate_metrics_use_its_training_split(seq_csv, tmp_path):
    dm = CSVDataModule(str(seq_csv), property_columns=["score"], max_length=20)
    dm.setup()
    train = dm.dataset("train").sequences
    o = {"output": decoded(train[:3] + ["WWWWWWWWWW"], 20), "latent": torch.zeros(4, 2)}
    m = dm.prediction_metrics("generate", o)
    assert m["novelty"] == pytest.approx(1 / 4)
    files = dm.write_predictions("generate", o, tmp_path, 0)
    assert [f.name for f in files] == ["samples.fasta"]


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
