"""Attribute manipulation in latent space (method.md §4), as plain functions of labelled μ.

Three ways to move a latent μ of class ``s`` towards class ``c``:

* **arithmetic**: μ' = μ + k · (m_c − m_s), the difference of class means (Optimus, LatentOps);
* **linear**: μ' = μ + k · ((m_c − m_s) · û) û, along the unit normal û ∝ w_c − w_s of a softmax
  regression on μ (DiffAE's linear-classifier direction), by the class-mean gap along it;
* **guided**: DDIM-invert μ to x_T, then DDIM back down with classifier guidance towards c
  (Dhariwal & Nichol 2021, Eq. 14: ε̂ ← ε̂ − √(1 − ᾱ_t) · k · ∇ log p(c | x_t)), where p(y | x_t) is a
  small classifier trained on x_t = √ᾱ_t μ + √(1 − ᾱ_t) ε at t ~ U{1 … T}.

For an example of unknown class (label −1) the source mean is the mean of the other classes' means.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .contract import Guidance
from .denoiser import timestep_embedding
from .diffusion import q_sample
from .schedule import NoiseSchedule

__all__ = ["Attributes", "TimeClassifier", "classifier_guidance", "fit_attributes", "fit_time_classifier"]


class TimeClassifier(nn.Module):
    """p(y | x_t, t): an MLP on the noisy latent and a sinusoidal embedding of t / T."""

    def __init__(self, latent_dim: int, num_classes: int, hidden: int = 256, time_dim: int = 64) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim + time_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Logits ``[B, C]`` for x_t ``[B, d]`` at float times t / T ``[B]``."""
        return self.net(torch.cat([x, timestep_embedding(t, self.time_dim).to(x.dtype)], dim=-1))


