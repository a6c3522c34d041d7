"""HostMemory: freed host memory kept in the process (no page faults on reuse) or returned to the OS."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from diled_core import HostMemory, set_host_memory
from diled_core.cli import DiledCLI

TOY = str(Path(__file__).resolve().parents[2] / "configs" / "toy" / "fit.yaml")
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


FAULTS = """
import resource, statistics, sys, torch
from diled_core import set_host_memory
assert set_host_memory(sys.argv[1])
faults = []
for _ in range(8):  # write a 16 MB buffer (touching its pages), free it, again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(4 << 20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(statistics.median(faults[1:]))
"""


def faults_on_reuse(mode: str) -> int:
    """Minor page faults of writing a 16 MB buffer after the first one (median of 7: the heap may still
    grow once), in a fresh process (the heap a test process already has would serve it either way)."""
    done = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return int(float(done.stdout))


@pytest.mark.skipif(not GLIBC, reason="HostMemory sets glibc's malloc; other C libraries are left alone")
def test_keep_reuses_a_freed_buffer_without_page_faults_and_release_faults_it_in_again() -> None:
    pages = (16 << 20) // resource.getpagesize()
    released, kept = faults_on_reuse("release"), faults_on_reuse("keep")
    assert released >= pages // 2, released  # a fresh mmap: every page faulted in and zeroed again
    assert kept < pages // 20, kept


def test_an_unknown_mode_is_refused_naming_the_modes() -> None:
    with pytest.raises(ValueError, match=r"\['keep', 'release'\].*'forget'"):
        HostMemory("forget")
    with pytest.raises(ValueError, match="'forget'"):
        set_host_memory("forget")  # type: ignore[arg-type]


def host_memory_modes(*args: str) -> list[str]:
    cli = DiledCLI(args=["--config", TOY, *args], run=False)
    return [c.mode for c in cli.trainer.callbacks if isinstance(c, HostMemory)]


def test_the_diled_command_keeps_host_memory_unless_the_config_names_a_mode(monkeypatch) -> None:
    monkeypatch.setattr("sys.argv", ["diled"])
    assert host_memory_modes() == ["keep"]
    opt_out = ["--trainer.callbacks+=diled_core.HostMemory", "--trainer.callbacks.mode=release"]
    assert host_memory_modes(*opt_out) == ["release"]
