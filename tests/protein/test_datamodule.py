"""Data modules: splits, batches, compatibility checks, and the built-in and shared data sets."""

from __future__ import annotations

import math

import pytest
import torch
from diled_protein import (
    AMPDataModule,
    ConvDecoder,
    CSVDataModule,
    FastaDataModule,
    ProteinDataError,
    ProteinVocab,
    ReLSOEncoder,
)


def test_csv_split_is_seeded_disjoint_and_complete(seq_csv):
    a = CSVDataModule(
        str(seq_csv), property_columns=["score"], val_fraction=0.2, test_fraction=0.1, split_seed=3
    )
    b = CSVDataModule(
        str(seq_csv), property_columns=["score"], val_fraction=0.2, test_fraction=0.1, split_seed=3
    )
    c = CSVDataModule(
        str(seq_csv), property_columns=["score"], val_fraction=0.2, test_fraction=0.1, split_seed=4
    )
    a.setup("fit"), b.setup("fit"), c.setup("fit")
    sizes = {s: len(a.dataset(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 28, "val": 8, "test": 4}
    sets = [set(a.dataset(s).sequences) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(sets[0] | sets[1] | sets[2]) == 40
    assert a.dataset("test").sequences == b.dataset("test").sequences
    assert a.dataset("test").sequences != c.dataset("test").sequences


def test_batches_have_the_documented_keys_shapes_and_values(write):
    path = write("p.csv", "sequence,y\nACDE,1.5\nKL,\nMNPQRS,-2\n")
    dm = CSVDataModule(
        str(path), property_columns=["y"], val_fraction=0.0, test_fraction=0.0, max_length=8, batch_size=3
    )
    dm.setup()
    ds = dm.dataset("train")
    order = [ds.sequences.index(s) for s in ("ACDE", "KL", "MNPQRS")]
    batch = dm.collate([ds[i] for i in order])
    v = ProteinVocab()
    assert batch["tokens"].shape == (3, 9) and batch["tokens"].dtype == torch.long
    assert (
        batch["tokens"][0].tolist() == [v.alphabet.get_idx(c) for c in "ACDE"] + [v.eos_idx] + [v.pad_idx] * 4
    )
    assert batch["mask"].dtype == torch.bool and batch["mask"].sum(1).tolist() == [4, 2, 6]
    assert batch["property"].tolist() == [1.5, 0.0, -2.0]
    assert batch["property_mask"].tolist() == [1.0, 0.0, 1.0]
    assert batch["id"] == ["p:2", "p:3", "p:4"]
    assert "properties" not in batch
    assert v.decode(batch["tokens"]) == ["ACDE", "KL", "MNPQRS"]
    loaded = next(iter(dm.train_dataloader()))  # the base class's loader uses this collate
    assert sorted(loaded["id"]) == batch["id"] and loaded["tokens"].shape == (3, 9)


def test_several_property_columns_and_no_property(write):
    path = write("m.csv", "sequence,a,b\nACDE,1,\nKLMN,,2\n")
    dm = CSVDataModule(
        str(path), property_columns=["a", "b"], val_fraction=0.0, test_fraction=0.0, batch_size=2
    )
    batch = dm.collate([dm.dataset("train")[i] for i in range(2)])
    assert batch["properties"].shape == (2, 2)
    assert batch["properties"][0, 0] == 1 and math.isnan(batch["properties"][0, 1])
    assert batch["property_mask"].tolist() == [1.0, 0.0]
    bare = CSVDataModule(str(path), val_fraction=0.0, test_fraction=0.0)
    batch = bare.collate([bare.dataset("train")[0]])
    assert batch["property_mask"].tolist() == [0.0] and batch["property"].tolist() == [0.0]


def test_given_split_files_and_deduplication(write, caplog):
    train = write("train.csv", "sequence\nACDE\nKLMN\nACDE\nWYV\n")
    test = write("test.csv", "sequence\nPQRS\n")
    val = write("val.csv", "sequence\nGHIK\n")
    with caplog.at_level("INFO", logger="diled_protein.datamodule"):
        dm = CSVDataModule(str(train), val_path=str(val), test_path=str(test))
        dm.setup()
    assert "dropped 1 duplicate" in caplog.text
    assert sorted(dm.dataset("train").sequences) == ["ACDE", "KLMN", "WYV"]
    assert dm.dataset("val").sequences == ["GHIK"] and dm.dataset("test").sequences == ["PQRS"]


def test_fasta_file_given_to_the_csv_module_says_so(write):
    val = write("val.fasta", ">v1\nGHIK\n")
    dm = CSVDataModule(str(write("t.csv", "sequence\nACDE\n")), val_path=str(val))
    with pytest.raises(
        ProteinDataError, match="val.fasta.*looks like a FASTA file; use diled_protein.FastaDataModule"
    ):
        dm.setup()


def test_fasta_datamodule(write, random_sequences):
    path = write("s.fa", "".join(f">s{i} fitness={i}\n{s}\n" for i, s in enumerate(random_sequences(10))))
    dm = FastaDataModule(
        str(path), property_keys=["fitness"], val_fraction=0.2, test_fraction=0.2, batch_size=4
    )
    dm.setup()
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [6, 2, 2]
    batch = next(iter(dm.val_dataloader()))
    assert batch["property"].tolist() == [float(i[1:]) for i in batch["id"]]


def test_missing_data_path_is_a_clear_error(tmp_path):
    dm = CSVDataModule(str(tmp_path / "missing.csv"))
    with pytest.raises(ProteinDataError, match="missing.csv' does not exist"):
        dm.setup()


def test_too_little_data_and_bad_fractions(write):
    with pytest.raises(ProteinDataError, match="no training examples are left"):
        CSVDataModule(
            str(write("two.csv", "sequence\nACDE\nKLMN\n")), val_fraction=0.5, test_fraction=0.4
        ).setup()
    with pytest.raises(ValueError, match="val_fraction"):
        CSVDataModule("x.csv", val_fraction=1.5)
    with pytest.raises(ValueError, match="must be < 1"):
        CSVDataModule("x.csv", val_fraction=0.5, test_fraction=0.5)


def test_check_compatible(seq_csv):
    dm = CSVDataModule(str(seq_csv), max_length=20)
    assert CSVDataModule.model_sizes(path="x.csv", max_length=20) == {"max_length": 20}  # -> the decoder
    enc = ReLSOEncoder(8, embed_dim=16, num_layers=1, num_heads=2, ff_dim=16)
    dm.check_compatible(enc, ConvDecoder(8, 20, channels=8, num_layers=1))
    with pytest.raises(ValueError, match="max_length=30.*max_length to 20"):
        dm.check_compatible(enc, ConvDecoder(8, 30, channels=8, num_layers=1))
    flat = ReLSOEncoder(
        8, embed_dim=16, num_layers=1, num_heads=2, ff_dim=16, pooling="flatten", max_length=30
    )
    with pytest.raises(
        ValueError, match="encoder was built for max_length=30.*encoder.init_args.max_length to 20"
    ):
        dm.check_compatible(flat, ConvDecoder(8, 20, channels=8, num_layers=1))
    with pytest.raises(ValueError, match="does not take protein tokens"):
        dm.check_compatible(torch.nn.Linear(2, 2), ConvDecoder(8, 20))  # type: ignore[arg-type]


def test_amp_datamodule_reads_the_installed_modlamp_file(modlamp):
    dm = AMPDataModule(max_length=50)
    dm.setup()
    n = sum(len(dm.dataset(s)) for s in ("train", "val", "test"))
    assert 4000 < n < 4642  # 4,642 distinct peptides, minus those longer than 50
    assert dm.property_names == ["amp"]
    y = dm.dataset("train").properties[:, 0]
    assert set(y.tolist()) == {0.0, 1.0} and 0.3 < float(y.mean()) < 0.7
    assert max(len(s) for s in dm.dataset("train").sequences) <= 50


@pytest.mark.shared_data
def test_gifford_file_strips_j_padding(shared_protein):
    dm = CSVDataModule(
        str(shared_protein / "gifford_test.csv"),
        sequence_column="CDR3",
        property_columns=["enrichment"],
        strip="J",
        max_length=20,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    dm.setup()
    seqs = dm.dataset("train").sequences
    assert len(seqs) > 20000 and all("J" not in s and 0 < len(s) <= 20 for s in seqs)


@pytest.mark.shared_data
def test_gfp_file_without_header(shared_protein):
    dm = CSVDataModule(
        str(shared_protein / "gfp_test.csv"),
        sequence_column=0,
        property_columns=[1],
        header=False,
        max_length=240,
        val_fraction=0.1,
        test_fraction=0.1,
    )
    dm.setup()
    assert len(dm.dataset("train")) > 10000
    assert {len(s) for s in dm.dataset("test").sequences[:50]} <= set(range(230, 241))


def test_raw_records_need_no_data_file_and_bad_ones_name_their_index():
    dm = CSVDataModule("not-read.csv", property_columns=["a", "b"], max_length=10)  # never set up
    batch = dm.batch_from_records(["MKTAYIAK", "GLF"])
    assert batch["id"] == ["record0", "record1"] and batch["tokens"].shape == (2, 11)
    assert batch["property_mask"].tolist() == [0.0, 0.0] and batch["properties"].isnan().all()
    for records, message in (
        (["MKT", "MkT"], r"record 1: character 'k' at position 2 .*upper case"),
        (["MKT", "A" * 11], r"record 1: sequence of 11 residues is longer than max_length=10"),
        ([b"MKT"], r"record 0: the record is of type bytes"),
        (["M", "", "K"], r"record 1: empty sequence"),
        (["MK*"], r"record 0: character '\*' .*stop codons"),
        ([], r"no records were given"),
    ):
        with pytest.raises(ProteinDataError, match=message):
            dm.batch_from_records(records)


def test_records_come_back_from_decoded_tokens():
    dm = CSVDataModule("not-read.csv", max_length=12)
    torch.manual_seed(0)
    decoder = ConvDecoder(4, 12, channels=8, num_layers=1).eval()
    out = decoder.decode(torch.randn(3, 4))
    records = dm.records_from_batch(out)
    assert len(records) == 3 and all(len(r) <= 12 for r in records)
    kept = [r for r in records if r]
    assert dm.records_from_batch(dm.batch_from_records(kept)) == kept
