"""diled-image: the image modality of diled (DiLED / EDDPM, ICML 2024, the DiffAE-style image setup).

Data modules for image folders (PNG/JPEG, class sub-folders), torchvision datasets on local disk,
Fashion-MNIST IDX files and synthetic shapes; a DiffAE-style semantic encoder; a conv decoder
(Gaussian likelihood) and a conditional UNet pixel-diffusion decoder with its own DDIM; PNG grid and
per-image writers; MSE / PSNR / SSIM and offline Inception FID metrics; a TensorBoard sample logger.
Registered with the core through the entry point ``diled.modalities: image = diled_image:MODALITY``.
"""

from diled_core import Modality

from .callbacks import ImageSampleLogger
from .conv_decoder import ConvDecoder
from .datamodule import ImageDataModule, ImageFolderDataModule, SyntheticImageDataModule
from .diffusion_decoder import UNetDiffusionDecoder
from .encoder import SemanticEncoder
from .fashion_mnist import FashionMNISTDataModule
from .fid import InceptionFeatures
from .records import ImageDataError
from .streaming import FIDMetric
from .torchvision_data import TorchvisionDataModule

__all__ = [
    "MODALITY",
    "ConvDecoder",
    "FIDMetric",
    "FashionMNISTDataModule",
    "ImageDataError",
    "ImageDataModule",
    "ImageFolderDataModule",
    "ImageSampleLogger",
    "InceptionFeatures",
    "SemanticEncoder",
    "SyntheticImageDataModule",
    "TorchvisionDataModule",
    "UNetDiffusionDecoder",
]

MODALITY = Modality(
    name="image",
    datamodules=(
        ImageFolderDataModule,
        TorchvisionDataModule,
        FashionMNISTDataModule,
        SyntheticImageDataModule,
    ),
    encoders=(SemanticEncoder,),
    decoders=(ConvDecoder, UNetDiffusionDecoder),
    description=(
        "images: semantic encoder, conv or UNet pixel-diffusion decoder; folders, torchvision, Fashion-MNIST"
    ),
)
