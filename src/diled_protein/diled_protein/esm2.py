"""ESM-2 encoder built with fair-esm (Lin et al. 2023), pooled to the DiLED latent.

Either a user's local weights file (read safely, then built by fair-esm's
``esm.pretrained.load_model_and_alphabet_core``; nothing is downloaded) or a small randomly
initialised ``esm.model.esm2.ESM2`` for tests and CPU runs.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Literal

import esm
import torch
from diled_core import Batch, Encoder
from torch import Tensor, nn

from .pooling import make_pool
from .vocab import ProteinVocab

__all__ = ["ESM2Encoder"]


def _load_local(weights_path: str | Path, vocab: ProteinVocab) -> nn.Module:
    """ESM-2 from a local fair-esm checkpoint, read with ``weights_only=True`` (no code execution).

    fair-esm's own ``load_model_and_alphabet_local`` calls ``torch.load`` with the default
    ``weights_only=True`` of torch >= 2.6, which rejects the ``argparse.Namespace`` config stored in
    ESM-2 checkpoints; here that one type is allowed explicitly, then fair-esm builds the model.
    """
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"ESM2Encoder: weights file {str(path)!r} not found (relative to {Path.cwd()}). Pass the path "
            "of a downloaded ESM-2 checkpoint such as esm2_t6_8M_UR50D.pt, or weights_path: null for a small "
            "randomly initialised ESM-2."
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
        if not path.stem.startswith("esm2"):
            raise ValueError(
                "its file name does not start with 'esm2' (fair-esm picks the architecture by name)"
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Regression weights not found")  # contact head unused
            model, alphabet = esm.pretrained.load_model_and_alphabet_core(path.stem, data, None)
    except Exception as err:  # unpickling, missing keys, wrong architecture
        raise ValueError(
            f"ESM2Encoder: cannot load {path} as an ESM-2 checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}). Use an original fair-esm esm2_*.pt file."
        ) from None
    if alphabet.all_toks != vocab.alphabet.all_toks:
        raise ValueError(f"ESM2Encoder: {path} uses another alphabet than ESM-1b/ESM-2.")
    return model


class ESM2Encoder(Encoder):
    """Protein tokens -> ESM-2 representations -> pooled -> linear -> μ.

    Args:
        latent_dim: d.
        weights_path: a local ESM-2 ``.pt`` file; ``None`` builds a random ESM-2 of the sizes below.
        num_layers / embed_dim / attention_heads: sizes of the random ESM-2 (ignored with weights).
        pooling: ``mean`` or ``attention`` over residue positions.
        freeze: keep the ESM-2 weights fixed (only the pooling and projection train).

    Input: ``batch["tokens"] [B, L]`` (residues + ``<eos>`` + ``<pad>``); ``<cls>`` is prepended here.
    The unused language-model and contact heads are removed, so every parameter gets a gradient
    (needed for DDP without ``find_unused_parameters``).
    """

    alphabet_name = "ESM-1b"

    def __init__(
        self,
        latent_dim: int = 30,
        weights_path: str | None = None,
        num_layers: int = 2,
        embed_dim: int = 64,
        attention_heads: int = 4,
        pooling: Literal["mean", "attention"] = "mean",
        freeze: bool = False,
    ) -> None:
        super().__init__()
        vocab = ProteinVocab()
        self.latent_dim = latent_dim
        self.pad_idx, self.cls_idx, self.eos_idx = vocab.pad_idx, vocab.cls_idx, vocab.eos_idx
        if weights_path is not None:
            self.esm = _load_local(weights_path, vocab)
        else:
            if embed_dim % attention_heads:
                raise ValueError(
                    f"ESM2Encoder: embed_dim={embed_dim} is not divisible by "
                    f"attention_heads={attention_heads}."
                )
            self.esm = esm.model.esm2.ESM2(num_layers, embed_dim, attention_heads, vocab.alphabet)
        self.esm.lm_head = None
        self.esm.contact_head = None
        self.freeze = freeze
        self.esm.requires_grad_(not freeze)
        self.pool, width = make_pool(pooling, self.esm.embed_dim)
        self.to_latent = nn.Linear(width, latent_dim)

    def _represent(self, tokens: Tensor) -> Tensor:
        """ESM-2 final-layer representations ``[B, L, E]`` of ``tokens [B, L]`` (with ``<cls>``)."""
        m = self.esm
        pad = tokens.eq(self.pad_idx)
        x = m.embed_scale * m.embed_tokens(tokens)
        if m.token_dropout:  # the rescaling ESM-2 applies at inference (no <mask> tokens here)
            x = x * (1 - 0.15 * 0.8)
        x = (x * (~pad).unsqueeze(-1).to(x.dtype)).transpose(0, 1)
        for layer in m.layers:
            x, _ = layer(x, self_attn_padding_mask=pad if pad.any() else None)
        return m.emb_layer_norm_after(x).transpose(0, 1)

    def forward(self, batch: Batch) -> Tensor:
        """``batch["tokens"] [B, L]`` -> μ ``[B, latent_dim]``."""
        tokens: Tensor = batch["tokens"]
        cls = torch.full_like(tokens[:, :1], self.cls_idx)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            h = self._represent(torch.cat([cls, tokens], dim=1))[:, 1:]
        residues = tokens.ne(self.pad_idx) & tokens.ne(self.eos_idx)
        return self.to_latent(self.pool(h, residues))
