"""The DiLED LightningModule: joint encoder-diffusion-decoder training and the inference API.

References: Liu et al., ICML 2024 (DiLED / EDDPM), arXiv 2402.19009; method.md §2-4. The math lives in
:mod:`diled_core.diffusion` and :mod:`diled_core.samplers`; this file wires modules, steps and logging.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import __version__
from .denoiser import SkipMLP
from .diffusion import (
    RecWeighting,
    Training,
    combine_terms,
    diffusion_mse,
    q_sample,
    rec_weight,
    sample_timesteps,
)
from .interfaces import AuxHead, Batch, Decoder, Encoder, Guidance
from .monitoring import LatentStats
from .predict import PredictOptions, run_predict_task
from .samplers import Sampler, ddim_invert, ddim_sample, ddpm_sample
from .schedule import NoiseSchedule, ScheduleKind

__all__ = ["DiLED", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf; the run stops and earlier checkpoints are kept."""


def _slerp(a: Tensor, b: Tensor, alpha: Tensor) -> Tensor:
    """Spherical interpolation between rows of a and b ([P, d]) at ``alpha`` ([n]) -> [P, n, d]."""
    cos = (nn.functional.normalize(a, dim=-1) * nn.functional.normalize(b, dim=-1)).sum(-1).clamp(-1, 1)
    theta = torch.acos(cos)[:, None, None]  # [P, 1, 1]
    al = alpha[None, :, None]
    small = theta.abs() < 1e-4  # nearly parallel: lerp is exact enough and avoids 0/0
    sin = torch.sin(theta).clamp(min=1e-8)
    wa = torch.where(small, 1 - al, torch.sin((1 - al) * theta) / sin)
    wb = torch.where(small, al, torch.sin(al * theta) / sin)
    return wa * a[:, None] + wb * b[:, None]


