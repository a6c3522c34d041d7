"""diled-protein: the protein modality of diled (DiLED / EDDPM, ICML 2024, §5 "Proteins").

Data modules for CSV and FASTA files and the built-in modlAMP peptide set, a ReLSO-style transformer
encoder and an ESM-2 encoder (fair-esm, local weights or random init), a linear + 1-D conv decoder,
protein metrics, prediction writers and the latent PCA picture. Registered with the core through the
entry point ``diled.modalities: protein = diled_protein:MODALITY``.
"""

from diled_core import Modality

from .amp import AMPDataModule, amp_csv_path
from .datamodule import CSVDataModule, FastaDataModule, ProteinDataModule
from .decoder import ConvDecoder
from .editdistance import levenshtein
from .errors import ProteinDataError
from .esm2 import ESM2Encoder
from .plots import latent_figure
from .relso import ReLSOEncoder
from .vocab import ProteinVocab

__all__ = [
    "AMPDataModule",
    "CSVDataModule",
    "ConvDecoder",
    "ESM2Encoder",
    "FastaDataModule",
    "MODALITY",
    "ProteinDataError",
    "ProteinDataModule",
    "ProteinVocab",
    "ReLSOEncoder",
    "amp_csv_path",
    "latent_figure",
    "levenshtein",
]

MODALITY = Modality(
    name="protein",
    datamodules=(AMPDataModule, CSVDataModule, FastaDataModule),
    encoders=(ReLSOEncoder, ESM2Encoder),
    decoders=(ConvDecoder,),
    description="protein sequences: ReLSO / ESM-2 encoders, conv decoder, CSV/FASTA/modlAMP data",
)
