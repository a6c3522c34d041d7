"""Which pretrained weights train: the freezing policies of the text encoder and decoder.

Decoder policy ``paper`` (DiLED §5 "Text", after Optimus): the latent injection layers, the token
(and position) embeddings and the first transformer block train; the other blocks, the final norm
and an untied output layer stay frozen. ``none`` trains everything, ``all`` only the injection.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

__all__ = ["DecoderFreeze", "EncoderFreeze", "blocks", "freeze_decoder", "frozen_names"]

EncoderFreeze = Literal[
    "none",  # fine-tune the whole transformer
    "embeddings",  # freeze the token/position embeddings
    "all",  # freeze the transformer; only the projection to the latent trains
]
DecoderFreeze = Literal[
    "none",  # fine-tune the whole language model
    "paper",  # train embeddings + first block (+ the injection); freeze the rest
    "all",  # train only the latent injection
]


def blocks(model: nn.Module, num_layers: int) -> nn.ModuleList:
    """The model's list of ``num_layers`` transformer blocks (``transformer.h``, ``model.layers`` …)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return module
    raise ValueError(f"{type(model).__name__}: found no list of {num_layers} transformer blocks to freeze")


def freeze_decoder(lm: nn.Module, policy: DecoderFreeze, num_layers: int) -> None:
    """Apply ``policy`` to a causal LM (a ``PreTrainedModel``) in place."""
    if policy == "none":
        return
    lm.requires_grad_(False)
    if policy == "all":
        return
    lm.get_input_embeddings().requires_grad_(True)  # a tied output layer trains with it
    position = getattr(lm.base_model, "wpe", None)  # GPT-2's learned positions (rotary models have none)
    if position is not None:
        position.requires_grad_(True)
    blocks(lm, num_layers)[0].requires_grad_(True)


def frozen_names(module: nn.Module, prefix: str) -> list[str]:
    """``prefix`` + the names of ``module``'s frozen parameters (state-dict keys)."""
    return [prefix + name for name, p in module.named_parameters() if not p.requires_grad]