class DiLED(LightningModule):
    """Generalized diffusion with a learnable encoder-decoder.

    Args:
        encoder: data -> μ ``[B, d]`` (a plugin's :class:`~diled_core.Encoder`).
        decoder: the last reverse step p_φ(x0 | x1) (a plugin's :class:`~diled_core.Decoder`).
        denoiser: ``latent_dim -> nn.Module`` computing ε_θ(x_t, t/T); default ``SkipMLP(d, 512, 6)``.
        head: optional ``latent_dim -> AuxHead`` trained jointly on μ (e.g. a property regressor).
        training: ``joint`` (DiLED), ``two_stage`` (autoencoder for ``stage_one_steps`` steps, then frozen
            encoder/decoder and latent diffusion) or ``autoencoder`` (no diffusion term).
        w: weight of the latent ε-MSE (paper: 8 text, 1 protein/image).
        rec_weighting: ``elbo_split`` (L_rec / ((T − 1) λ_t), default) or ``uniform`` (weight 1).
        head_weight: weight of the head's loss.
        schedule, timesteps, beta: the latent noise schedule (paper: constant 0.008, T = 1000).
        stage_one_steps: optimizer steps of the autoencoder stage when ``training="two_stage"``.
        ema_decay: EMA decay of the denoiser weights used for sampling (``None``: no EMA).
        sample_steps, sample_eta: DDIM defaults for :meth:`sample`, :meth:`invert`, :meth:`interpolate`.
        optimizer, lr_scheduler: factories taking the parameters / the optimizer.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        denoiser: Callable[[int], nn.Module] | None = None,
        head: Callable[[int], AuxHead] | None = None,
        training: Training = "joint",
        w: float = 1.0,
        rec_weighting: RecWeighting = "elbo_split",
        head_weight: float = 1.0,
        schedule: ScheduleKind = "constant",
        timesteps: int = 1000,
        beta: float = 0.008,
        stage_one_steps: int = 1000,
        ema_decay: float | None = 0.999,
        sample_steps: int = 50,
        sample_eta: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        with warnings.catch_warnings():  # module objects are dropped from hparams just below
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            self.save_hyperparameters()
        # Built in Python (not from a config), these are objects: keep them out of the checkpoint, which
        # stays loadable with weights_only=True; pass them again to load_from_checkpoint.
        for key in ("encoder", "decoder", "denoiser", "head", "optimizer", "lr_scheduler"):
            if key in self.hparams and not isinstance(self.hparams[key], (dict, str, type(None))):
                del self.hparams[key]
        if training not in ("joint", "two_stage", "autoencoder"):
            raise ValueError(f"training must be joint, two_stage or autoencoder (got {training!r})")
        self.encoder, self.decoder = encoder, decoder
        d = encoder.latent_dim
        self.denoiser = denoiser(d) if denoiser is not None else SkipMLP(d, width=512, depth=6)
        self.head = head(d) if head is not None else None
        self.schedule = NoiseSchedule(schedule, timesteps, beta)
        self.training_mode, self.w, self.rec_weighting, self.head_weight = (
            training,
            w,
            rec_weighting,
            head_weight,
        )
        self.stage_one_steps = stage_one_steps
        self.sample_steps, self.sample_eta = sample_steps, sample_eta
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.ema: AveragedModel | None = None
        if ema_decay is not None and training != "autoencoder":
            self.ema = AveragedModel(
                self.denoiser, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
            )
            self.ema.requires_grad_(False)
        if training == "autoencoder":
            self.denoiser.requires_grad_(False)  # no diffusion term: the denoiser is never trained
        self.latent_stats = LatentStats()
        self.predict_options = PredictOptions()  # set by `diled predict` (the CLI) or by hand

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "check_compatible"):
            datamodule.check_compatible(self.encoder, self.decoder)

    @property
    def in_stage_two(self) -> bool:
        return self.training_mode == "two_stage" and self.global_step >= self.stage_one_steps

    def _eps(self, x: Tensor, t: Tensor) -> Tensor:
        return self.denoiser(x, t.to(x.dtype) / self.schedule.timesteps)

    def _eps_sampling(self, x: Tensor, t: Tensor) -> Tensor:
        net = self.ema.module if self.ema is not None else self.denoiser
        return net(x, t.to(x.dtype) / self.schedule.timesteps)

    def loss_terms(
        self, batch: Batch, generator: torch.Generator | None = None
    ) -> tuple[dict[str, Tensor], dict]:
        """Per-example ``[B]`` loss terms and their weights (method.md §3); reduced by the caller."""
        stage_two = self.in_stage_two
        diffusion_on = self.training_mode == "joint" or stage_two
        rec_on = not stage_two
        with torch.set_grad_enabled(torch.is_grad_enabled() and not stage_two):
            mu = self.encoder(batch)
        if self.training:
            self.latent_stats.update(mu)
        t = sample_timesteps(self.schedule, mu.shape[0], mu.device, generator)
        terms: dict[str, Tensor] = {}
        weights: dict[str, Tensor | float] = {}
        if diffusion_on:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            terms["diffusion"] = diffusion_mse(self._eps, self.schedule, mu, t, noise)
            weights["diffusion"] = self.w
        if rec_on:
            noise1 = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            x1 = q_sample(self.schedule, mu, torch.ones_like(t), noise1)
            if self.decoder.objective == "diffusion":  # pixel-diffusion decoder sharing t (method.md §3)
                terms["rec"] = self.decoder.nll(x1, batch, t)
                weights["rec"] = 2.0 - self.w if diffusion_on else 1.0
            else:
                terms["rec"] = self.decoder.nll(x1, batch)
                weights["rec"] = rec_weight(self.schedule, t, self.rec_weighting) if diffusion_on else 1.0
        if self.head is not None:
            terms["head"] = self.head.loss(mu, batch)
            weights["head"] = self.head_weight
        return terms, weights

    def _step(self, batch: Batch, stage: Literal["train", "val", "test"], generator=None) -> Tensor:
        terms, weights = self.loss_terms(batch, generator)
        loss = combine_terms(terms, weights)
        bs = next(v for v in batch.values() if isinstance(v, Tensor)).shape[0]
        logs = {f"{stage}/{k}": v.float().mean() for k, v in terms.items()}
        self.log_dict(logs, batch_size=bs, sync_dist=stage != "train")
        self.log(f"{stage}/loss", loss, batch_size=bs, prog_bar=True, sync_dist=stage != "train")
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if self.in_stage_two:
            self.encoder.eval()
            self.encoder.requires_grad_(False)
            self.decoder.requires_grad_(False)
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"the training loss became {loss.item()} at step {self.global_step}")
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        if self.ema is not None and (self.training_mode == "joint" or self.in_stage_two):
            self.ema.update_parameters(self.denoiser)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        generator = torch.Generator(self.device).manual_seed(batch_idx)  # same t and ε every epoch
        self._step(batch, "val", generator)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test", torch.Generator(self.device).manual_seed(batch_idx))

    def on_train_epoch_end(self) -> None:
        reduce = lambda x: self.trainer.strategy.reduce(x, reduce_op="sum")  # noqa: E731
        stats = self.latent_stats.compute(reduce)
        self.log_dict({f"latent/{k}": v for k, v in stats.items()}, rank_zero_only=True)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.lr_scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.lr_scheduler_factory(optimizer)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = [n for n, p in self.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NonFiniteLossError(f"refusing to save a checkpoint with non-finite weights ({bad[0]} ...)")
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        checkpoint["diled"] = {
            "version": __version__,
            "modality": getattr(dm, "modality", "") or "",
            "encoder": f"{type(self.encoder).__module__}.{type(self.encoder).__qualname__}",
            "decoder": f"{type(self.decoder).__module__}.{type(self.decoder).__qualname__}",
        }

    # ------------------------------------------------------------------ inference API
    def _batch(self, batch: Batch) -> Batch:
        return move_data_to_device(batch, self.device)

    @torch.no_grad()
    def encode(self, batch: Batch) -> Tensor:
        """μ = E(x0), ``[B, d]``: the representation."""
        return self.encoder(self._batch(batch))

    @torch.no_grad()
    def decode(self, z: Tensor, generator: torch.Generator | None = None) -> Batch:
        """Latents ``[B, d]`` (μ or x_1) -> data tensors, via the plugin's decoder."""
        return self.decoder.decode(z.to(self.device), generator=generator)

    def reconstruct(self, batch: Batch) -> Batch:
        """Decode the encoder mean: a deterministic reconstruction."""
        return self.decode(self.encode(batch))

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
            return mu_a[:, None] + alpha[None, :, None] * (mu_b - mu_a)[:, None]
        if mode != "slerp":
            raise ValueError(f"unknown interpolation mode {mode!r}; choose slerp or lerp")
        path = _slerp(self.invert(mu_a, steps), self.invert(mu_b, steps), alpha)
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

    # ------------------------------------------------------------------ predict (diled predict)
    def on_predict_epoch_start(self) -> None:
        self._pair_offset = 0

    def predict_step(self, batch: Batch, batch_idx: int) -> Batch:
        opts = self.predict_options
        seed = opts.seed * 1_000_003 + self.global_rank * 10_007 + batch_idx
        out = run_predict_task(self, batch, opts, torch.Generator(self.device).manual_seed(seed))
        if "pair" in out:  # number interpolation pairs across batches
            out["pair"] = out["pair"] + self._pair_offset
            self._pair_offset += int(out["pair"].numel() // max(opts.interpolation_points, 1))
        return out
