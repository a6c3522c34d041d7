"""Keep freed host memory in the process, so a CPU training step does not fault its buffers in again.

glibc's ``malloc`` serves blocks larger than its mmap threshold with fresh ``mmap`` pages and returns them
to the OS on ``free``; it also trims the heap's free top back to the OS. A training step frees and
reallocates the same large buffers every step (a linear layer's weight gradient: 17 MB at 2080 × 2048),
so every step page-faults them in again and the kernel zeroes them: about 108,000 faults (420 MB) per
step for ``configs/protein/paper_gifford.yaml`` on a 2-core Intel Xeon. ``keep`` raises the mmap
threshold to glibc's maximum (32 MiB) and stops trimming, so freed blocks stay in the process and the
next step reuses them: no faults per step, and peak resident memory instead of a saw-tooth
(``benchmarks/training_cost.py``, ablation ``host_memory``). ``release`` sets glibc's initial thresholds
(128 KiB) and keeps them fixed. Other C libraries (macOS, musl) are left alone.

The ``diled`` command adds :class:`HostMemory` (``keep``) to every Trainer whose callbacks do not name
one; ``--trainer.callbacks+=diled_core.HostMemory --trainer.callbacks.mode=release`` opts out.
"""

from __future__ import annotations

import ctypes
import platform
from typing import Any, Literal

from lightning.pytorch.callbacks import Callback

__all__ = ["HostMemory", "set_host_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_SETTINGS = {  # mode -> (mmap threshold, trim threshold), bytes
    "keep": (32 << 20, 2**31 - 1),  # 32 MiB: the largest mmap threshold glibc accepts on 64-bit
    "release": (128 << 10, 128 << 10),  # glibc's initial values
}
Mode = Literal["keep", "release"]


def set_host_memory(mode: Mode) -> bool:
    """Set this process's malloc thresholds for ``mode``; False (and nothing changed) where the C
    library is not glibc."""
    if mode not in _SETTINGS:
        raise ValueError(f"host memory mode must be one of {sorted(_SETTINGS)}, got {mode!r}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mmap_threshold, trim_threshold = _SETTINGS[mode]
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and mallopt(_M_TRIM_THRESHOLD, trim_threshold))


class HostMemory(Callback):
    """Set the process's malloc thresholds (:func:`set_host_memory`) when a Trainer sets up.

    Args:
        mode: ``keep`` (freed memory stays in the process for reuse; the default of ``diled``) or
            ``release`` (glibc's initial thresholds: large blocks go back to the OS when freed).
    """

    def __init__(self, mode: Mode = "keep") -> None:
        if mode not in _SETTINGS:
            raise ValueError(f"HostMemory mode must be one of {sorted(_SETTINGS)}, got {mode!r}")
        self.mode = mode

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        set_host_memory(self.mode)
