"""The IDX format of MNIST and Fashion-MNIST (LeCun et al.; torchvision's "raw" files), gzipped or not.

Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions n, then n big-endian int32
sizes; the data follows in C order.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["read_idx"]


def read_idx(path: str | Path) -> Tensor:
    """One IDX file (``.gz`` or plain) -> a uint8 tensor of its shape (``[N, 28, 28]`` or ``[N]``)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an uint8 IDX file (header {data[:4].hex()}); is it the right file?")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    expected = int(np.prod(shape))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != expected:
        raise ValueError(
            f"{path}: the header says {shape} ({expected} bytes) but it holds {body.size}; "
            "the file is truncated, download or copy it again"
        )
    return torch.from_numpy(body.copy()).view(*shape)
