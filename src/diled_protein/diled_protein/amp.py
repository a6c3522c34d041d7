"""The built-in demo data: modlAMP's antimicrobial peptides vs UniProt peptides (``AMPvsUniProt.csv``).

2,600 AMPs and 2,600 non-AMP UniProt peptides, 7-174 residues (median 32). The file ships in the
``modlamp==4.3.3`` package (BSD-3); it is read from the installed package without importing it. Its
first row is a count line, then ``sequence,label`` rows without a header; the property ``amp`` is
the label (1 = antimicrobial, 0 = not).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .datamodule import CSVDataModule
from .errors import ProteinDataError
from .records import TooLong

__all__ = ["AMPDataModule", "amp_csv_path"]


def amp_csv_path() -> Path:
    """Path of ``AMPvsUniProt.csv`` inside the installed ``modlamp`` package."""
    spec = importlib.util.find_spec("modlamp")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / "data" / "AMPvsUniProt.csv"
        if path.is_file():
            return path
    raise ProteinDataError(
        "the antimicrobial-peptide demo data comes from the modlamp package, which is not installed "
        "(or has no data/AMPvsUniProt.csv). Install it with `pip install --no-deps modlamp==4.3.3`, "
        "or use diled_protein.CSVDataModule with your own file."
    )


class AMPDataModule(CSVDataModule):
    """modlAMP's AMP-vs-UniProt peptides; property ``amp`` (1 = antimicrobial).

    Args: as :class:`~diled_protein.CSVDataModule` without the file options; peptides longer than
    ``max_length`` are skipped by default (about 5 % at 50).
    """

    def __init__(
        self,
        *,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        max_length: int = 50,
        too_long: TooLong = "skip",
        deduplicate: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            "",
            sequence_column=0,
            property_columns=[1],
            header=False,
            skip_rows=1,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            max_length=max_length,
            too_long=too_long,
            deduplicate=deduplicate,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        self.property_names = ["amp"]

    def train_source(self) -> Path:
        return amp_csv_path()
