"""diled-core: generalized diffusion with a learnable encoder-decoder (DiLED / EDDPM, ICML 2024).

The engine: noise schedules, the joint objective, DDPM/DDIM samplers, the latent denoiser, the
LightningModule, the plugin interface and the ``diled`` command. Modalities are plugins
(entry-point group ``diled.modalities``); the core registers only a toy modality.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diled-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .denoiser import RegressionHead, SkipMLP
from .diffusion import combine_terms, diffusion_mse, q_sample, rec_weight, sample_timesteps
from .interfaces import AuxHead, Batch, Decoder, DiledDataModule, Encoder, Guidance, PredictTask
from .io import atomic_write
from .module import DiLED, NonFiniteLossError
from .predict import PredictionWriter, PredictOptions
from .registry import Modality, load_modalities
from .samplers import ddim_invert, ddim_sample, ddim_timesteps, ddpm_sample
from .schedule import NoiseSchedule, make_betas

__all__ = [
    "AuxHead",
    "Batch",
    "Decoder",
    "DiLED",
    "DiledDataModule",
    "Encoder",
    "Guidance",
    "Modality",
    "NoiseSchedule",
    "NonFiniteLossError",
    "PredictOptions",
    "PredictTask",
    "PredictionWriter",
    "RegressionHead",
    "SkipMLP",
    "__version__",
    "atomic_write",
    "combine_terms",
    "ddim_invert",
    "ddim_sample",
    "ddim_timesteps",
    "ddpm_sample",
    "diffusion_mse",
    "load_modalities",
    "make_betas",
    "q_sample",
    "rec_weight",
    "sample_timesteps",
]
