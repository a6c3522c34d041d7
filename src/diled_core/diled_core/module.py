"""The DiLED LightningModule: joint encoder-diffusion-decoder training.

References: Liu et al., ICML 2024 (DiLED / EDDPM), arXiv 2402.19009; method.md §2-4. The loss is
:func:`diled_core.objective.objective`; the samplers are in :mod:`diled_core.samplers`; the inference
API (encode, sample, invert ...) is :class:`diled_core.inference.Inference`. This file wires modules,
optimizer groups, EMA weights, logging and checkpoints.
"""

from __future__ import annotations

import math
import warnings
from itertools import chain
from typing import Any, Callable, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from ._version import __version__
from .checkpoints import CheckpointError, check_fits, read_checkpoint
from .contract import AuxHead, Batch, Decoder, Encoder, trainable_groups
from .denoiser import SkipMLP
from .diffusion import RecWeighting
from .inference import Inference
from .monitoring import LatentStats
from .objective import Objective, Phase, objective
from .predict import PredictOptions
from .runs import state_dict_mismatch
from .schedule import NoiseSchedule, ScheduleKind

__all__ = ["DiLED", "NonFiniteLossError", "Training", "ema_lerp_"]

Training = Literal[
    "joint",  # DiLED: encoder, decoder and denoiser trained together, all terms reach the encoder
    "two_stage",  # autoencoder first, then frozen encoder + latent diffusion (LDM / DiffAE recipe)
    "autoencoder",  # no diffusion term at all
]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf; the run stops and earlier checkpoints are kept."""


@torch.no_grad()
def ema_lerp_(ema: list[Tensor], new: list[Tensor], weight: float) -> None:
    """``ema ← ema + weight · (new − ema)`` for the floating-point tensors, in one ``_foreach_lerp_``
    (no host sync); other tensors (integer buffers such as step counters) are copied."""
    floats = [i for i, e in enumerate(ema) if e.is_floating_point() or e.is_complex()]
    if floats:
        torch._foreach_lerp_([ema[i] for i in floats], [new[i].detach() for i in floats], weight)
    for i in sorted(set(range(len(ema))) - set(floats)):
        ema[i].copy_(new[i])


class EMAUpdate:
    """W_ema <- decay · W_ema + (1 − decay) · W (torch's ``get_ema_multi_avg_fn``, as a picklable object
    so the model can be sent to ``ddp_spawn`` processes). :class:`DiLED` itself updates its EMAs with
    :func:`ema_lerp_` (no host sync, optionally every k steps); this serves ``update_parameters``."""

    def __init__(self, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"ema_decay must be in [0, 1] (got {decay})")
        self.decay = decay

    def __call__(self, ema_params: list[Tensor], params: list[Tensor], _: Any) -> None:
        ema_lerp_(ema_params, params, 1 - self.decay)


def _ema(module: nn.Module, decay: float) -> AveragedModel:
    ema = AveragedModel(module, multi_avg_fn=EMAUpdate(decay), use_buffers=True)
    ema.requires_grad_(False)
    return ema


def _tensors(module: nn.Module) -> list[Tensor]:
    return list(chain(module.parameters(), module.buffers()))


class DiLED(Inference, LightningModule):
    """Generalized diffusion with a learnable encoder-decoder.

    Args:
        encoder: data -> μ ``[B, d]`` (a plugin's :class:`~diled_core.Encoder`).
        decoder: the last reverse step p_φ(x0 | x1) (a plugin's :class:`~diled_core.Decoder`).
        denoiser: ``latent_dim -> nn.Module`` computing ε_θ(x_t, t/T); default ``SkipMLP(d, 512, 6)``. Not
            built with ``training="autoencoder"`` (nor its EMA): that mode has no diffusion term.
        head: optional ``latent_dim -> AuxHead`` trained jointly on μ (e.g. a property regressor).
        training: ``joint`` (DiLED), ``two_stage`` (autoencoder for ``stage_one_steps`` steps, then frozen
            encoder/decoder and latent diffusion) or ``autoencoder`` (no diffusion term).
        w: weight of the latent ε-MSE (paper: 8 text, 1 protein/image).
        rec_weighting: ``elbo_split`` (L_rec / ((T − 1) λ_t), default) or ``uniform`` (weight 1).
        head_weight: weight of the head's loss.
        schedule, timesteps, beta: the latent noise schedule (paper: constant 0.008, T = 1000).
        stage_one_steps: optimizer steps of the autoencoder stage when ``training="two_stage"``.
        ema_decay: EMA decay of the denoiser weights used for sampling (``None``: no EMA).
        ema_every: update the EMAs every this many optimizer steps, with decay ``ema_decay ** k`` so
            that the averaging horizon stays the same (1: every step).
        ema_warmup: after n optimizer steps of an EMA, decay at most (1 + n) / (10 + n), as diffusers'
            ``EMAModel``: a short run's EMA then does not average in its first, untrained weights.
        latent_draws: K draws of (t, ε) per example for the latent ε-MSE, averaged (the first shares the
            decoder's t): the same objective with a K× lower-variance estimate, for K denoiser passes.
        compile_denoiser: train with the denoiser compiled by ``torch.compile`` (``nn.Module.compile``:
            the weights, their names in the checkpoint and the EMA copy used for sampling are unchanged).
            The first steps of a fit pay the compilation (tens of seconds on a CPU); on the CPU it needs
            a C++ compiler. ``benchmarks/training_cost.py`` ablates it.
        decoder_ema: also keep an EMA of the decoder (same decay) and decode with it (a pixel-diffusion
            decoder is sampled with EMA weights in the paper's image setup).
        sample_steps, sample_eta: DDIM defaults for :meth:`sample`, :meth:`invert`, :meth:`interpolate`.
        optimizer, lr_scheduler: factories taking the parameters / the optimizer. Adam(W)'s
            ``fused: true`` (one kernel for all tensors) or ``foreach: true`` are plain ``init_args``.
        lr_scheduler_interval: step the scheduler after every ``epoch`` (Lightning's default) or every
            optimizer ``step`` (a warm-up such as ``LinearLR`` counted in steps).
        nan_check_every: read the training loss back to the host every this many steps to stop on
            NaN/inf (1: every step, one host sync per step). In between, the first non-finite loss and
            its step are remembered on the device; the check also runs before every checkpoint and at
            the end of each epoch, so a diverged run still stops with :class:`NonFiniteLossError` and
            never saves its non-finite weights.
    """

    #: a checkpoint whose weight norm exceeds this multiple of the last checkpoint's is refused
    DIVERGED_NORM_RATIO = 1e3

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
        decoder_ema: bool = False,
        sample_steps: int = 50,
        sample_eta: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        ema_every: int = 1,
        nan_check_every: int = 50,
        ema_warmup: bool = False,
        latent_draws: int = 1,
        compile_denoiser: bool = False,
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
        if min(ema_every, nan_check_every, latent_draws) < 1:
            raise ValueError(
                f"ema_every, nan_check_every and latent_draws must be >= 1 (got {ema_every}, "
                f"{nan_check_every} and {latent_draws})"
            )
        self.encoder, self.decoder = encoder, decoder
        d = encoder.latent_dim
        self.denoiser: nn.Module | None = None  # an autoencoder has no diffusion term: no denoiser at all
        if training != "autoencoder":
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
        if lr_scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"lr_scheduler_interval must be epoch or step (got {lr_scheduler_interval!r})")
        self.lr_scheduler_interval = lr_scheduler_interval
        self.ema: AveragedModel | None = None
        if ema_decay is not None and self.denoiser is not None:
            self.ema = _ema(self.denoiser, ema_decay)
        if decoder_ema and ema_decay is None:
            raise ValueError("decoder_ema needs an ema_decay (e.g. 0.999)")
        self.decoder_ema = _ema(self.decoder, ema_decay) if decoder_ema else None
        self.ema_decay, self.ema_every, self.nan_check_every = ema_decay, ema_every, nan_check_every
        self.ema_warmup, self.latent_draws = ema_warmup, latent_draws
        self.compile_denoiser = compile_denoiser
        self._ema_last: dict[str, int] = {}  # EMA name -> global step of its last update
        self._ema_updates: dict[str, int] = {}  # EMA name -> updates so far (read once per fit)
        self._loss_watch: Tensor | None = None  # [losses seen, index of the first non-finite one, its value]
        self._watch_base = 0
        self.latent_stats = LatentStats()
        self.predict_options = PredictOptions()  # set by `diled predict` (the CLI) or by hand

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "check_compatible"):
            datamodule.check_compatible(self.encoder, self.decoder)
        if stage == "fit" and self.compile_denoiser and self.denoiser is not None:
            self.denoiser.compile()  # in place: forward goes through the compiled graph, names unchanged

    @property
    def in_stage_two(self) -> bool:
        return self.training_mode == "two_stage" and self.global_step >= self.stage_one_steps

    def phase(self) -> Phase:
        """The terms trained at this step (method.md §3; two_stage and autoencoder are ablations)."""
        if self.training_mode == "joint":
            return Phase()
        return Phase(diffusion=True, decoder=False) if self.in_stage_two else Phase(diffusion=False)

    def _eps(self, x: Tensor, t: Tensor) -> Tensor:
        return self.denoiser(x, t.to(x.dtype) / self.schedule.timesteps)

    def sampling_denoiser(self) -> nn.Module:
        if self.denoiser is None:
            raise ValueError("this model was trained with training: autoencoder and has no latent denoiser")
        return self.ema.module if self.ema is not None else self.denoiser

    def sampling_decoder(self) -> Decoder:
        return self.decoder_ema.module if self.decoder_ema is not None else self.decoder  # type: ignore

    def objective(self, batch: Batch, generator: torch.Generator | None = None) -> Objective:
        """The loss of one batch (:func:`diled_core.objective.objective`) in this step's phase."""
        phase = self.phase()
        with torch.set_grad_enabled(torch.is_grad_enabled() and phase.decoder):  # frozen in stage two
            mu = self.encoder(batch)
        if self.training:
            self.latent_stats.update(mu)
        return objective(
            mu,
            batch,
            decoder=self.decoder,
            eps_model=self._eps if self.denoiser is not None else None,
            schedule=self.schedule,
            phase=phase,
            w=self.w,
            rec_weighting=self.rec_weighting,
            head=self.head,
            head_weight=self.head_weight,
            generator=generator,
            latent_draws=self.latent_draws,
        )

    def _step(self, batch: Batch, stage: Literal["train", "val", "test"], generator=None) -> Tensor:
        result = self.objective(batch, generator)
        bs = next(v for v in batch.values() if isinstance(v, Tensor)).shape[0]
        logs = {f"{stage}/{k}": v for k, v in result.logs.items() if k != "loss"}
        self.log_dict(logs, batch_size=bs, sync_dist=stage != "train")
        self.log(f"{stage}/loss", result.loss, batch_size=bs, prog_bar=True, sync_dist=stage != "train")
        return result.loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if self.in_stage_two:
            self.encoder.eval()
            self.encoder.requires_grad_(False)
            self.decoder.requires_grad_(False)
        loss = self._step(batch, "train")
        self._watch_loss(loss)
        return loss

    def _watch_loss(self, loss: Tensor) -> None:
        """Stop on a non-finite loss: now (``nan_check_every=1``), or remember it on the device."""
        if self.nan_check_every == 1:
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"the training loss became {loss.item()} at step {self.global_step}")
            return
        watch, loss = self._loss_watch, loss.detach().float()
        if watch is None or watch.device != loss.device:
            watch = self._loss_watch = torch.tensor([0.0, -1.0, 0.0], device=loss.device)
            self._watch_base = self.global_step
        fresh = ~torch.isfinite(loss) & (watch[1] < 0)
        watch[1:] = torch.where(fresh, torch.stack([watch[0], loss]), watch[1:])
        watch[0] += 1

    def _check_loss(self, kept: str = "") -> None:
        """Read the remembered loss state back (one host sync) and raise if a loss was non-finite."""
        if self._loss_watch is None:
            return
        seen, first, value = self._loss_watch.tolist()
        if first >= 0:
            accumulate = getattr(self._trainer, "accumulate_grad_batches", 1) if self._trainer else 1
            step = self._watch_base + int(first) // accumulate
            raise NonFiniteLossError(
                f"the training loss became {value} at step {step} (noticed at step {self.global_step}; "
                f"model.nan_check_every is {self.nan_check_every})" + kept
            )
        self._loss_watch.copy_(torch.tensor([0.0, -1.0, 0.0]))
        self._watch_base = self.global_step

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        if self.nan_check_every > 1 and self.global_step % self.nan_check_every == 0:
            self._check_loss()
        phase = self.phase()
        self._update_ema("ema", self.ema, self.denoiser, phase.diffusion)
        self._update_ema("decoder_ema", self.decoder_ema, self.decoder, phase.decoder)

    def _update_ema(self, name: str, ema: AveragedModel | None, source: nn.Module | None, on: bool) -> None:
        """Average ``source`` into ``ema`` every ``ema_every`` optimizer steps (once per step, however
        many batches are accumulated), with decay ``ema_decay ** steps`` (capped while warming up);
        the first update copies."""
        if ema is None or source is None or self.ema_decay is None:
            return
        step = self.global_step
        last = self._ema_last.setdefault(name, step - 1)
        if not on:  # a phase that does not train the part: nothing to average
            self._ema_last[name] = step
            return
        if step - last < self.ema_every:
            return
        if name not in self._ema_updates:  # one host sync per fit: how often was this EMA updated?
            self._ema_updates[name] = int(ema.n_averaged)
        updates = self._ema_updates[name]
        decay = self.ema_decay
        if self.ema_warmup:
            seen = updates * self.ema_every  # optimizer steps this EMA has averaged, about
            decay = min(decay, (1 + seen) / (10 + seen))
        weight = 1.0 - decay ** (step - last) if updates else 1.0
        ema_lerp_(_tensors(ema.module), _tensors(source), weight)
        ema.n_averaged += 1
        self._ema_updates[name], self._ema_last[name] = updates + 1, step

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        generator = torch.Generator(self.device).manual_seed(batch_idx)  # same t and ε every epoch
        self._step(batch, "val", generator)
        gain = self.latent_gain(batch, seed=batch_idx)
        bs = next(v for v in batch.values() if isinstance(v, Tensor)).shape[0]
        self.log_dict(
            {f"val/latent_gain/{k}": v.mean() for k, v in gain.items()}, batch_size=bs, sync_dist=True
        )

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test", torch.Generator(self.device).manual_seed(batch_idx))

    def on_train_epoch_end(self) -> None:
        self._check_loss()
        reduce = lambda x: self.trainer.strategy.reduce(x, reduce_op="sum")  # noqa: E731
        stats = self.latent_stats.compute(reduce)
        self.log_dict({f"latent/{k}": v for k, v in stats.items()}, rank_zero_only=True)

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: the encoder's and decoder's own (a pretrained part may have its own
        learning rate), then the denoiser and head with the optimizer's defaults."""
        groups = self.encoder.param_groups() + self.decoder.param_groups()
        for part in (self.denoiser, self.head):
            if part is not None:
                groups += trainable_groups(part)
        return groups

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.param_groups())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.lr_scheduler_interval},
        }

    def on_train_start(self) -> None:
        self._ema_last = {"ema": self.global_step, "decoder_ema": self.global_step}  # optimizer steps so far
        self._ema_updates.clear()
        self._loss_watch = None
        if getattr(self, "_optimizer_changed", False):  # resumed with new optimizer options: use them
            fresh = self.optimizer_factory(self.param_groups())
            for optimizer in self.trainer.optimizers:
                for group, new in zip(optimizer.param_groups, fresh.param_groups):
                    for key in ("lr", "weight_decay", "betas", "momentum", "eps", "foreach", "fused"):
                        if key in new:
                            group[key] = new[key]
                    if "initial_lr" in group:
                        group["initial_lr"] = new["lr"]
            self._optimizer_changed = False
        for optimizer in self.trainer.optimizers:  # resumed from weights saved narrower (SkipMLP align)
            for param, state in optimizer.state.items():
                for key, value in state.items():
                    narrower = torch.is_tensor(value) and value.dim() == param.dim() == 2
                    if narrower and value.shape[0] == param.shape[0] and value.shape[1] < param.shape[1]:
                        state[key] = nn.functional.pad(value, (0, param.shape[1] - value.shape[1]))

    def on_train_end(self) -> None:
        self._check_loss()

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: float | None = None, gradient_clip_algorithm: Any = None
    ) -> None:
        """Lightning's clipping, except that a fused optimizer may be clipped under bf16 autocast:
        Lightning refuses it under any mixed precision, but only a gradient scaler (fp16) needs the
        optimizer to unscale first, and bf16 has none."""
        plugin = self.trainer.precision_plugin
        fused = getattr(optimizer, "_step_supports_amp_scaling", False)
        if gradient_clip_val and fused and getattr(plugin, "scaler", None) is None:
            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or "norm")
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> DiLED:  # type: ignore[override]
        """Lightning's ``load_from_checkpoint``, refusing unreadable checkpoints or non-finite weights
        with one paragraph (:class:`~diled_core.checkpoints.CheckpointError`); the model comes back
        in eval mode, so the inference API is deterministic."""
        check_fits(cls, read_checkpoint(checkpoint_path), checkpoint_path, state_dict_mismatch)
        kwargs.setdefault("weights_only", True)
        try:
            model = super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        except RuntimeError as err:
            if "Error(s) in loading state_dict" not in str(err):
                raise
            raise CheckpointError(f"checkpoint {checkpoint_path}: {state_dict_mismatch(err)}") from None
        return model.eval()

    def _weight_norm(self) -> float:
        norms = torch.stack([p.detach().double().norm() for p in self.parameters()])
        return torch.linalg.vector_norm(norms).item()

    def on_fit_start(self) -> None:
        self._saved_norm = self._weight_norm()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to save weights that diverged: non-finite, or a global norm more than
        ``DIVERGED_NORM_RATIO`` times that of the last checkpoint (or of the start); the earlier
        checkpoints are then what the run keeps, and the error says which."""
        previous = getattr(getattr(self._trainer, "checkpoint_callback", None), "last_model_path", "") or ""
        kept = f"the last good checkpoint is {previous}" if previous else "no earlier checkpoint was written"
        self._check_loss(f"; the weights after it were not saved and {kept}")
        norm, last = self._weight_norm(), getattr(self, "_saved_norm", None)
        grown = last is not None and norm > self.DIVERGED_NORM_RATIO * max(last, 1e-12)
        if not math.isfinite(norm) or grown:
            finite = math.isfinite(norm)
            ratio = f", {norm / last:.3g} times that of the last checkpoint" if last and finite else ""
            raise NonFiniteLossError(
                f"the weights diverged by step {self.global_step} (global norm {norm:.3g}{ratio}) and were "
                f"not saved; {kept}"
            )
        self._saved_norm = norm
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(self._external_prefixes())]:
            del state[key]  # frozen pretrained weights: rebuilt from their source when loading
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        checkpoint["diled"] = {
            "version": __version__,
            "modality": getattr(dm, "modality", "") or "",
            "encoder": f"{type(self.encoder).__module__}.{type(self.encoder).__qualname__}",
            "decoder": f"{type(self.decoder).__module__}.{type(self.decoder).__qualname__}",
        }

    def _external_prefixes(self) -> tuple[str, ...]:
        prefixes = [f"encoder.{p}" for p in self.encoder.external_state()]
        prefixes += [f"decoder.{p}" for p in self.decoder.external_state()]
        if self.decoder_ema is not None:
            prefixes += [f"decoder_ema.module.{p}" for p in self.decoder.external_state()]
        return tuple(prefixes)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refill the weights left out of the checkpoint from the freshly built parts, and note a
        changed optimizer configuration so that resuming applies it (:meth:`on_train_start`)."""
        saved = checkpoint.get("hyper_parameters", {})
        changed = saved.get("optimizer") != self.hparams.get("optimizer")
        self._optimizer_changed = "optimizer" in saved and changed
        if self.denoiser is None:  # an autoencoder saved before it left out its (untrained) denoiser
            for key in [k for k in checkpoint["state_dict"] if k.startswith(("denoiser.", "ema."))]:
                del checkpoint["state_dict"][key]
        prefixes = self._external_prefixes()
        if prefixes:
            state = checkpoint["state_dict"]
            for key, value in self.state_dict().items():
                if key.startswith(prefixes) and key not in state:
                    state[key] = value
