"""The options of ``diled predict`` (``--prediction.*``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..contract import PredictTask
from ..samplers import Sampler

__all__ = ["PredictOptions"]


@dataclass
class PredictOptions:
    """Options of ``diled predict`` (``--prediction.*``).

    Args:
        task: reconstruct (default) | generate | encode | interpolate | optimise.
        output_dir: folder for the records and ``metrics.json``.
        split: data split to reconstruct / encode / interpolate / optimise.
        max_examples: use at most this many examples of the split.
        num_samples: how many examples ``generate`` draws (split across ranks).
        sampler: ddim | ddpm (ancestral, T − 1 steps).
        steps: DDIM steps (also used by inversion and slerp interpolation).
        eta: DDIM η in [0, 1] (0: deterministic).
        interpolation_points: points per interpolation path (endpoints included).
        interpolation_mode: slerp (between DDIM-inverted x_T) | lerp (between μ).
        invert: encode also writes the DDIM-inverted code x_T.
        optimise_steps, optimise_lr, optimise_max_distance: gradient ascent of the head in μ space.
        decode: decoding options passed to the plugin's decoder (e.g. ``{temperature: 0.7, top_p: 0.9}``
            for text, ``{steps: 20}`` for a pixel-diffusion decoder); the decoder names the ones it takes.
        seed: seed of the sampling noise (combined with rank and batch index).
        overwrite: replace this task's earlier predictions in ``output_dir`` (refused otherwise).
    """

    task: PredictTask = "reconstruct"
    output_dir: Path = Path("predictions")
    split: Literal["train", "val", "test"] = "test"
    max_examples: int | None = None
    num_samples: int = 64
    sampler: Sampler = "ddim"
    steps: int = 50
    eta: float = 0.0
    interpolation_points: int = 8
    interpolation_mode: Literal["slerp", "lerp"] = "slerp"
    invert: bool = False
    optimise_steps: int = 100
    optimise_lr: float = 0.05
    optimise_max_distance: float | None = 1.0
    decode: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    overwrite: bool = False
