"""Latent-space picture: PCA of the encoder means μ coloured by a property (DiLED paper Figure 6).

Figures are built with matplotlib's object API on the Agg canvas (no pyplot state, no display), so
they can be saved as PNG or passed to TensorBoard's ``add_figure``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diled_core import atomic_write
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["latent_figure", "pca", "save_figure"]


def pca(x: Tensor, k: int = 2) -> tuple[Tensor, Tensor]:
    """Project ``x [N, d]`` on its first ``k`` principal axes -> ``([N, k], explained variance ratio [k])``.

    Missing axes (``d < k`` or ``N < 2``) are filled with zeros.
    """
    x = x.detach().double().cpu()
    x = x - x.mean(0, keepdim=True)
    out, ratio = torch.zeros(x.shape[0], k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    if x.shape[0] < 2:
        return out.float(), ratio.float()
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    r = min(k, vh.shape[0])
    out[:, :r] = x @ vh[:r].T
    var = s**2
    ratio[:r] = var[:r] / var.sum().clamp_min(1e-12)
    return out.float(), ratio.float()


def latent_figure(
    mu: Tensor,
    property: Tensor | None = None,
    *,
    label: str = "property",
    title: str = "Latent space (PCA of μ)",
) -> Figure:
    """Scatter of the first two principal components of ``mu [N, d]``, coloured by ``property [N]``.

    ``nan`` property values (unlabelled examples) are drawn in grey; without a property every point
    has one colour.
    """
    xy, ratio = pca(mu)
    size = 6 if len(xy) > 500 else 14
    fig = Figure(figsize=(5.5, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if property is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.7, color="tab:blue", linewidths=0)
    else:
        y = property.detach().float().cpu().flatten()
        known = ~y.isnan()
        if (~known).any():
            ax.scatter(
                xy[~known, 0], xy[~known, 1], s=size, alpha=0.5, color="0.7", linewidths=0, label="unlabelled"
            )
            ax.legend(loc="best", fontsize=8)
        sc = ax.scatter(
            xy[known, 0], xy[known, 1], c=y[known], s=size, alpha=0.8, cmap="viridis", linewidths=0
        )
        fig.colorbar(sc, ax=ax, label=label)
    ax.set_xlabel(f"PC1 ({100 * float(ratio[0]):.1f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * float(ratio[1]):.1f}% of variance)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (temporary file, then rename)."""
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    return path
