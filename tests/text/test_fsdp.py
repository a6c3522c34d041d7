"""FSDP (Lightning's ``--trainer.strategy fsdp``): a tiny text model (configs/text/cpu_test.yaml) fits
2 steps, sharded over 2 processes. On the CPU it runs only where Lightning and torch shard there;
today neither does (Lightning 2.6 refuses a CPU accelerator, torch's FullyShardedDataParallel needs a
non-CPU device), and the skip gives both of their own messages, found out live (torch's in a
subprocess, so no process group is left in this one). On GPUs: the slow test, where one is lent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
DILED = str(Path(sys.executable).with_name("diled"))

#: one gloo process wraps a Linear in torch's FullyShardedDataParallel on the CPU
_PROBE = """
import sys, torch, torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
try:
    FullyShardedDataParallel(torch.nn.Linear(2, 2))(torch.ones(1, 2)).sum().backward()
except Exception as err:
    print(f"{type(err).__name__}: {err}")
finally:
    dist.destroy_process_group()
"""


def cpu_fsdp_refusals(tmp_path: Path) -> list[str]:
    """What Lightning and torch say to FSDP on the CPU (empty when both accept it)."""
    from lightning.pytorch import Trainer

    reasons = []
    try:
        Trainer(strategy="fsdp", accelerator="cpu", devices=2, logger=False, enable_checkpointing=False)
    except ValueError as err:
        reasons.append(f"lightning {_version('lightning')}: {err}")
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "store")], capture_output=True, text=True, timeout=120
    )
    said = probe.stdout.strip() or (probe.returncode and probe.stderr.strip().splitlines()[-1])
    if said:
        reasons.append(f"torch {torch.__version__}: {said}")
    return reasons


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


#: the README's block-wise wrapping (src/diled_text/README.md, "Big decoders: FSDP"), as it is written
BLOCK_WRAP = re.search(
    r"--trainer\.strategy '(.*?)'", (REPO / "src" / "diled_text" / "README.md").read_text(encoding="utf-8")
).group(1)


def run_diled(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([DILED, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def fit_two_steps_under_fsdp(tmp_path: Path, where: list[str], strategy: str = "fsdp") -> None:
    config = str(REPO / "configs" / "text" / "cpu_test.yaml")
    args = ["fit", "--config", config, "--trainer.strategy", strategy, "--trainer.max_steps", "2"]
    run_diled([*args, "--trainer.default_root_dir", str(tmp_path / "run"), *where], tmp_path)
    (ckpt,) = (tmp_path / "run").glob("**/checkpoints/last.ckpt")
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2
    # saved whole (state_dict_type full): `diled predict` reads it on one device, without FSDP
    out = tmp_path / "predictions"
    predict = ["predict", "--config", str(ckpt.parents[1] / "config.yaml"), "--ckpt_path", str(ckpt)]
    predict += ["--trainer.strategy", "auto", "--trainer.devices", "1", *where[:2]]
    predict += ["--prediction.task", "reconstruct", "--prediction.output_dir", str(out)]
    run_diled(predict, tmp_path)
    assert (out / "metrics.json").is_file()


@pytest.mark.ddp
def test_fsdp_with_two_cpu_processes(tmp_path: Path) -> None:
    """Skips (in ~10 s) with Lightning's and torch's own reasons where they refuse FSDP on the CPU."""
    refusals = cpu_fsdp_refusals(tmp_path)
    if refusals:
        pytest.skip("FSDP does not run on CPU here: " + " | ".join(refusals))
    fit_two_steps_under_fsdp(tmp_path, ["--trainer.accelerator", "cpu", "--trainer.devices", "2"])


@pytest.mark.ddp
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fsdp", BLOCK_WRAP], ids=["one_unit", "block_wrap"])
def test_fsdp_on_gpus(tmp_path: Path, strategy: str) -> None:
    gpus = torch.cuda.device_count()
    if not gpus:
        pytest.skip("no CUDA GPU here: FSDP on GPUs is tested where one is lent")
    where = ["--trainer.accelerator", "gpu", "--trainer.devices", str(min(gpus, 2))]
    fit_two_steps_under_fsdp(tmp_path, where, strategy)
