"""Text data modules: tokenisation and per-batch padding, truncation, length bucketing, splits,
sizes that flow into the models, a separate decoder tokenizer, and the VADER data."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from diled_text import (
    BucketBatchSampler,
    CausalLMDecoder,
    TextDataModule,
    TinyTextDataModule,
    VaderDataModule,
)
from diled_text.batching import padding_fraction
from torch.utils.data import DistributedSampler, RandomSampler


def test_collate_pads_per_batch_with_masks_labels_and_text(write):
    path = write("s.csv", "text,y\na b c d e f g,1\nhi,\nthree word sentence,0\n" + "x y,1\n" * 7)
    dm = TextDataModule(str(path), label_column="y", val_fraction=0.1, test_fraction=0.1)
    data = dm.dataset("train")
    first = dm.collate([data[i] for i in range(len(data))][:3])
    ids, mask = first["input_ids"], first["attention_mask"]
    lengths = mask.sum(1)
    assert ids.shape == mask.shape == (3, int(lengths.max()))  # padded to the longest row of this batch
    tok = dm.source_tokenizer
    for row, m, n, text in zip(ids, mask, lengths, first["text"]):
        assert row[0] == tok.bos_id and row[n - 1] == tok.eos_id and (row[n:] == tok.pad_id).all()
        assert m[:n].all() and not m[n:].any() and tok.decode(row) == text.lower()
    assert first["label"].dtype == torch.float32 and first["label_mask"].tolist() == [
        0.0 if math.isnan(v) else 1.0 for v in first["label"].tolist()
    ]
    assert len(first["id"]) == 3 and all(i.startswith("s:") for i in first["id"])


def test_long_sentences_are_truncated_counted_and_logged(write, caplog):
    path = write("s.txt", "".join(f"{'word ' * (5 + i)}\n" for i in range(20)))
    with caplog.at_level(logging.WARNING):
        dm = TextDataModule(str(path), block_size=10, test_fraction=0.2)
        dm.setup()
    truncated = sum(dm.dataset(s).truncated for s in ("train", "val", "test"))
    assert truncated == 16  # sentences of 9+ words do not fit 10 tokens with BOS and EOS
    assert "truncated" in caplog.text and "block_size=10" in caplog.text
    assert max(len(i) for s in ("train", "val", "test") for i in dm.dataset(s).ids) == 10


def test_bucketing_groups_lengths_and_covers_every_example_once():
    lengths = [(i * 37) % 29 + 3 for i in range(500)]
    sampler = BucketBatchSampler(RandomSampler(range(500)), 16, lengths=lengths)
    torch.manual_seed(0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(500)) and len(batches) == len(sampler) == 32
    random_batches = [list(range(i, min(i + 16, 500))) for i in range(0, 500, 16)]
    assert padding_fraction(lengths, batches) < 0.1 < padding_fraction(lengths, random_batches)
    assert list(sampler) != batches  # a new order each epoch
    torch.manual_seed(0)
    assert list(sampler) == batches  # from torch's generator, seeded once by the CLI
    dropped = BucketBatchSampler(range(500), 16, drop_last=True, lengths=lengths, shuffle=False)
    assert len(list(dropped)) == len(dropped) == 31 and all(len(b) == 16 for b in dropped)


def test_bucketing_under_ddp_gives_every_rank_its_share_and_the_same_batch_count():
    """What Lightning does under DDP: the batch sampler is rebuilt around a DistributedSampler."""
    lengths = [(i * 13) % 17 + 3 for i in range(203)]
    ranks = [
        list(BucketBatchSampler(DistributedSampler(range(203), 2, r, shuffle=True), 8, lengths=lengths))
        for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1])  # no rank waits for a batch that never comes
    seen = [i for batches in ranks for b in batches for i in b]
    assert set(seen) == set(range(203)) and len(seen) == 204  # DistributedSampler pads one index


def test_loaders_bucket_the_train_split_and_keep_every_example():
    dm = TinyTextDataModule(200, batch_size=8)
    dm.setup()
    seen = [i for b in dm.train_dataloader() for i in b["id"]]
    assert sorted(seen) == sorted(r.id for r in dm.dataset("train").records)
    plain = TinyTextDataModule(200, batch_size=8, bucket=False)
    widths = [b["input_ids"].shape[1] * len(b["id"]) for b in dm.val_dataloader()]
    plain_widths = [b["input_ids"].shape[1] * len(b["id"]) for b in plain.val_dataloader()]
    assert sum(widths) <= sum(plain_widths)


def test_splits_from_files_and_carved_with_a_seed(write):
    train = write("train.txt", "".join(f"train sentence {i}\n" for i in range(30)))
    val, test = write("val.txt", "val one\nval two\n"), write("test.txt", "test one\n")
    dm = TextDataModule(str(train), val_path=str(val), test_path=str(test))
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [30, 2, 1]
    a, b = TextDataModule(str(train), split_seed=1), TextDataModule(str(train), split_seed=1)
    assert [r.id for r in a.dataset("test").records] == [r.id for r in b.dataset("test").records]
    assert [len(a.dataset(s)) for s in ("train", "val", "test")] == [24, 3, 3]
    with pytest.raises(ValueError, match="no training sentences are left after carving val/test from 2"):
        TextDataModule(str(write("two.txt", "one\ntwo\n")), val_fraction=0.5, test_fraction=0.4).setup()


def test_model_sizes_flow_the_tokenizer_into_the_decoder():
    sizes = TinyTextDataModule.model_sizes(tokenizer=None, decoder_tokenizer=None)
    assert sizes["vocab_size"] == sizes["input_vocab_size"] == 30522 and sizes["pad_token_id"] == 0
    decoder = CausalLMDecoder(
        8,
        **{k: v for k, v in sizes.items() if k != "input_vocab_size"},
        config={"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 40},
    )
    TinyTextDataModule(20).check_compatible(object(), decoder)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lower data.init_args.block_size"):
        TinyTextDataModule(20, block_size=40).check_compatible(object(), decoder)  # type: ignore[arg-type]


def test_a_separate_decoder_tokenizer(word_tokenizer):
    dm = TinyTextDataModule(40, decoder_tokenizer=word_tokenizer)
    batch = dm.collate([dm.dataset("train")[i] for i in range(3)])
    assert batch["decoder_input_ids"].max() < dm.target_tokenizer.vocab_size < 200
    words = dm.target_tokenizer.hf.convert_ids_to_tokens(batch["decoder_input_ids"][0, 1:-1].tolist())
    assert [w for w in words if w not in ("<pad>", "</s>")] == batch["text"][
        0
    ].split()  # all in the vocabulary
    sizes = TinyTextDataModule.model_sizes(tokenizer=None, decoder_tokenizer=word_tokenizer)
    assert sizes["vocab_size"] == dm.target_tokenizer.vocab_size and sizes["input_vocab_size"] == 30522
    decoder = CausalLMDecoder(
        8,
        vocab_size=sizes["vocab_size"],
        tokenizer=word_tokenizer,
        config={"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 40},
    )
    nll = decoder.loss(torch.randn(3, 8), batch, t=torch.ones(3, dtype=torch.long))["nll"]
    assert nll.shape == (3,) and (nll - math.log(sizes["vocab_size"])).abs().max() < 1.0  # ~uniform at init


@pytest.mark.shared_data
def test_vader_reads_the_four_files(shared_vader):
    dm = VaderDataModule(str(shared_vader), batch_size=32)
    sizes = [len(dm.dataset(s)) for s in ("train", "val", "test")]
    assert 10000 < sum(sizes) < 23699 and sizes[1] == sizes[2]
    labels = torch.tensor([r.label for r in dm.dataset("train").records])
    assert set(labels.unique().tolist()) == {0.0, 1.0} and 0.3 < labels.mean() < 0.7
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[1] <= 32 and batch["label_mask"].all()


def test_batch_from_records_tokenises_like_the_data_and_says_what_is_wrong(caplog):
    dm = TinyTextDataModule(20, block_size=7)
    with caplog.at_level(logging.WARNING):
        batch = dm.batch_from_records(["The Food was GREAT.", "one two three four five six seven"])
    assert batch["id"] == ["0", "1"] and batch["label_mask"].tolist() == [0.0, 0.0]
    assert batch["input_ids"].shape == (2, 7) and batch["attention_mask"][0].sum() == 7
    assert "batch_from_records: truncated 1 of 2 sentence(s) to block_size=7" in caplog.text
    assert dm.records_from_batch(batch) == ["the food was great.", "one two three four five"]
    for bad, says in (("a sentence", "non-empty list"), ([], "non-empty list"), (["ok", "  "], "record 1")):
        with pytest.raises(ValueError, match=says):
            dm.batch_from_records(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="record 0 is 3, not a non-empty sentence"):
        dm.batch_from_records([3])  # type: ignore[list-item]


def test_records_from_a_decoded_batch_and_with_a_separate_decoder_tokenizer(word_tokenizer):
    dm = TinyTextDataModule(20)
    decoder = CausalLMDecoder(8, config={"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 40}).eval()
    decoded = decoder.decode(torch.randn(3, 8), max_length=5, generator=torch.Generator().manual_seed(0))
    assert dm.records_from_batch(decoded) == decoded["text"] and len(decoded["text"]) == 3
    words = TinyTextDataModule(20, decoder_tokenizer=word_tokenizer)
    sentences = ["the service was so poor today .", "the hotel was truly boring ."]  # all known words
    batch = words.batch_from_records(sentences)
    assert batch["decoder_input_ids"].shape[0] == 2 and words.records_from_batch(batch) == sentences
    assert words.records_from_batch({"text": ["as given"]}) == ["as given"]  # no ids: the text as is
