"""Text metrics: BLEU and self-BLEU equal sacreBLEU's, distinct-n, and the streaming metrics equal
their all-at-once values however the rows are split into batches."""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu
import torch
from diled_text import TextTokenizer, reference_metrics
from diled_text.streaming import task_metrics
from diled_text.textmetrics import bleu_from_statistics, bleu_statistics, distinct_n, self_bleu

WORDS = "the a food was great bad . ! very good movie is boring".split()


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(n)]


def test_bleu_equals_sacrebleu_and_streams_by_summing_statistics():
    hyps, refs = sentences(40, 0), sentences(40, 1)
    want = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert bleu_from_statistics(bleu_statistics(hyps, refs)) == pytest.approx(want)
    halves = [
        a + b for a, b in zip(bleu_statistics(hyps[:13], refs[:13]), bleu_statistics(hyps[13:], refs[13:]))
    ]
    assert bleu_from_statistics(halves) == pytest.approx(want)
    assert bleu_from_statistics(bleu_statistics(refs, refs)) == pytest.approx(100.0)


def test_self_bleu_is_sacrebleu_against_all_other_samples():
    texts = sentences(25, 2)
    others = [[t for j, t in enumerate(texts) if j != i] for i in range(len(texts))]
    want = sacrebleu.corpus_bleu(texts, [list(col) for col in zip(*others)]).score
    assert self_bleu(texts) == pytest.approx(want)
    assert self_bleu(["the same five words here"] * 3) == pytest.approx(100.0)


def test_distinct_n_and_reference_metrics():
    assert distinct_n(["a b a b", "a c"], 1) == pytest.approx(3 / 6)
    assert distinct_n(["a b a b", "a c"], 2) == pytest.approx(3 / 4)
    assert math.isnan(distinct_n(["a"], 2))
    ref = reference_metrics(["a b a b", "a c"])
    assert ref["distinct_1"] == 0.5 and ref["distinct_samples"] == 2 and ref["length_words_mean"] == 3


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return TextTokenizer()


def _rows(tok: TextTokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    return tok.pad([tok.encode(t, 32)[0] for t in texts])


def test_reconstruction_metrics_stream_over_batches_of_any_width(tok):
    refs = ["the food was great .", "a very boring movie", "good", "the staff was rude today ."]
    outs = ["the food was great .", "a very good movie", "good good good", "the staff"]
    ids, mask = _rows(tok, refs)
    out_ids, out_mask = _rows(tok, outs)
    total = hits = 0
    for r, o in zip(ids.tolist(), out_ids.tolist()):  # by hand: position-wise matches after BOS
        n = len([t for t in r if t != tok.pad_id])
        total += n - 1
        hits += sum(r[j] == o[j] for j in range(1, min(n, len(o))) if o[j] != tok.pad_id)
    metrics = task_metrics("reconstruct", tok)
    for part in ([0, 1], [2, 3]):  # two batches; each padded to its own width
        sel = torch.tensor(part)
        w, wo = int(mask[sel].sum(1).max()), int(out_mask[sel].sum(1).max())
        o = {
            "input": {"input_ids": ids[sel, :w], "attention_mask": mask[sel, :w]},
            "output": {
                "input_ids": out_ids[sel, :wo],
                "attention_mask": out_mask[sel, :wo],
                "text": [outs[i] for i in part],
            },
        }
        for m in metrics:
            m.update(o)
    got = {k: v for m in metrics for k, v in m.compute().items()}
    refs_seen = tok.decode_batch(ids)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(outs, [refs_seen]).score)
    assert got["token_accuracy"] == pytest.approx(hits / total) and 0 < hits < total
    assert got["exact_match"] == pytest.approx(1 / 4)


def test_generation_diversity_uses_a_bounded_sample(tok):
    from diled_text.streaming import generation_diversity

    texts = sentences(30, 3)
    metric = generation_diversity(tok, capacity=20, self_bleu_samples=10)
    for start in range(0, 30, 7):
        ids, mask = _rows(tok, texts[start : start + 7])
        metric.update({"output": {"input_ids": ids, "attention_mask": mask}})
    got = metric.compute()
    kept = tok.decode_batch(_rows(tok, texts[:20])[0])
    assert got["distinct_samples"] == 20 and got["self_bleu_samples"] == 10
    assert got["distinct_2"] == pytest.approx(distinct_n(kept, 2))
    assert got["self_bleu"] == pytest.approx(self_bleu(kept[:10]))


def test_transfer_reports_content_kept_and_the_diversity_of_its_outputs(tok):
    """Degenerate transfers ("i!" for every positive target) can fool a sentiment classifier: BLEU to
    the input and distinct-n show them."""
    inputs = ["the food was great .", "a very boring movie", "the staff was rude today ."]
    outs = ["the food was awful .", "i !", "i !"]
    ids, mask = _rows(tok, inputs)
    out_ids, out_mask = _rows(tok, outs)
    o = {
        "input": {"input_ids": ids, "attention_mask": mask},
        "output": {"input_ids": out_ids, "attention_mask": out_mask, "text": outs},
    }
    metrics = task_metrics("transfer", tok)
    for m in metrics:
        m.update(o)
    got = {k: v for m in metrics for k, v in m.compute().items()}
    assert got["bleu_to_input"] == pytest.approx(sacrebleu.corpus_bleu(outs, [tok.decode_batch(ids)]).score)
    assert 0 < got["bleu_to_input"] < 100
    assert got["distinct_1"] == pytest.approx(distinct_n(tok.decode_batch(out_ids), 1))
