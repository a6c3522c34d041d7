"""The toy modality: Gaussian-mixture vectors with MLP encoder/decoder.

Registered through the entry-point group ``diled.modalities`` like any plugin; it is the smallest
complete example of a modality (about 200 lines) and what the core's tests train.
"""

from ..registry import Modality
from .data import ToyDataModule, mixture_means, mmd_rbf
from .diffusion_decoder import ToyDiffusionDecoder
from .models import ToyDecoder, ToyEncoder

__all__ = [
    "MODALITY",
    "ToyDataModule",
    "ToyDecoder",
    "ToyDiffusionDecoder",
    "ToyEncoder",
    "mixture_means",
    "mmd_rbf",
]

MODALITY = Modality(
    name="toy",
    datamodules=(ToyDataModule,),
    encoders=(ToyEncoder,),
    decoders=(ToyDecoder, ToyDiffusionDecoder),
    description="vectors from a Gaussian mixture, MLP encoder, MLP or diffusion decoder (tests, examples)",
)
