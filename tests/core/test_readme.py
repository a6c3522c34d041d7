"""Every Python block of the README runs as written, after the fit it names (a short one here).

A block is skipped, with the reason, when a package it needs is not installed (the install shapes: the
core alone has no protein plugin)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from diled_core.cli import main

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


class Setup:
    """What a block needs: the packages, the short fit that stands in for the one the README names,
    and what its results must look like."""

    def __init__(
        self, needs: tuple[str, ...], fit: list[str], check: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.needs, self.fit, self.check = needs, fit, check


#: the module a block imports its datamodule from -> its setup
SETUPS = {
    "diled_core.toy": Setup(
        (),
        ["--config", str(REPO / "configs/toy/fit.yaml"), "--trainer.max_steps", "5"],
        lambda ns: len(ns["new"]) == 16 and len(ns["recon"]) == 2 and len(ns["between"]) == 8,
    ),
    "diled_protein": Setup(  # `make demo` trains configs/protein/demo.yaml into runs/demo
        ("diled_protein", "modlamp"),
        ["--config", str(REPO / "configs/protein/cpu_test.yaml"), "--trainer.default_root_dir", "runs/demo"],
        lambda ns: (
            len(ns["recon"]) == 2
            and len(ns["peptides"]) == 8
            and all(isinstance(s, str) for s in ns["recon"] + ns["peptides"])
            and tuple(ns["mu"].shape)[0] == 2
        ),
    ),
}


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 2, "the README has lost its Python API blocks"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(block: str, tmp_path: Path, monkeypatch) -> None:
    found = [name for name in SETUPS if f"from {name} import" in block]
    assert found, f"a README Python block imports from none of {list(SETUPS)}; add its setup here"
    setup = SETUPS[found[0]]
    for package in setup.needs:
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed")
    monkeypatch.chdir(tmp_path)
    assert main(["fit", *setup.fit, "--trainer.enable_progress_bar", "false"]) == 0
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert setup.check(namespace), "the block ran but its results are not what the README says"
