"""docs/plugins.md stays true: its example plugin, written out from the guide's code blocks, passes
the core's contract suites and trains through the CLI (the guide is the only thing a plugin author reads)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def write_plugin(root: Path) -> list[Path]:
    """Every code block whose first line is ``# <path>`` becomes that file under ``root``."""
    files = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(), re.S):
        first = body.splitlines()[0] if body.strip() else ""
        match = re.match(r"# ([\w./-]+\.(py|toml|yaml))$", first)
        if match and lang in ("python", "toml", "yaml"):
            path = root / match.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            files.append(path)
    return files


def test_the_guide_plugin_passes_the_contract_suites(tmp_path: Path) -> None:
    files = write_plugin(tmp_path)
    names = {f.relative_to(tmp_path).as_posix() for f in files}
    assert {"pyproject.toml", "diled_wave/__init__.py", "tests/test_contract.py"} <= names, names
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 20, done.stdout[-500:]


def test_the_guide_imports_only_what_diled_core_exports(tmp_path: Path) -> None:
    import ast

    import diled_core

    plugin = [f for f in write_plugin(tmp_path) if f.suffix == ".py" and f.parts[-2] == "diled_wave"]
    assert len(plugin) >= 3
    for path in plugin:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diled_core"):
                assert node.module == "diled_core", f"{path.name} imports from {node.module}"
                for alias in node.names:
                    assert alias.name in diled_core.__all__, f"{path.name}: diled_core has no {alias.name}"
