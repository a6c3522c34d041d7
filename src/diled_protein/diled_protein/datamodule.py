"""Protein data modules: records -> tokenised splits -> batches (DiLED paper §5 "Proteins").

A batch is ``{"tokens": [B, L] long, "mask": [B, L] bool (residues), "property": [B] float,
"property_mask": [B] float (1 where labelled), "id": list[str]}`` with ``L = max_length + 1``
(residues, ``<eos>``, ``<pad>``; see :mod:`diled_protein.vocab`). ``property`` is the first property
column (0 where unlabelled); with several property columns ``"properties": [B, K]`` holds all of them
(``nan`` where unlabelled).

Splits come from separate files (``val_path`` / ``test_path``) or are carved at random from the
training file with a fixed ``split_seed`` (a local generator; no global seeding).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from diled_core import Batch, Decoder, DiledDataModule, Encoder, PredictionMetric, PredictTask, RecordWriter
from torch.utils.data import Dataset

from .errors import data_error
from .predictions import task_writers
from .records import Column, ProteinRecord, TooLong, check_sequence, read_csv, read_fasta
from .streaming import task_metrics
from .vocab import ProteinVocab

__all__ = ["CSVDataModule", "FastaDataModule", "ProteinDataModule", "TokenDataset"]

log = logging.getLogger(__name__)
Split = Literal["train", "val", "test"]


class TokenDataset(Dataset):
    """Tokenised records: ``tokens [N, L]``, ``properties [N, K]`` (nan = unlabelled) and ids."""

    def __init__(
        self, records: Sequence[ProteinRecord], vocab: ProteinVocab, max_length: int, num_properties: int
    ) -> None:
        self.ids = [r.id for r in records]
        self.sequences = [r.sequence for r in records]
        self.tokens = torch.empty(len(records), max_length + 1, dtype=torch.long)
        self.properties = torch.empty(len(records), num_properties)
        for i, r in enumerate(records):
            self.tokens[i] = vocab.encode(r.sequence, max_length)
            self.properties[i] = torch.tensor(r.properties)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"id": self.ids[i], "tokens": self.tokens[i], "properties": self.properties[i]}


def _dedupe(records: list[ProteinRecord], source: str | Path) -> list[ProteinRecord]:
    seen: set[str] = set()
    kept = [r for r in records if not (r.sequence in seen or seen.add(r.sequence))]
    if len(kept) < len(records):
        log.warning("%s: dropped %d duplicate sequence(s) (kept the first)", source, len(records) - len(kept))
    return kept


class ProteinDataModule(DiledDataModule):
    """Base for protein data modules; subclasses implement :meth:`read` (one file -> records).

    Args:
        val_path / test_path: separate files for those splits; ``None`` carves the split from the
            training file at random (``val_fraction`` / ``test_fraction``, seeded by ``split_seed``).
        max_length: most residues per sequence; tensors are ``max_length + 1`` wide.
        too_long: ``error`` | ``skip`` (logged) | ``truncate`` for longer sequences.
        deduplicate: drop repeated sequences within each file (first kept), so a sequence cannot
            land in both train and test.
        batch_size / num_workers: as in :class:`~diled_core.DiledDataModule`.
    """

    modality = "protein"
    #: the token alphabet encoders and decoders must declare as ``alphabet_name``
    vocab_name = "ESM-1b"
    #: names of the property columns, in order (set by subclasses)
    property_names: list[str]

    def __init__(
        self,
        *,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        max_length: int = 50,
        too_long: TooLong = "error",
        deduplicate: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= f < 1.0:
                raise ValueError(f"{type(self).__name__}: {name}={f} must be in [0, 1).")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"{type(self).__name__}: val_fraction + test_fraction must be < 1 "
                f"(got {val_fraction} + {test_fraction}); leave some data for training."
            )
        if max_length < 1:
            raise ValueError(f"{type(self).__name__}: max_length must be >= 1 (got {max_length}).")
        self.val_path, self.test_path = val_path, test_path
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.max_length, self.too_long, self.deduplicate = max_length, too_long, deduplicate
        self.vocab = ProteinVocab()
        self.property_names = []
        self._splits: dict[Split, TokenDataset] | None = None

    # --- reading --------------------------------------------------------------------------------
    def read(self, path: str | Path) -> list[ProteinRecord]:  # pragma: no cover - abstract
        """Read one file into validated records (errors name the file and line)."""
        raise NotImplementedError

    def train_source(self) -> str | Path:  # pragma: no cover - abstract
        """The file the training split (and any carved split) comes from."""
        raise NotImplementedError

    def _load(self, path: str | Path) -> list[ProteinRecord]:
        records = self.read(path)
        return _dedupe(records, path) if self.deduplicate else records

    def _split_records(self) -> dict[Split, list[ProteinRecord]]:
        source = self.train_source()
        records = self._load(source)
        perm = torch.randperm(len(records), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        records = [records[i] for i in perm]
        total = len(records)
        out: dict[Split, list[ProteinRecord]] = {}
        for split, path, frac in (
            ("test", self.test_path, self.test_fraction),
            ("val", self.val_path, self.val_fraction),
        ):
            if path is not None:
                out[split] = self._load(path)
                continue
            n = round(total * frac)  # fractions of the whole training file
            n = max(n, 1) if frac > 0 and total >= 3 else n
            out[split], records = records[:n], records[n:]
        if not records:
            raise data_error(
                f"no training examples are left after carving val/test from {len(perm)} sequence(s)",
                path=source,
                fix="Use more data, lower val_fraction/test_fraction, or pass val_path/test_path.",
            )
        out["train"] = records
        return out

    def setup(self, stage: str | None = None) -> None:
        """Read, validate, split and tokenise every split (once)."""
        if self._splits is not None:
            return
        recs = self._split_records()
        k = len(self.property_names)
        self._splits = {s: TokenDataset(r, self.vocab, self.max_length, k) for s, r in recs.items()}
        log.info("protein data: %s", ", ".join(f"{s} {len(d)}" for s, d in self._splits.items()))

    def dataset(self, split: Split) -> TokenDataset:
        self.setup()
        assert self._splits is not None
        return self._splits[split]

    # --- batches --------------------------------------------------------------------------------
    def collate(self, examples: list[dict[str, Any]]) -> Batch:
        """Examples -> batch dict (see the module docstring)."""
        tokens = torch.stack([e["tokens"] for e in examples])
        props = torch.stack([e["properties"] for e in examples])
        first = props[:, 0] if props.shape[1] else torch.full((len(examples),), math.nan)
        labelled = ~first.isnan()
        batch: Batch = {
            "tokens": tokens,
            "mask": self.vocab.residue_mask(tokens),
            "property": torch.where(labelled, first, torch.zeros_like(first)),
            "property_mask": labelled.float(),
            "id": [e["id"] for e in examples],
        }
        if props.shape[1] > 1:
            batch["properties"] = props
        return batch

    # --- raw records (the Python API) ----------------------------------------------------------
    def batch_from_records(self, records: Sequence[str]) -> Batch:
        """Amino-acid sequences (strings of at most ``max_length`` residues, see
        :mod:`diled_protein.vocab`) -> one batch, ids ``record<i>``, properties unlabelled. A bad record is
        a :class:`~diled_protein.ProteinDataError` naming its index. Needs no data file (no :meth:`setup`)."""
        k = len(self.property_names)
        examples = [
            {
                "id": f"record{i}",
                "tokens": self.vocab.encode(self._record(i, seq), self.max_length),
                "properties": torch.full((k,), math.nan),
            }
            for i, seq in enumerate(records)
        ]
        if not examples:
            raise data_error("no records were given", fix="Pass a list of one or more amino-acid sequences.")
        return self.collate(examples)

    def records_from_batch(self, batch: Batch) -> list[str]:
        """A batch with ``tokens`` (e.g. ``model.reconstruct(batch)`` or ``model.sample(n)``) -> sequences."""
        return self.vocab.decode(batch["tokens"])

    def _record(self, i: int, seq: Any) -> str:
        where = f"record {i}"
        if not isinstance(seq, str):
            raise data_error(
                f"the record is of type {type(seq).__name__}, not a string of amino acids",
                path=where,
                fix="Pass each sequence as a string, e.g. 'MKTAYIAKQR'.",
            )
        if not seq:
            raise data_error("empty sequence", path=where, fix="Pass at least one residue.")
        if len(seq) > self.max_length:
            raise data_error(
                f"sequence of {len(seq)} residues is longer than max_length={self.max_length}",
                path=where,
                value=seq,
                fix="Shorten it, or use a model and datamodule built for a larger max_length.",
            )
        checked = check_sequence(seq, where, None, self.max_length, "error")
        assert checked is not None
        return checked

    # --- model sizes, model check and predictions ----------------------------------------------
    @classmethod
    def model_sizes(cls, **init_args: Any) -> dict[str, Any]:
        """``max_length`` flows from the data into the decoder (and a flatten-pooling encoder), so a
        config names it once, under ``data``."""
        return {"max_length": init_args["max_length"]}

    def check_compatible(self, encoder: Encoder, decoder: Decoder) -> None:
        for role, part in (("encoder", encoder), ("decoder", decoder)):
            if getattr(part, "alphabet_name", None) != self.vocab_name:
                raise ValueError(
                    f"the {role} {type(part).__name__} does not take protein tokens (fair-esm ESM-1b "
                    "alphabet); use diled_protein.ReLSOEncoder or ESM2Encoder with diled_protein.ConvDecoder."
                )
        enc_length, dec_length = getattr(encoder, "max_length", None), getattr(decoder, "max_length", None)
        if enc_length not in (None, self.max_length):
            raise ValueError(
                f"the encoder was built for max_length={enc_length} but the data uses "
                f"max_length={self.max_length}; set model.encoder.init_args.max_length to {self.max_length}."
            )
        if dec_length != self.max_length:
            raise ValueError(
                f"the decoder was built for max_length={dec_length} but the data uses "
                f"max_length={self.max_length}; set model.decoder.init_args.max_length to {self.max_length} "
                "(or change data max_length)."
            )

    def train_sequences(self) -> list[str]:
        """The training split's sequences (for novelty)."""
        return self.dataset("train").sequences

    def prediction_writers(self, task: PredictTask, out_dir: Path, rank: int) -> list[RecordWriter]:
        """FASTA / CSV / NPY / PNG writers of ``task`` (:mod:`diled_protein.predictions`)."""
        return task_writers(task, Path(out_dir), rank, self.vocab, self.property_names)

    def prediction_metrics(self, task: PredictTask) -> list[PredictionMetric]:
        """Streaming protein metrics of ``task`` (:mod:`diled_protein.streaming`); ``generate`` compares
        with the training split."""
        train = self.train_sequences() if task == "generate" else []
        return task_metrics(task, self.vocab, train, width=self.max_length + 1)


