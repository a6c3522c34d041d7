"""Protein metrics against hand computations and reference implementations."""

from __future__ import annotations

import math
import random

import pytest
import torch
from diled_protein import ProteinVocab, levenshtein
from diled_protein.metrics import (
    composition_distance,
    correlations,
    diversity,
    exact_match,
    generation_metrics,
    identity,
    novelty,
    perplexity,
    residue_counts,
    token_accuracy,
)
from diled_protein.vocab import RESIDUES
from scipy import stats

V = ProteinVocab()


def toks(*rows: str) -> torch.Tensor:
    """'AC$' -> residues, '$' = <eos>, '.' = <pad>."""
    table = {"$": V.eos_idx, ".": V.pad_idx}
    return torch.tensor([[table.get(c) if c in table else V.alphabet.get_idx(c) for c in r] for r in rows])


def slow_levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[:], i
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
    return row[-1]


def test_token_accuracy_counts_residues_and_eos_but_not_padding():
    target = toks("AC$.", "K$..")
    pred = toks("AD$A", "KL..")
    assert token_accuracy(pred, target, V.pad_idx, V.size) == pytest.approx(3 / 5)
    assert token_accuracy(target, target, V.pad_idx, V.size) == 1.0


def test_exact_match_and_perplexity():
    target = toks("AC$.", "K$..", "WY$.")
    pred = toks("AC$.", "KA$.", "WY$.")
    assert exact_match(pred, target) == pytest.approx(2 / 3)
    assert perplexity(torch.tensor([1.0, 2.0])) == pytest.approx(math.exp(1.5))


def test_identity():
    assert identity("ACDE", "ACDF") == 0.75
    assert identity("AC", "ACDE") == 0.5
    assert identity("", "") == 1.0 and identity("", "A") == 0.0


@pytest.mark.parametrize("max_len, letters", [(15, "ACD"), (140, "AC"), (80, "ACDEFGHIKLMNPQRSTVWY")])
def test_levenshtein_matches_the_textbook_dynamic_programme(max_len, letters):
    rng = random.Random(max_len)
    a = ["".join(rng.choice(letters) for _ in range(rng.randint(0, max_len))) for _ in range(12)] + [""]
    b = ["".join(rng.choice(letters) for _ in range(rng.randint(0, max_len))) for _ in range(9)]
    got = levenshtein(a, b, max_pairs=20)  # small chunks exercise the chunking
    want = [[slow_levenshtein(x, y) for y in b] for x in a]
    assert got.tolist() == want


def test_levenshtein_known_values():
    assert levenshtein(["KITTEN", "FLAW"], ["SITTING", "LAWN", ""]).tolist() == [[3, 5, 6], [7, 2, 4]]


def test_novelty_and_diversity_by_hand():
    out = novelty(["ACDE", "KLMN", "ACDF"], ["ACDE", "WWWW"])
    assert out["novelty"] == pytest.approx(2 / 3)
    assert out["novelty_median_min_edit_distance"] == 1.0  # nearest distances 0, 4, 1
    assert diversity(["AAA", "AAC", "CCC"]) == pytest.approx(2.0)  # pairs 1, 3, 2
    assert math.isnan(diversity(["A"]))


def test_novelty_subsamples_the_reference():
    ref = ["A" + "C" * i for i in range(50)]
    sample = ["A" + "C" * 50]  # one insertion away from the longest reference sequence
    full = novelty(sample, ref, max_reference=100)
    sub = novelty(sample, ref, max_reference=3, seed=1)
    assert full["novelty_median_min_edit_distance"] == 1.0
    assert sub["novelty_median_min_edit_distance"] > 1.0
    assert novelty(["AC"], ref, max_reference=3, seed=1)["novelty"] == 0.0  # exact match uses the whole set


def test_generation_metrics():
    m = generation_metrics(["ACDE", "ACDE", "AXC", "", "KLMNP"], ["ACDE", "KL"])
    assert m["validity"] == pytest.approx(3 / 5)  # 'X' and the empty sequence are not valid
    assert m["uniqueness"] == pytest.approx(2 / 3)
    assert m["novelty"] == pytest.approx(3 / 5)
    assert m["length_mean"] == pytest.approx(16 / 5)
    assert m["data_length_mean"] == pytest.approx(3.0)
    assert m["length_std"] == pytest.approx(float(torch.tensor([4.0, 4, 3, 0, 5]).std()))


def test_composition_distance_is_the_total_variation_of_residue_frequencies():
    counts = residue_counts(["AAC", "C", "Q?"])  # characters outside the alphabet are not counted
    assert counts.sum() == 5 and counts[[RESIDUES.index(r) for r in "ACQ"]].tolist() == [2, 2, 1]
    ref = residue_counts(["AAAA"])
    assert composition_distance(counts, ref) == pytest.approx(0.5 * (0.6 + 0.4 + 0.2))
    assert composition_distance(ref, residue_counts(["AA"])) == 0.0  # frequencies, not counts
    assert composition_distance(residue_counts(["KK"]), ref) == 1.0
    assert math.isnan(composition_distance(residue_counts([""]), ref))
    m = generation_metrics(["AAC", "C", "Q"], ["AAAA"])
    assert m["composition_distance"] == pytest.approx(0.6)


def test_correlations_match_scipy():
    rng = torch.Generator().manual_seed(0)
    y = torch.randn(50, generator=rng)
    pred = y + 0.8 * torch.randn(50, generator=rng)
    got = correlations(pred, y)
    assert got["spearman"] == pytest.approx(stats.spearmanr(pred, y).statistic, abs=1e-5)
    assert got["pearson"] == pytest.approx(stats.pearsonr(pred, y).statistic, abs=1e-5)
    assert correlations(torch.ones(1), torch.ones(1)) == {}
