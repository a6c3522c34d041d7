"""diled-core: generalized diffusion with a learnable encoder-decoder (DiLED / EDDPM, ICML 2024).

Three floors (docs/architecture.md):

* math, plain torch: :mod:`~diled_core.schedule`, :mod:`~diled_core.diffusion`,
  :mod:`~diled_core.objective`, :mod:`~diled_core.samplers`, :mod:`~diled_core.denoiser`;
* the plugin contract: :mod:`~diled_core.contract` (encoder, decoder, head), :mod:`~diled_core.data`
  (the datamodule base), :mod:`diled_core.testing` (contract suites a plugin's tests subclass);
* the engine, Lightning: :class:`DiLED` (training) with its inference API, ``predict/`` (tasks,
  streaming writers and metrics), the ``diled`` command and the plugin registry.

Modalities are plugins (entry-point group ``diled.modalities``); the core registers only a toy one.
"""

from ._version import __version__
from .contract import (
    AuxHead,
    Batch,
    Decoder,
    DecoderObjective,
    Encoder,
    Guidance,
    ParamGroup,
    PredictTask,
    trainable_groups,
)
from .data import OUTPUT_NAMES, DiledDataModule, worker_init
from .denoiser import RegressionHead, SkipMLP
from .dropout import RandDropout, use_rand_dropout
from .diffusion import diffusion_mse, q_sample, rec_weight, sample_timesteps
from .diffusion_decoder import DiffusionDecoder
from .errors import DataError, data_error, parse_number
from .interpolation import lerp, slerp
from .io import atomic_write
from .latent_norm import GroupWhiten, LatentNorm, latent_norm
from .module import DiLED, NonFiniteLossError
from .objective import Objective, Phase, combine_terms, objective
from .predict import (
    ArrayWriter,
    MeanOf,
    PredictionMetric,
    PredictionWriter,
    PredictOptions,
    RatioOf,
    RecordWriter,
    Reservoir,
    TableWriter,
    TextWriter,
    rank_file,
)
from .registry import Modality, load_modalities
from .samplers import ddim_invert, ddim_sample, ddim_timesteps, ddpm_sample
from .schedule import NoiseSchedule, make_betas

__all__ = [
    "OUTPUT_NAMES",
    "ArrayWriter",
    "AuxHead",
    "Batch",
    "Decoder",
    "DecoderObjective",
    "DataError",
    "DiLED",
    "DiffusionDecoder",
    "DiledDataModule",
    "Encoder",
    "GroupWhiten",
    "Guidance",
    "LatentNorm",
    "MeanOf",
    "Modality",
    "NoiseSchedule",
    "NonFiniteLossError",
    "Objective",
    "ParamGroup",
    "Phase",
    "PredictOptions",
    "PredictTask",
    "PredictionMetric",
    "PredictionWriter",
    "RandDropout",
    "RatioOf",
    "RecordWriter",
    "RegressionHead",
    "Reservoir",
    "SkipMLP",
    "TableWriter",
    "TextWriter",
    "__version__",
    "atomic_write",
    "combine_terms",
    "ddim_invert",
    "ddim_sample",
    "ddim_timesteps",
    "data_error",
    "ddpm_sample",
    "diffusion_mse",
    "latent_norm",
    "lerp",
    "load_modalities",
    "make_betas",
    "objective",
    "parse_number",
    "q_sample",
    "rank_file",
    "rec_weight",
    "sample_timesteps",
    "slerp",
    "trainable_groups",
    "use_rand_dropout",
    "worker_init",
]
