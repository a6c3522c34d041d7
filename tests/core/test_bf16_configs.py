"""Every shipped config's model takes one optimizer step under ``--trainer.precision bf16-mixed`` on CPU.

The configs are discovered (``configs/**/*.yaml``), so a new config is tested without editing this file.
A config is skipped, with the reason, when a package it names is not installed, when a data file it
names is absent, or when the data module's assets (a Python package holding the data, see ``ASSETS``)
are missing. Configs that read ``../shared/data`` carry the ``shared_data`` marker. Data is shrunk where
the data module allows it (``batch_size``, ``num_workers``); the model is built at its full size, and only
its weights are saved (``last.ckpt``, which says how many steps were taken).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import yaml
from diled_core.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("**/*.yaml"))
#: data modules whose data ships inside another Python package: class path -> that package
ASSETS = {"diled_protein.AMPDataModule": "modlamp"}
#: ``data.init_args`` keys that name files or folders (checked to exist before running)
PATH_KEYS = ("path", "root", "dir")


def class_paths(node: Any) -> Iterator[str]:
    """Every ``class_path`` in a parsed config."""
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str):
            yield node["class_path"]
        for value in node.values():
            yield from class_paths(value)
    elif isinstance(node, list):
        for value in node:
            yield from class_paths(value)


def data_files(cfg: dict[str, Any]) -> list[Path]:
    """The files and folders the config's data module reads (relative paths are from the repo root)."""
    init = (cfg.get("data") or {}).get("init_args") or {}
    named = [v for k, v in init.items() if k.endswith(PATH_KEYS) and isinstance(v, str) and v]
    return [REPO / p for p in named]


def missing(cfg: dict[str, Any]) -> str | None:
    """Why the config cannot run on this machine, or ``None``."""
    for path in sorted(set(class_paths(cfg))):
        package = path.split(".")[0]
        if importlib.util.find_spec(package) is None:
            return f"the config names {path}, but the package {package!r} is not installed"
    data = (cfg.get("data") or {}).get("class_path", "")
    if data in ASSETS and importlib.util.find_spec(ASSETS[data]) is None:
        return f"{data} reads its data from the package {ASSETS[data]!r}, which is not installed"
    if data == "diled_image.FashionMNISTDataModule":  # its default root is a list of usual places
        from diled_image.fashion_mnist import find_fashion_mnist

        try:
            find_fashion_mnist((cfg["data"].get("init_args") or {}).get("root"))
        except Exception as err:
            return f"Fashion-MNIST not found here ({type(err).__name__})"
    absent = [str(p) for p in data_files(cfg) if not p.exists()]
    if absent:
        return f"data not found: {', '.join(absent)}"
    return None


def required_files(text: str) -> str | None:
    """The config's ``# requires: <paths>`` header (local weights it needs), when any is absent."""
    for line in text.splitlines():
        if line.startswith("# requires:"):
            absent = [p for p in line.split(":", 1)[1].split() if not (REPO / p).exists()]
            if absent:
                return f"needs local files that are absent here: {', '.join(absent)}"
    return None


def shrink(cfg: dict[str, Any]) -> list[str]:
    """Overrides that make the data cheap without touching the model."""
    init = (cfg.get("data") or {}).get("init_args") or {}
    args = ["--data.init_args.batch_size", "4"] if "batch_size" in init else []
    return args + (["--data.init_args.num_workers", "0"] if "num_workers" in init else [])


def params() -> list[Any]:
    out = []
    for path in CONFIGS:
        marks = [pytest.mark.shared_data] if "shared/data" in path.read_text() else []
        out.append(
            pytest.param(path, id=str(path.relative_to(REPO / "configs").with_suffix("")), marks=marks)
        )
    return out


def test_configs_are_discovered() -> None:
    names = {str(p.relative_to(REPO / "configs")) for p in CONFIGS}
    assert {"toy/fit.yaml", "protein/gifford.yaml", "protein/gfp.yaml"} <= names


@pytest.mark.parametrize("config", params())
def test_config_takes_one_bf16_mixed_step_on_cpu(config: Path, tmp_path: Path, monkeypatch) -> None:
    text = config.read_text()
    cfg = yaml.safe_load(text)
    reason = missing(cfg) or required_files(text)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(REPO)  # configs name their data relative to the repository root
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path)]
    args += ["--trainer.max_steps", "1", "--trainer.precision", "bf16-mixed"]
    args += ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.limit_val_batches", "0"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    args += ["--checkpoint.save_top_k", "0", "--checkpoint.save_weights_only", "true"]  # last.ckpt only
    assert main(args + shrink(cfg)) == 0
    (ckpt,) = tmp_path.glob("**/checkpoints/last.ckpt")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 1
    assert all(torch.isfinite(w).all() for w in saved["state_dict"].values() if w.is_floating_point())