def fit_time_classifier(
    mu: Tensor,
    y: Tensor,
    num_classes: int,
    schedule: NoiseSchedule,
    *,
    steps: int = 500,
    batch_size: int = 256,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
) -> TimeClassifier:
    """Train a :class:`TimeClassifier` on class indices ``y`` ``[N]`` of latents ``mu`` ``[N, d]``."""
    with torch.inference_mode(False), torch.enable_grad():  # also inside Trainer.predict
        mu, y = mu.clone(), y.clone()
        clf = TimeClassifier(mu.shape[1], num_classes).to(mu.device)
        opt = torch.optim.Adam(clf.parameters(), lr=lr)
        for _ in range(steps):
            idx = torch.randint(0, mu.shape[0], (batch_size,), generator=generator, device=mu.device)
            t = torch.randint(1, schedule.timesteps + 1, (batch_size,), generator=generator, device=mu.device)
            noise = torch.randn(mu[idx].shape, generator=generator, device=mu.device)
            x_t = q_sample(schedule, mu[idx], t, noise)
            loss = nn.functional.cross_entropy(clf(x_t, t / schedule.timesteps), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return clf.eval().requires_grad_(False)


def classifier_guidance(clf: TimeClassifier, target: Tensor, timesteps: int) -> Guidance:
    """∇_{x_t} log p(target | x_t) for the samplers' ``guidance`` argument (``target``: class indices [B])."""

    def grad(x: Tensor, t: Tensor) -> Tensor:
        logp = torch.log_softmax(clf(x, t / timesteps), dim=-1)
        index = target[:, None].to(x.device).clone()  # not an inference tensor inside Trainer.predict
        return torch.autograd.grad(logp.gather(1, index).sum(), x)[0]

    return grad


def _softmax_regression(mu: Tensor, y: Tensor, num_classes: int, steps: int = 200) -> Tensor:
    """Weights ``[C, d]`` of an L2-regularised softmax regression of ``y`` on standardised μ (L-BFGS)."""
    with torch.inference_mode(False), torch.enable_grad():  # also inside Trainer.predict
        mu, y = mu.clone(), y.clone()
        scale = mu.std(0).clamp_min(1e-6)
        x = torch.cat([(mu - mu.mean(0)) / scale, torch.ones(len(mu), 1, device=mu.device)], 1)
        w = torch.zeros(num_classes, x.shape[1], device=mu.device, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(x @ w.T, y) + 1e-3 * w[:, :-1].pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return w.detach()[:, :-1] / scale  # back in μ coordinates


@dataclass
class Attributes:
    """What :func:`fit_attributes` learns from labelled latents; moves latents between classes."""

    classes: Tensor  # [C] the class labels, sorted
    means: Tensor  # [C, d] class means of μ
    weights: Tensor  # [C, d] softmax-regression weights on μ
    classifier: TimeClassifier | None  # p(y | x_t), for guided transfer
    counts: Tensor  # [C] labelled examples per class

    def index(self, labels: Tensor) -> Tensor:
        """Class labels -> indices into :attr:`classes`; −1 for a label that is not a known class."""
        match = labels.to(self.classes.device)[:, None] == self.classes[None]
        return torch.where(match.any(1), match.int().argmax(1), -1)

    def targets(self, labels: Tensor, transfer_to: int | None) -> Tensor:
        """The target class index of each row: ``transfer_to``, or the other class of a two-class task."""
        if transfer_to is not None:
            idx = self.index(torch.tensor([transfer_to]))
            if idx.item() < 0:
                raise ValueError(
                    f"--prediction.transfer_to {transfer_to} is not a class of the training data "
                    f"(classes: {self.classes.tolist()})"
                )
            return idx.expand(len(labels)).clone()
        if len(self.classes) != 2:
            raise ValueError(
                f"the training data has {len(self.classes)} classes ({self.classes.tolist()}): say which to "
                f"transfer to with --prediction.transfer_to"
            )
        source = self.index(labels)
        return torch.where(source == 1, 0, 1)  # unknown sources go to the second class

    def _source_means(self, source: Tensor, target: Tensor, table: Tensor) -> Tensor:
        # a row of unknown class starts from the mean of the classes other than its target
        others = (table.sum(0, keepdim=True) - table[target]) / max(len(self.classes) - 1, 1)
        return torch.where((source >= 0)[:, None], table[source.clamp_min(0)], others)

    def shift(self, mu: Tensor, labels: Tensor, target: Tensor, method: str, scale: float) -> Tensor:
        """μ moved towards class indices ``target`` by ``arithmetic`` or ``linear`` (see the module doc)."""
        source = self.index(labels).to(mu.device)
        target = target.to(mu.device)
        gap = self.means[target] - self._source_means(source, target, self.means)
        if method == "arithmetic":
            return mu + scale * gap
        if method == "linear":
            u = self.weights[target] - self._source_means(source, target, self.weights)
            u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return mu + scale * (gap * u).sum(-1, keepdim=True) * u
        raise ValueError(f"unknown transfer method {method!r}; choose arithmetic, linear or guided")


def fit_attributes(
    mu: Tensor,
    labels: Tensor,
    schedule: NoiseSchedule,
    *,
    classifier_steps: int = 0,
    generator: torch.Generator | None = None,
) -> Attributes:
    """Class means, a softmax regression and (``classifier_steps`` > 0) a time-conditioned classifier,
    from latents ``mu`` ``[N, d]`` with labels ``[N]`` (−1: unlabelled, left out)."""
    keep = labels >= 0
    mu, labels = mu[keep].float(), labels[keep].to(mu.device)
    classes, y, counts = labels.unique(return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"attribute transfer needs labelled examples of at least 2 classes in the training split; found "
            f"{len(classes)} class(es) among {int(keep.sum())} labelled examples"
        )
    means = torch.stack([mu[y == c].mean(0) for c in range(len(classes))])
    clf = None
    if classifier_steps > 0:
        clf = fit_time_classifier(mu, y, len(classes), schedule, steps=classifier_steps, generator=generator)
    return Attributes(classes, means, _softmax_regression(mu, y, len(classes)), clf, counts)
