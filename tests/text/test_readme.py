"""The text plugin's README: its Python API block runs (on a tiny untrained model) and its FSDP
strategy parses into a block-wise wrap policy."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diled_core import DiLED, SkipMLP
from diled_text import CausalLMDecoder, HFEncoder, tiny_corpus

README = Path(__file__).resolve().parents[2] / "src" / "diled_text" / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_python_api_block_runs(tmp_path, monkeypatch, tiny_bert, tiny_gpt2):
    (tmp_path / "sentences.txt").write_text("".join(r.text + "\n" for r in tiny_corpus(40)))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = DiLED(
        HFEncoder(8, config=tiny_bert),
        CausalLMDecoder(8, config=tiny_gpt2),
        denoiser=lambda d: SkipMLP(d, width=32, depth=2),
        timesteps=100,
        sample_steps=3,
    ).eval()
    (code,) = blocks("python")
    namespace = {"model": model, "TextDataModule": __import__("diled_text").TextDataModule}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["mu"].shape == (2, 8)
    generated = namespace["dm"].records_from_batch(model.sample(4))
    assert len(generated) == 4 and all(isinstance(s, str) for s in generated)


def test_the_fsdp_strategy_parses_into_a_block_wrap_policy():
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import FSDPStrategy, Strategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    (strategy,) = [m for b in blocks("bash") for m in re.findall(r"--trainer\.strategy '(.*?)'", b)]
    parser = ArgumentParser()
    parser.add_subclass_arguments(Strategy, "strategy")
    built = parser.instantiate(parser.parse_args(["--strategy", strategy])).strategy
    policy = built.kwargs["auto_wrap_policy"]
    assert isinstance(built, FSDPStrategy) and isinstance(policy, ModuleWrapPolicy)
    assert policy._module_classes == {GPT2Block}
