"""Protein tokenisation with fair-esm's ESM-1b/ESM-2 alphabet (no download).

A sequence of ``n`` residues becomes ``n`` residue tokens, one ``<eos>`` token, then ``<pad>`` up to a
fixed width ``max_length + 1``; ``max_length`` always counts residues. The ``<eos>`` token lets a
fixed-width decoder say where a sequence ends, so decoding and generation recover the length.
No ``<cls>`` is stored; the ESM-2 encoder prepends it itself.

Residue policy: the 20 canonical amino acids are accepted, and so are the five extra upper-case
letters of the ESM alphabet, ``X`` (unknown), ``B`` (D or N), ``Z`` (E or Q), ``U`` (selenocysteine)
and ``O`` (pyrrolysine), each kept as its own token (ESM-2 was trained with them). Everything else
(lower case, digits, ``*``, ``-``, ``J`` inside a sequence ...) is an error; see
:func:`first_invalid_residue`.
"""

from __future__ import annotations

from functools import cached_property

import esm
import torch
from torch import Tensor

__all__ = ["CANONICAL", "RESIDUES", "ProteinVocab", "first_invalid_residue"]

#: the 20 canonical amino acids
CANONICAL = "ACDEFGHIKLMNPQRSTVWY"
#: every residue letter a sequence may contain (canonical + X B Z U O)
RESIDUES = CANONICAL + "XBZUO"


class ProteinVocab:
    """fair-esm's ``ESM-1b`` alphabet (shared by ESM-2) plus the decoder's output classes.

    The decoder predicts ``num_classes = len(RESIDUES) + 1`` classes: the residues then ``<eos>``;
    :meth:`token_to_class` / :meth:`class_to_token` convert between alphabet ids and classes.
    """

    def __init__(self) -> None:
        self.alphabet = esm.Alphabet.from_architecture("ESM-1b")
        self.pad_idx: int = self.alphabet.padding_idx
        self.eos_idx: int = self.alphabet.eos_idx
        self.cls_idx: int = self.alphabet.cls_idx
        self.size: int = len(self.alphabet.all_toks)
        self._residue_ids = [self.alphabet.get_idx(a) for a in RESIDUES]

    @property
    def num_classes(self) -> int:
        return len(RESIDUES) + 1

    @cached_property
    def _class_of_token(self) -> Tensor:
        table = torch.full((self.size,), -100, dtype=torch.long)  # -100 = ignore_index of cross_entropy
        for c, tok in enumerate(self._residue_ids + [self.eos_idx]):
            table[tok] = c
        return table

    @cached_property
    def _token_of_class(self) -> Tensor:
        return torch.tensor(self._residue_ids + [self.eos_idx], dtype=torch.long)

    def token_to_class(self) -> Tensor:
        """Lookup table ``[alphabet size]`` alphabet id -> class (-100 for pad and special tokens)."""
        return self._class_of_token.clone()

    def class_to_token(self) -> Tensor:
        """Lookup table ``[num_classes]`` class -> alphabet id."""
        return self._token_of_class.clone()

    def encode(self, sequence: str, max_length: int) -> Tensor:
        """Residues (already validated, ``len <= max_length``) -> tokens ``[max_length + 1]``."""
        ids = [self.alphabet.get_idx(a) for a in sequence] + [self.eos_idx]
        out = torch.full((max_length + 1,), self.pad_idx, dtype=torch.long)
        out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, tokens: Tensor) -> list[str]:
        """Tokens ``[B, L]`` -> strings; stops at the first ``<eos>`` or ``<pad>``."""
        out = []
        for row in tokens.tolist():
            chars = []
            for tok in row:
                if tok in (self.eos_idx, self.pad_idx):
                    break
                chars.append(self.alphabet.get_tok(tok))
            out.append("".join(chars))
        return out

    def residue_mask(self, tokens: Tensor) -> Tensor:
        """``[B, L]`` bool: positions holding a residue (not eos / pad / special)."""
        return self._class_of_token.to(tokens.device)[tokens].ge(0) & tokens.ne(self.eos_idx)


def first_invalid_residue(sequence: str) -> int | None:
    """Index of the first character that is not one of :data:`RESIDUES`, or ``None``."""
    for i, ch in enumerate(sequence):
        if ch not in RESIDUES:
            return i
    return None