class CSVDataModule(ProteinDataModule):
    """Sequences from a CSV file: a sequence column plus optional numeric property columns.

    Args:
        path: the training CSV (val/test are carved from it unless ``val_path`` / ``test_path``).
        sequence_column / property_columns / id_column: header names, or 0-based positions.
        header: the first row (after ``skip_rows``) names the columns.
        skip_rows: lines to ignore at the top of each file.
        strip: characters removed from both ends of each sequence (``"J"`` for gifford's padding).
        Other args: see :class:`ProteinDataModule`.
    """

    def __init__(
        self,
        path: str,
        *,
        sequence_column: Column = "sequence",
        property_columns: list[Column] | None = None,
        id_column: Column | None = None,
        header: bool = True,
        skip_rows: int = 0,
        strip: str = "",
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        max_length: int = 50,
        too_long: TooLong = "error",
        deduplicate: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            val_path=val_path,
            test_path=test_path,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            max_length=max_length,
            too_long=too_long,
            deduplicate=deduplicate,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        self.path = path
        self.sequence_column, self.id_column = sequence_column, id_column
        self.property_columns = list(property_columns or [])
        self.header, self.skip_rows, self.strip = header, skip_rows, strip
        self.property_names = [str(c) for c in self.property_columns]

    def train_source(self) -> str | Path:
        return self.path

    def read(self, path: str | Path) -> list[ProteinRecord]:
        return read_csv(
            path,
            sequence_column=self.sequence_column,
            property_columns=self.property_columns,
            id_column=self.id_column,
            header=self.header,
            skip_rows=self.skip_rows,
            strip=self.strip,
            max_length=self.max_length,
            too_long=self.too_long,
        )


class FastaDataModule(ProteinDataModule):
    """Sequences from a FASTA file; properties from ``key=value`` fields of the header.

    Args:
        path: the training FASTA (val/test are carved from it unless ``val_path`` / ``test_path``).
        property_keys: header keys to read as properties, e.g. ``["fitness"]`` for ``>seq1 fitness=0.5``.
        Other args: see :class:`ProteinDataModule`.
    """

    def __init__(
        self,
        path: str,
        *,
        property_keys: list[str] | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        max_length: int = 50,
        too_long: TooLong = "error",
        deduplicate: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            val_path=val_path,
            test_path=test_path,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            max_length=max_length,
            too_long=too_long,
            deduplicate=deduplicate,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        self.path = path
        self.property_keys = list(property_keys or [])
        self.property_names = list(self.property_keys)

    def train_source(self) -> str | Path:
        return self.path

    def read(self, path: str | Path) -> list[ProteinRecord]:
        return read_fasta(
            path, property_keys=self.property_keys, max_length=self.max_length, too_long=self.too_long
        )
