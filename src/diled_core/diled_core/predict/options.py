"""The options of ``diled predict`` (``--prediction.*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..contract import PredictTask
from ..samplers import Sampler

__all__ = ["PredictOptions"]


@dataclass
class PredictOptions:
    """Options of ``diled predict`` (``--prediction.*``).

    Args:
        task: reconstruct (default) | generate | encode | interpolate | optimise | transfer.
        output_dir: folder for the records and ``metrics.json``.
        split: data split to reconstruct / encode / interpolate / optimise.
        max_examples: use at most this many examples of the split.
        num_samples: how many examples ``generate`` draws (split across ranks).
        sampler: ddim | ddpm (ancestral, T − 1 steps).
        steps: DDIM steps (also used by inversion and slerp interpolation).
        eta: DDIM η in [0, 1] (0: deterministic).
        interpolation_points: points per interpolation path (endpoints included); unset: the
            modality's default (its datamodule's ``prediction_defaults``), else 8.
        interpolation_mode: slerp (between DDIM-inverted x_T) | lerp (between μ); unset: the
            modality's default, else slerp.
        invert: encode also writes the DDIM-inverted code x_T.
        optimise_steps, optimise_lr, optimise_max_distance: gradient ascent of the head in μ space.
        transfer_method: attribute transfer (method.md §4): arithmetic (difference of class means) |
            linear (along a softmax regression's direction on μ) | guided (DDIM inversion, then DDIM
            down with a time-conditioned classifier's gradient on x_t).
        transfer_to: the class to move every example to; unset: the other class of a two-class task.
        transfer_scale: arithmetic/linear: multiple of the class-mean gap; guided: the guidance scale.
        transfer_fit_examples: labelled training examples encoded to fit the class means/classifiers.
        transfer_classifier_steps: training steps of the time-conditioned classifier (guided only).
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
    interpolation_points: int | None = None
    interpolation_mode: Literal["slerp", "lerp"] | None = None
    invert: bool = False
    optimise_steps: int = 100
    optimise_lr: float = 0.05
    optimise_max_distance: float | None = 1.0
    transfer_method: Literal["arithmetic", "linear", "guided"] = "arithmetic"
    transfer_to: int | None = None
    transfer_scale: float = 1.0
    transfer_fit_examples: int = 2000
    transfer_classifier_steps: int = 500
    decode: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    overwrite: bool = False

    def resolve(self, defaults: Mapping[str, Any] = {}) -> PredictOptions:  # noqa: B006 (read only)
        """A copy whose unset (``None``) options take ``defaults`` (a datamodule's
        ``prediction_defaults``), then :data:`UNSET_DEFAULTS`; options that were set are kept."""
        unknown = sorted(set(defaults) - set(UNSET_DEFAULTS))
        if unknown:
            raise ValueError(
                f"prediction_defaults may set {', '.join(UNSET_DEFAULTS)}, not {', '.join(unknown)}"
            )
        filled = {
            name: defaults.get(name, fallback)
            for name, fallback in UNSET_DEFAULTS.items()
            if getattr(self, name) is None
        }
        return replace(self, **filled)


#: the values of the options a modality may default (``None`` in :class:`PredictOptions`) when it does not
UNSET_DEFAULTS: dict[str, Any] = {"interpolation_points": 8, "interpolation_mode": "slerp"}
