"""The inference API of a trained model (method.md §4): encode, decode, sample, invert, interpolate,
optimise, attribute transfer, and the predict step of ``diled predict``.

:class:`Inference` is mixed into :class:`~diled_core.DiLED`; it uses the EMA weights (denoiser, and
decoder when ``decoder_ema`` is on) wherever the model samples or decodes.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor, nn

from .attributes import Attributes, classifier_guidance, fit_attributes
from .contract import AuxHead, Batch, Decoder, Encoder, Guidance
from .interpolation import lerp, slerp
from .predict import PredictOptions, run_predict_task
from .samplers import Sampler, at_least_fp32, ddim_invert, ddim_sample, ddpm_sample
from .schedule import NoiseSchedule

__all__ = ["Inference"]


class Inference:
    """Encode / decode / sample / invert / interpolate / optimise on a :class:`~diled_core.DiLED`."""

    encoder: Encoder
    decoder: Decoder
    head: AuxHead | None
    schedule: NoiseSchedule
    sample_steps: int
    sample_eta: float
    device: torch.device
    predict_options: PredictOptions

    def sampling_denoiser(self) -> nn.Module:  # pragma: no cover - provided by DiLED
        raise NotImplementedError

    def sampling_decoder(self) -> Decoder:  # pragma: no cover - provided by DiLED
        raise NotImplementedError

    def _eps_sampling(self, x: Tensor, t: Tensor) -> Tensor:
        if getattr(self, "training_mode", "joint") == "autoencoder":
            raise ValueError(
                "this model was trained with training: autoencoder, so its latent denoiser is untrained: it "
                "cannot generate, DDIM-invert or slerp-interpolate. Use encode, reconstruct, optimise or "
                "--prediction.interpolation_mode lerp, or train with training: joint or two_stage."
            )
        return self.sampling_denoiser()(x, t.to(x.dtype) / self.schedule.timesteps)

    def _batch(self, batch: Batch) -> Batch:
        return move_data_to_device(batch, self.device)

    @torch.no_grad()
    def encode(self, batch: Batch) -> Tensor:
        """μ = E(x0), ``[B, d]``: the representation, in float32 also under bf16 autocast (the latent
        arithmetic after it, interpolation and DDIM inversion, needs the precision)."""
        return at_least_fp32(self.encoder(self._batch(batch)))

    @torch.no_grad()
    def decode(
        self,
        z: Tensor,
        *,
        batch: Batch | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Batch:
        """Latents ``[B, d]`` (μ or x_1) -> data, via the plugin's decoder (its EMA weights if kept).
        ``batch``: the original data of a reconstruction; ``options``: the decoder's decoding options."""
        batch = None if batch is None else self._batch(batch)
        return self.sampling_decoder().decode(z.to(self.device), batch=batch, generator=generator, **options)

    @torch.no_grad()
    def decoder_losses(
        self, mu: Tensor, batch: Batch, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The decoder's per-example loss terms of decoding ``batch`` from ``mu`` (at t = 1)."""
        t = torch.ones(mu.shape[0], dtype=torch.long, device=mu.device)
        return self.sampling_decoder().loss(mu, self._batch(batch), t=t, generator=generator)

    @torch.no_grad()
    def latent_gain(self, batch: Batch, seed: int = 0) -> dict[str, Tensor]:
        """How much the decoder uses the latent: each decoder term ``[B]`` of decoding the batch from
        the next example's μ (μ rolled by one) minus that of decoding it from its own. About 0 when the
        decoder ignores z (a collapsed latent); for a token NLL, the nats per token z is worth. Both
        passes share the decoder's randomness (``seed``); ``{}`` for a batch of one."""
        mu = self.encode(batch)
        if mu.shape[0] < 2:
            return {}
        losses = [
            self.decoder_losses(z, batch, generator=torch.Generator(self.device).manual_seed(seed))
            for z in (mu, mu.roll(1, 0))
        ]
        return {name: losses[1][name].float() - own.float() for name, own in losses[0].items()}

    def reconstruct(self, batch: Batch, **options: Any) -> Batch:
        """Decode the encoder mean: a deterministic reconstruction."""
        return self.decode(self.encode(batch), batch=batch, **options)

    @torch.no_grad()
    def sample_latents(
        self,
        n: int,
        steps: int | None = None,
        eta: float | None = None,
        sampler: Sampler = "ddim",
        generator: torch.Generator | None = None,
        guidance: Guidance | None = None,
        guidance_scale: float = 1.0,
    ) -> Tensor:
        """x_T ~ N(0, I) -> x_1 ``[n, d]`` with DDIM (``steps``, ``eta``) or DDPM ancestral (T − 1 steps)."""
        x = torch.randn((n, self.encoder.latent_dim), generator=generator, device=self.device)
        kw = dict(generator=generator, guidance=guidance, guidance_scale=guidance_scale)
        if sampler == "ddpm":
            return ddpm_sample(self._eps_sampling, self.schedule, x, **kw)
        if sampler == "ddim":
            steps = self.sample_steps if steps is None else steps
            eta = self.sample_eta if eta is None else eta
            return ddim_sample(self._eps_sampling, self.schedule, x, steps=steps, eta=eta, **kw)
        raise ValueError(f"unknown sampler {sampler!r}; choose ddim or ddpm")

    def sample(self, n: int, steps: int | None = None, eta: float | None = None, **kw: Any) -> Batch:
        """Generate ``n`` new examples: sample the latent chain, decode x_1 (method.md §4)."""
        return self.decode(self.sample_latents(n, steps, eta, **kw), generator=kw.get("generator"))

    @torch.no_grad()
    def invert(self, mu: Tensor, steps: int | None = None) -> Tensor:
        """Deterministic DDIM inversion μ -> x_T (starting from the noise-free x_1 = √ᾱ_1 μ)."""
        x1 = self.schedule.sqrt_alphas_cumprod[1] * mu.to(self.device)
        return ddim_invert(self._eps_sampling, self.schedule, x1, steps=steps or self.sample_steps)

    @torch.no_grad()
    def uninvert(self, x_T: Tensor, steps: int | None = None) -> Tensor:
        """The inverse of :meth:`invert`: DDIM (η = 0) x_T -> x_1, returned as μ̂ = x_1 / √ᾱ_1."""
        x1 = ddim_sample(
            self._eps_sampling, self.schedule, x_T.to(self.device), steps=steps or self.sample_steps
        )
        return x1 / self.schedule.sqrt_alphas_cumprod[1]

    @torch.no_grad()
    def interpolate_latents(
        self, mu_a: Tensor, mu_b: Tensor, n: int = 8, mode: Literal["slerp", "lerp"] = "slerp", steps=None
    ) -> Tensor:
        """Latent paths ``[P, n, d]`` from μ_a to μ_b: slerp between inverted x_T then DDIM down
        (``slerp``), or linear between the μ (``lerp``), as in method.md §4."""
        alpha = torch.linspace(0, 1, n, device=self.device)
        mu_a, mu_b = mu_a.to(self.device), mu_b.to(self.device)
        if mode == "lerp":
            return lerp(mu_a, mu_b, alpha)
        if mode != "slerp":
            raise ValueError(f"unknown interpolation mode {mode!r}; choose slerp or lerp")
        path = slerp(self.invert(mu_a, steps), self.invert(mu_b, steps), alpha)
        return self.uninvert(path.flatten(0, 1), steps).view_as(path)

    def interpolate(self, a: Batch, b: Batch, n: int = 8, mode: Literal["slerp", "lerp"] = "slerp") -> Batch:
        """Decoded paths between the examples of ``a`` and ``b`` (paired row by row), ``P·n`` rows."""
        path = self.interpolate_latents(self.encode(a), self.encode(b), n, mode)
        return self.decode(path.flatten(0, 1))

    def optimise(
        self, mu: Tensor, steps: int = 100, lr: float = 0.05, max_distance: float | None = None
    ) -> Tensor:
        """Gradient ascent of the head's prediction in μ space (method.md §4, "Proteins").

        ``max_distance`` keeps each latent within a ball around its start, in units of the latent's
        spread ‖std(μ)‖ over the given batch (√d for a single example), so 1.0 is one typical distance."""
        if self.head is None:
            raise ValueError("optimise needs a model trained with a head (model.head in the config)")
        spread = mu.float().std(0).norm().item() if mu.shape[0] > 1 else math.sqrt(mu.shape[-1])
        radius = None if max_distance is None else max_distance * spread
        with torch.inference_mode(False), torch.enable_grad():  # also inside Trainer.predict
            start = mu.detach().to(self.device).clone()
            z = start.clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                (-self.head(z).sum()).backward()
                opt.step()
                if radius is not None:
                    with torch.no_grad():
                        delta = z - start
                        z.copy_(start + delta * (radius / delta.norm(dim=-1, keepdim=True).clamp(min=radius)))
        return z.detach()

    @torch.no_grad()
    def fit_attributes(
        self,
        datamodule: Any,
        *,
        split: str = "train",
        max_examples: int = 2000,
        classifier_steps: int = 0,
        seed: int = 0,
    ) -> Attributes:
        """Encode up to ``max_examples`` random examples of ``split`` and fit, from their class labels
        (``datamodule.attribute_labels``), what :meth:`transfer` needs: class means, a softmax
        regression on μ and, with ``classifier_steps`` > 0, a time-conditioned classifier on x_t."""
        mus, labels = [], []
        for batch in datamodule.attribute_loader(split, max_examples, seed):
            y = datamodule.attribute_labels(batch)
            if y is None:
                raise ValueError(
                    f"attribute transfer needs class labels, and {type(datamodule).__name__} batches have none "
                    f"(give the data a label column)"
                )
            mus.append(self.encode(batch))
            labels.append(y.to(self.device))
        generator = torch.Generator(self.device).manual_seed(seed)
        return fit_attributes(
            torch.cat(mus),
            torch.cat(labels),
            self.schedule,
            classifier_steps=classifier_steps,
            generator=generator,
        )

    @torch.no_grad()
    def transfer(
        self,
        mu: Tensor,
        labels: Tensor,
        attributes: Attributes,
        *,
        to: int | None = None,
        method: Literal["arithmetic", "linear", "guided"] = "arithmetic",
        scale: float = 1.0,
        steps: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Move latents ``mu`` of classes ``labels`` (−1: unknown) to class ``to`` (default: the other
        class of two) by ``method`` (see :mod:`diled_core.attributes`); returns the target class of each
        row ``[B]`` and the moved latents ``[B, d]``, ready for :meth:`decode`."""
        mu, labels = mu.to(self.device), labels.to(self.device)
        target = attributes.targets(labels, to).to(self.device)
        if method != "guided":
            return attributes.classes[target], attributes.shift(mu, labels, target, method, scale)
        if attributes.classifier is None:
            raise ValueError("guided transfer needs attributes fitted with classifier_steps > 0")
        guidance = classifier_guidance(attributes.classifier, target, self.schedule.timesteps)
        steps = steps or self.sample_steps
        x1 = ddim_sample(
            self._eps_sampling,
            self.schedule,
            self.invert(mu, steps),
            steps=steps,
            guidance=guidance,
            guidance_scale=scale,
        )
        return attributes.classes[target], x1 / self.schedule.sqrt_alphas_cumprod[1]

    # ------------------------------------------------------------------ diled predict
    def on_predict_epoch_start(self) -> None:
        self._pair_offset = 0
        self.predict_attributes = None
        datamodule = getattr(self.trainer, "datamodule", None)
        defaults = getattr(datamodule, "prediction_defaults", {})
        opts = self.predict_options = self.predict_options.resolve(defaults)  # set by hand: unset → defaults
        if opts.task == "transfer":
            if datamodule is None:
                raise ValueError("the transfer task needs the datamodule (its labelled training split)")
            self.predict_attributes = (
                self.fit_attributes(
                    datamodule,
                    max_examples=opts.transfer_fit_examples,
                    classifier_steps=opts.transfer_classifier_steps
                    if opts.transfer_method == "guided"
                    else 0,
                    seed=opts.seed,
                ),
                datamodule.attribute_labels,
            )

    def predict_step(self, batch: Batch, batch_idx: int) -> Batch:
        opts = self.predict_options
        seed = opts.seed * 1_000_003 + self.global_rank * 10_007 + batch_idx
        out = run_predict_task(self, batch, opts, torch.Generator(self.device).manual_seed(seed))
        if "pair" in out:  # number interpolation pairs across batches
            out["pair"] = out["pair"] + self._pair_offset
            self._pair_offset += int(out["pair"].numel() // max(opts.interpolation_points, 1))
        return out
