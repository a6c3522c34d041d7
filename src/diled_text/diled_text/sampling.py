"""Choosing the next token: greedy, or sampling with temperature and nucleus (top-p) truncation
(Holtzman et al. 2020). Randomness comes only from the given ``torch.Generator``."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["next_token"]


def next_token(
    logits: Tensor,
    *,
    greedy: bool,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``logits [B, V]`` -> token ids ``[B]``: the argmax, or a draw from the tempered distribution
    restricted to the smallest set of tokens whose probability reaches ``top_p``."""
    if greedy:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the top token is always kept
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    device = generator.device if generator is not None else probs.device
    draw = torch.multinomial(probs.to(device), 1, generator=generator).squeeze(-1)
    return draw.to(logits.device)
