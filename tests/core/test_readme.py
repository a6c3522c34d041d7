"""Every Python block of the README runs as written (after the toy fit it names)."""

from __future__ import annotations

import re
from pathlib import Path

from diled_core.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no Python block"
    monkeypatch.chdir(tmp_path)
    config = str(README.parent / "configs" / "toy" / "fit.yaml")
    assert main(["fit", "--config", config, "--trainer.max_steps", "5", "--trainer.enable_progress_bar", "false"]) == 0
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert len(namespace["new"]) == 16 and len(namespace["recon"]) == 2 and len(namespace["between"]) == 8
