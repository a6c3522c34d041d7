"""The text decoder p_φ(x0 | z): a causal language model (``AutoModelForCausalLM``) conditioned on z.

DiLED §5 "Text" conditions GPT-2 as Optimus does (Li et al. 2020, §3.3): the latent is (a) projected
and added to every token embedding and (b) projected into a one-slot key/value "memory" in every
layer's attention (here a ``DynamicCache`` holding one position, so every token attends to it; the
tokens sit at positions 1 …, after the memory slot). ``injection="prefix"`` is the generic way for
other architectures (LLaMA-family such as SmolLM2): ``prefix_slots`` soft tokens made from z are
prepended to the token embeddings. The layers that add to or stand for token embeddings start at
the embeddings' scale (:func:`match_scale`).

The loss is teacher-forced token cross-entropy: the first token of each row is BOS (given, never
predicted); token i+1 is predicted from tokens ≤ i and z; the mean runs over the real (non-pad)
target tokens of each row, EOS included. Decoding runs the model incrementally with its KV cache.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diled_core import Batch, Decoder, ParamGroup
from torch import Tensor, nn

from .freezing import DecoderFreeze, freeze_decoder, frozen_names
from .sampling import next_token
from .tokenizer import TextTokenizer, load_trainable, resolve_model_path

__all__ = ["CausalLMDecoder", "Injection", "attends_ahead", "match_scale", "target_tokens"]

Injection = Literal[
    "optimus",  # z added to every token embedding + a one-slot key/value memory in every layer
    "prefix",  # z mapped to ``prefix_slots`` soft tokens before the sentence (any architecture)
]


def match_scale(layer: nn.Linear, like: Tensor) -> None:
    """Initialise ``layer`` so that a latent at the prior's scale (N(0, I)) gives outputs whose entries
    have the standard deviation of ``like``'s (the token embeddings).

    With PyTorch's default init a unit-scale latent gives an injected vector ~30× the norm of GPT-2's
    freshly initialised token embeddings (std 0.02): it drowns the tokens, and a decoder trained from
    scratch on VADER stayed at unigram loss (7 nats per token after 380 steps). No-op on the meta device.
    """
    if like.is_meta or layer.weight.is_meta:
        return
    with torch.no_grad():
        std = like.detach().float().std().item()
        nn.init.normal_(layer.weight, std=std / math.sqrt(layer.in_features))
        nn.init.zeros_(layer.bias)


def attends_ahead(lm: nn.Module) -> bool:
    """Whether ``lm``'s logits at the first position change with the token after it: an encoder such as
    BERT loaded as a causal LM without ``is_decoder``. False on the meta device (nothing to run)."""
    weight = next(lm.parameters())
    if weight.is_meta:
        return False
    ids = torch.tensor([[1, 2], [1, 3]], device=weight.device)
    mode = lm.training
    with torch.no_grad():
        first = lm.eval()(input_ids=ids).logits[:, 0].float()
    lm.train(mode)
    return not torch.allclose(first[0], first[1], rtol=1e-4, atol=1e-5)


def target_tokens(batch: Batch) -> tuple[Tensor, Tensor]:
    """The decoder's ids and mask ``[B, L]``: ``decoder_input_ids`` when the data has a separate
    decoder tokenizer, else ``input_ids``."""
    if "decoder_input_ids" in batch:
        return batch["decoder_input_ids"], batch["decoder_attention_mask"]
    return batch["input_ids"], batch["attention_mask"]


class CausalLMDecoder(Decoder):
    """Latents ``z [B, latent_dim]`` -> sentences, with a causal LM.

    Args:
        latent_dim: the latent size (filled from the encoder).
        vocab_size / pad_token_id / tokenizer: the data's target tokenizer (filled from the data);
            ``tokenizer`` (a local directory, ``None``: the installed MiniLM one) gives BOS/EOS and
            turns decoded ids into text.
        model_path: a local causal-LM directory (e.g. GPT-2 or a cached SmolLM2), or ``None`` with
            ``config``: a random-init model from this config dict (``model_type`` default ``gpt2``,
            e.g. ``{n_layer: 2, n_embd: 64, n_head: 2, n_positions: 40}``).
        config_overrides: fields of the pretrained model's config to change, e.g. ``{resid_pdrop: 0.0}``
            (a pretrained model trains with its dropout on, as with Hugging Face's ``Trainer``).
        injection: ``optimus`` | ``prefix`` (see :data:`Injection`); ``prefix_slots``: soft tokens.
        freeze: ``none`` | ``paper`` | ``all`` (see :mod:`diled_text.freezing`).
        lr: learning rate of the language model (``None``: the optimizer's); the injection layers
            always use the optimizer's.

    Decoding options (``--prediction.decode``): ``max_length`` (new tokens, default 32), ``greedy``
    (default true), ``temperature`` and ``top_p`` (sampling, with ``greedy: false``).
    """

    objective = "likelihood"

    def __init__(
        self,
        latent_dim: int = 128,
        vocab_size: int | None = None,
        pad_token_id: int | None = None,
        tokenizer: str | None = None,
        model_path: str | None = None,
        config: dict[str, Any] | None = None,
        config_overrides: dict[str, Any] | None = None,
        injection: Injection = "optimus",
        prefix_slots: int = 1,
        freeze: DecoderFreeze = "none",
        lr: float | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModelForCausalLM

        if (model_path is None) == (config is None):
            raise ValueError(
                "CausalLMDecoder: give model_path (pretrained weights) or config (random init), one of them."
            )
        if config is not None and config_overrides:
            raise ValueError(
                "CausalLMDecoder: config_overrides change a pretrained config; put them in config."
            )
        if injection not in ("optimus", "prefix"):
            raise ValueError(f"CausalLMDecoder: injection must be optimus or prefix (got {injection!r})")
        self.latent_dim, self.injection, self.lr, self.freeze = latent_dim, injection, lr, freeze
        self.text_tokenizer = TextTokenizer(tokenizer)
        self.pad_token_id = self.text_tokenizer.pad_id if pad_token_id is None else pad_token_id
        self.pretrained = model_path is not None
        if model_path is not None:
            self.lm = load_trainable(
                AutoModelForCausalLM, resolve_model_path(model_path), "decoder", config_overrides
            )
        else:
            options = {"model_type": "gpt2", **(config or {})}
            options.setdefault("vocab_size", vocab_size or self.text_tokenizer.vocab_size)
            options.update(
                bos_token_id=self.text_tokenizer.bos_id,
                eos_token_id=self.text_tokenizer.eos_id,
                pad_token_id=self.pad_token_id,
            )
            self.lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(**options))
        if attends_ahead(self.lm):
            raise ValueError(
                f"CausalLMDecoder: the language model ({type(self.lm).__name__}, from "
                f"{model_path or 'config'}) lets each token see the tokens after it, so teacher forcing "
                "would hand it the answer; a BERT-family model decodes causally with "
                "`config_overrides: {is_decoder: true}` (or `is_decoder: true` in `config`)."
            )
        cfg = self.lm.config.get_text_config()
        self.vocab_size = self.lm.get_output_embeddings().out_features
        if self.text_tokenizer.vocab_size > self.vocab_size:
            raise ValueError(
                f"CausalLMDecoder: the tokenizer {self.text_tokenizer.path} has "
                f"{self.text_tokenizer.vocab_size} tokens but the language model only {self.vocab_size}; "
                "pass the model's own tokenizer "
                "(tokenizer=..., filled from data.init_args.decoder_tokenizer in a config)."
            )
        if vocab_size is not None and vocab_size != self.vocab_size:
            raise ValueError(
                f"CausalLMDecoder: the language model has {self.vocab_size} output tokens but the data's "
                f"tokenizer has {vocab_size}; use the model's own tokenizer "
                "(data.init_args.decoder_tokenizer)."
            )
        hidden, layers = cfg.hidden_size, cfg.num_hidden_layers
        heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or hidden // cfg.num_attention_heads
        self.max_positions: int = getattr(cfg, "max_position_embeddings", 1 << 30)
        self.prefix_slots = 1 if injection == "optimus" else prefix_slots
        self.memory_shape = (layers, 2, heads, head_dim)  # per example: [layer, key|value, head, dim]
        if injection == "optimus":
            self.to_embedding = nn.Linear(latent_dim, hidden)
            self.to_memory = nn.Linear(latent_dim, layers * 2 * heads * head_dim)
            match_scale(self.to_embedding, self.lm.get_input_embeddings().weight)
        else:
            self.to_prefix = nn.Linear(latent_dim, prefix_slots * hidden)
            match_scale(self.to_prefix, self.lm.get_input_embeddings().weight)
        freeze_decoder(self.lm, freeze, layers)
        # fixed now: weights frozen later (two_stage's second stage) were trained and stay in checkpoints
        self._external = frozen_names(self.lm, "lm.") if self.pretrained else []
        params = inspect.signature(self.lm.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # transformers ≥ 5.x / older

    # --- conditioning ------------------------------------------------------------------------------
    def _memory(self, z: Tensor) -> Any:
        """A ``DynamicCache`` holding one key/value position per layer made from z ``[B, d]``."""
        from transformers import DynamicCache

        layers, _, heads, dim = self.memory_shape
        kv = self.to_memory(z).view(z.shape[0], layers, 2, heads, 1, dim)
        return DynamicCache(ddp_cache_data=[(kv[:, i, 0], kv[:, i, 1]) for i in range(layers)])

    def logits(self, z: Tensor, ids: Tensor, mask: Tensor, cache: Any = None) -> tuple[Tensor, Any]:
        """Logits ``[B, L, V]`` of the tokens ``ids [B, L]`` (``mask [B, L]``) given z, and the cache.

        ``cache`` None starts a sequence (conditioning included); otherwise continues it (``mask``
        then covers everything seen so far)."""
        embeds = self.lm.get_input_embeddings()(ids)
        b, n = ids.shape
        start = cache is None
        if self.injection == "optimus":
            embeds = embeds + self.to_embedding(z).unsqueeze(1).to(embeds.dtype)
            if start:
                cache = self._memory(z)
                mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        elif start:
            prefix = self.to_prefix(z).view(b, self.prefix_slots, -1).to(embeds.dtype)
            embeds = torch.cat([prefix, embeds], dim=1)
            mask = torch.cat([mask.new_ones(b, self.prefix_slots), mask], dim=1)
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache()
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, use_cache=True, **{self._cache_arg: cache})
        logits = out.logits  # a prefix's positions dropped; a full-length slice would still cost a copy
        return (logits if logits.shape[1] == n else logits[:, -n:]), cache

    # --- the contract --------------------------------------------------------------------------------
    def loss(
        self, z: Tensor, batch: Batch, *, t: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``{"nll": [B]}``: token cross-entropy per real target token of each row (``t`` is unused)."""
        ids, mask = target_tokens(batch)
        logits, _ = self.logits(z, ids[:, :-1], mask[:, :-1])
        target, weight = ids[:, 1:], mask[:, 1:].float()
        # over [B·L, V] rows: log-softmax along the contiguous vocabulary axis (as [B, V, L] it ran strided)
        ce = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), reduction="none")
        return {"nll": (ce.view_as(weight) * weight).sum(1) / weight.sum(1).clamp(min=1.0)}

    @torch.no_grad()
    def decode(
        self,
        z: Tensor,
        *,
        batch: Batch | None = None,
        generator: torch.Generator | None = None,
        max_length: int = 32,
        greedy: bool = True,
        temperature: float = 1.0,
        top_p: float = 1.0,
        **options: Any,
    ) -> Batch:
        """z ``[B, d]`` -> ``{"input_ids": [B, L'], "attention_mask": [B, L'], "text": list[str]}``:
        BOS, then up to ``max_length`` tokens, ending at the first EOS (kept; pad after it)."""
        if options:
            raise ValueError(
                f"CausalLMDecoder: unknown decoding option(s) {sorted(options)}; it takes "
                "max_length, greedy, temperature, top_p"
            )
        if greedy and (temperature != 1.0 or top_p != 1.0):
            raise ValueError("CausalLMDecoder: temperature and top_p apply to sampling; add `greedy: false`")
        if temperature <= 0 or not 0 < top_p <= 1 or max_length < 1:
            raise ValueError(
                f"CausalLMDecoder: need temperature > 0, 0 < top_p <= 1, max_length >= 1 (got "
                f"{temperature}, {top_p}, {max_length})"
            )
        if self.prefix_slots + 1 + max_length > self.max_positions:
            raise ValueError(
                f"CausalLMDecoder: max_length={max_length} needs {self.prefix_slots + 1 + max_length} "
                f"positions but the model has {self.max_positions}; lower max_length"
            )
        b, eos, pad = z.shape[0], self.text_tokenizer.eos_id, self.pad_token_id
        ids = torch.full((b, 1), self.text_tokenizer.bos_id, dtype=torch.long, device=z.device)
        done = torch.zeros(b, dtype=torch.bool, device=z.device)
        logits, cache = self.logits(z, ids, torch.ones_like(ids))
        seen = ids.shape[1] + self.prefix_slots
        for _ in range(max_length):
            tok = next_token(
                logits[:, -1], greedy=greedy, temperature=temperature, top_p=top_p, generator=generator
            )
            tok = torch.where(done, torch.full_like(tok, pad), tok)
            ids, done = torch.cat([ids, tok[:, None]], dim=1), done | (tok == eos)
            if bool(done.all()):
                break
            seen += 1
            logits, cache = self.logits(
                z, tok[:, None], torch.ones(b, seen, dtype=torch.long, device=z.device), cache
            )
        body = ids[:, 1:]
        ended_before = ((body == eos).long().cumsum(1) - (body == eos).long()) > 0  # after the first EOS
        mask = torch.cat([torch.ones_like(ids[:, :1]), (~ended_before).long()], dim=1)
        ids = ids.masked_fill(mask == 0, pad)
        return {"input_ids": ids, "attention_mask": mask, "text": self.text_tokenizer.decode_batch(ids)}

    # --- optimizer groups and checkpoints --------------------------------------------------------------
    def param_groups(self) -> list[ParamGroup]:
        """The language model's trainable weights (with ``lr`` if set), then the injection layers."""
        lm = [p for p in self.lm.parameters() if p.requires_grad]
        injection = [p for name, p in self.named_parameters() if not name.startswith("lm.")]
        groups: list[ParamGroup] = (
            [{"params": lm, **({"lr": self.lr} if self.lr is not None else {})}] if lm else []
        )
        return groups + [{"params": injection}]

    def external_state(self) -> list[str]:
        """Pretrained weights the freeze policy keeps frozen (rebuilt from ``model_path``), left out of
        checkpoints."""
        return list(self._external)
