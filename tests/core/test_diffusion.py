"""The forward process and the per-example terms of the objective (method.md §2-3), and the latent
health statistics (method.md §3, "Failure mode to watch").

Expected values are computed by hand here (Python floats / float64 formulas), never from the code
under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from diled_core.diffusion import diffusion_mse, q_sample, rec_weight, sample_timesteps
from diled_core.objective import combine_terms
from diled_core.monitoring import LatentStats, latent_fd
from diled_core.schedule import NoiseSchedule

BETA = 0.008  # the paper's constant schedule: ᾱ_t = 0.992^t


def abar(t: int) -> float:
    return (1 - BETA) ** t


def lam(t: int) -> float:
    """λ_t = β² / (2 σ_t² α (1 − ᾱ_t)), σ_t² = β (1 − ᾱ_{t−1}) / (1 − ᾱ_t), constant β."""
    sigma2 = BETA * (1 - abar(t - 1)) / (1 - abar(t))
    return BETA**2 / (2 * sigma2 * (1 - BETA) * (1 - abar(t)))


@pytest.fixture
def sched10() -> NoiseSchedule:
    return NoiseSchedule("constant", 10, beta=BETA)


# --- q_sample -------------------------------------------------------------------------------------
def test_q_sample_exact_value_for_given_noise(sched10):
    mu = torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 4.0]], dtype=torch.float64)
    noise = torch.tensor([[0.3, 0.1], [-1.0, 2.0], [0.0, -0.5]], dtype=torch.float64)
    t = torch.tensor([1, 3, 10])
    out = q_sample(sched10, mu, t, noise)
    expected = torch.tensor(
        [
            [math.sqrt(abar(ti)) * m + math.sqrt(1 - abar(ti)) * n for m, n in zip(mu_row, n_row)]
            for ti, mu_row, n_row in zip([1, 3, 10], mu.tolist(), noise.tolist())
        ],
        dtype=torch.float64,
    )
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    # the t = 1 row by the numbers: √0.992 · 1 + √0.008 · 0.3
    assert out[0, 0].item() == pytest.approx(0.99599197 + 0.08944272 * 0.3, rel=1e-6)


def test_q_sample_broadcasts_over_image_shaped_latents(sched10):
    mu = torch.ones(2, 3, 4, 4)
    noise = torch.zeros(2, 3, 4, 4)
    out = q_sample(sched10, mu, torch.tensor([2, 7]), noise)
    assert out.shape == mu.shape
    torch.testing.assert_close(out[0], torch.full((3, 4, 4), math.sqrt(abar(2))))
    torch.testing.assert_close(out[1], torch.full((3, 4, 4), math.sqrt(abar(7))))


@pytest.mark.parametrize("t", [1, 50, 1000])
def test_q_sample_moments(t):
    """Over N noises, mean ≈ √ᾱ_t μ and variance ≈ 1 − ᾱ_t, within 5 standard errors."""
    sched = NoiseSchedule("constant", 1000, beta=BETA)
    n, mu_row = 20_000, torch.tensor([2.0, -1.0, 0.5, 0.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(1234 + t)
    noise = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    x = q_sample(sched, mu_row.expand(n, 4), torch.full((n,), t), noise)
    var = 1 - abar(t)
    se_mean = math.sqrt(var / n)
    se_var = var * math.sqrt(2 / (n - 1))
    torch.testing.assert_close(x.mean(0), math.sqrt(abar(t)) * mu_row, rtol=0, atol=5 * se_mean)
    torch.testing.assert_close(x.var(0), torch.full((4,), var, dtype=torch.float64), rtol=0, atol=5 * se_var)


# --- sample_timesteps -----------------------------------------------------------------------------
def test_sample_timesteps_is_uniform_on_2_to_T(sched10):
    n = 18_000
    t = sample_timesteps(sched10, n, torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    assert t.shape == (n,) and t.dtype == torch.long
    assert t.min().item() == 2 and t.max().item() == 10
    counts = torch.bincount(t, minlength=11)
    assert counts[0] == 0 and counts[1] == 0
    p = 1 / 9  # 9 values 2 … 10, each within 5 binomial standard errors of n/9
    tol = 5 * math.sqrt(n * p * (1 - p))
    for c in counts[2:].tolist():
        assert abs(c - n * p) < tol


def test_sample_timesteps_is_reproducible_with_a_generator():
    sched = NoiseSchedule("constant", 1000)
    a = sample_timesteps(sched, 64, torch.device("cpu"), generator=torch.Generator().manual_seed(7))
    b = sample_timesteps(sched, 64, torch.device("cpu"), generator=torch.Generator().manual_seed(7))
    c = sample_timesteps(sched, 64, torch.device("cpu"), generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sample_timesteps_with_T_2_is_always_2():
    t = sample_timesteps(NoiseSchedule("constant", 2), 100, torch.device("cpu"))
    assert torch.all(t == 2)


# --- diffusion_mse ---------------------------------------------------------------------------------
A = torch.tensor([[0.5, -0.2, 0.1], [0.0, 1.0, 0.3], [-0.4, 0.2, 0.7]], dtype=torch.float64)
C = torch.tensor([0.01, -0.02, 0.03], dtype=torch.float64)


def linear_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """ε_θ(x, t) = A x + c · t, a hand-written eps model."""
    return x @ A.T + C * t.to(x.dtype)[:, None]


def test_diffusion_mse_matches_the_formula_by_hand(sched10):
    mu = torch.tensor([[1.0, 2.0, -1.0], [0.0, 0.5, 0.2]], dtype=torch.float64)
    noise = torch.tensor([[0.1, -0.3, 0.7], [1.2, 0.0, -0.4]], dtype=torch.float64)
    t = [4, 9]
    out = diffusion_mse(linear_eps, sched10, mu, torch.tensor(t), noise)
    expected = []
    for i, ti in enumerate(t):  # by hand, one example at a time, with Python floats
        pairs = zip(mu[i].tolist(), noise[i].tolist())
        x = [math.sqrt(abar(ti)) * m + math.sqrt(1 - abar(ti)) * e for m, e in pairs]
        eps_hat = [sum(A[r, c].item() * x[c] for c in range(3)) + C[r].item() * ti for r in range(3)]
        expected.append(sum((e - p) ** 2 for e, p in zip(noise[i].tolist(), eps_hat)) / 3)
    assert out.shape == (2,)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_diffusion_mse_gradient_reaches_mu(sched10):
    mu = torch.tensor([[1.0, 2.0, -1.0], [0.0, 0.5, 0.2]], dtype=torch.float64, requires_grad=True)
    noise = torch.tensor([[0.1, -0.3, 0.7], [1.2, 0.0, -0.4]], dtype=torch.float64)
    t = torch.tensor([2, 6])
    diffusion_mse(linear_eps, sched10, mu, t, noise).sum().backward()
    assert mu.grad is not None and torch.all(mu.grad.abs().sum(1) > 0)
    # d/dμ mean_d (ε − A x_t − c t)² = −(2/d) √ᾱ_t Aᵀ (ε − A x_t − c t), with x_t = √ᾱ_t μ + √(1−ᾱ_t) ε
    with torch.no_grad():
        sa = torch.tensor([math.sqrt(abar(2)), math.sqrt(abar(6))], dtype=torch.float64)[:, None]
        so = torch.tensor([math.sqrt(1 - abar(2)), math.sqrt(1 - abar(6))], dtype=torch.float64)[:, None]
        x = sa * mu + so * noise
        r = noise - (x @ A.T + C * t.double()[:, None])
        expected = -(2 / 3) * sa * (r @ A)
    torch.testing.assert_close(mu.grad, expected, rtol=1e-6, atol=1e-9)


def test_diffusion_mse_of_the_perfect_eps_model_is_zero(sched10):
    noise = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    mu = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    out = diffusion_mse(lambda x, t: noise, sched10, mu, torch.tensor([2, 3, 4, 10]), noise)
    assert torch.all(out == 0)


def test_diffusion_mse_reduces_image_shaped_latents_per_example(sched10):
    mu = torch.zeros(2, 3, 4, 4)
    noise = torch.ones(2, 3, 4, 4)
    noise[1] *= 2.0
    out = diffusion_mse(lambda x, t: torch.zeros_like(x), sched10, mu, torch.tensor([2, 5]), noise)
    torch.testing.assert_close(out, torch.tensor([1.0, 4.0]))


# --- rec_weight ------------------------------------------------------------------------------------
def test_rec_weight_elbo_split_is_one_over_T_minus_1_lambda(sched10):
    t = torch.tensor([2, 3, 7, 10])
    out = rec_weight(sched10, t, "elbo_split")
    expected = torch.tensor([1 / (9 * lam(ti)) for ti in t.tolist()])
    assert out.shape == (4,)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=0)
    # t = 2 with constant β: λ_2 = 1 / (2 α) → weight 2 α / (T − 1)
    assert out[0].item() == pytest.approx(2 * 0.992 / 9, rel=1e-6)


def test_rec_weight_elbo_split_paper_schedule():
    sched = NoiseSchedule("constant", 1000, beta=BETA)
    out = rec_weight(sched, torch.tensor([2, 500, 1000]), "elbo_split")
    expected = torch.tensor([1 / (999 * lam(t)) for t in [2, 500, 1000]])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=0)


def test_rec_weight_uniform_is_one(sched10):
    out = rec_weight(sched10, torch.tensor([2, 5, 10]), "uniform")
    assert torch.equal(out, torch.ones(3))


def test_rec_weight_unknown_raises(sched10):
    with pytest.raises(ValueError, match="rec_weighting"):
        rec_weight(sched10, torch.tensor([2]), "nope")  # type: ignore[arg-type]


# --- combine_terms ---------------------------------------------------------------------------------
def test_combine_terms_is_the_sum_of_weighted_means():
    rec = torch.tensor([1.0, 2.0, 3.0, 4.0])
    diff = torch.tensor([0.5, 0.25, 0.0, 1.0])
    w_rec = torch.tensor([0.1, 0.2, 0.3, 0.4])  # per-example weights, e.g. the ELBO split
    out = combine_terms({"rec": rec, "diff": diff}, {"rec": w_rec, "diff": 8.0})
    by_hand = (0.1 * 1 + 0.2 * 2 + 0.3 * 3 + 0.4 * 4) / 4 + 8.0 * (0.5 + 0.25 + 0.0 + 1.0) / 4
    assert out.shape == ()
    assert out.item() == pytest.approx(by_hand, rel=1e-6)


def test_combine_terms_is_differentiable_and_float32():
    rec = torch.tensor([1.0, 3.0], dtype=torch.float64, requires_grad=True)
    out = combine_terms({"rec": rec}, {"rec": torch.tensor([2.0, 4.0])})
    assert out.dtype == torch.float32
    out.backward()
    torch.testing.assert_close(rec.grad, torch.tensor([1.0, 2.0], dtype=torch.float64))  # d/d rec_i = w_i / B


def test_combine_terms_missing_term_raises():
    with pytest.raises(KeyError):
        combine_terms({"rec": torch.ones(2)}, {"rec": 1.0, "diff": 1.0})


# --- LatentStats (method.md §3, failure mode) ---------------------------------------------------------
def _latents() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(37, 6, generator=gen) * torch.tensor([1.0, 2.0, 0.0, 0.5, 0.05, 1.0]) + 1.0
    b = torch.randn(21, 6, generator=gen) * torch.tensor([1.0, 2.0, 0.0, 0.5, 0.05, 1.0]) + 1.0
    a[:, 5] = b[:, 5] = 2.5  # dims 2 and 5 are constant; dim 4 has variance ≈ 0.0025 < threshold 0.01
    return a, b


def test_latent_stats_match_torch_over_the_concatenated_updates():
    a, b = _latents()
    stats = LatentStats(threshold=0.01)
    stats.update(a)
    stats.update(b)
    out = stats.compute()
    allmu = torch.cat([a, b]).double()
    std = allmu.std(dim=0)  # unbiased, as torch.std
    assert out["std_mean"] == pytest.approx(std.mean().item(), rel=1e-4, abs=1e-6)
    assert out["std_min"] == pytest.approx(std.min().item(), abs=1e-3)
    assert out["std_max"] == pytest.approx(std.max().item(), rel=1e-4)
    assert out["norm_mean"] == pytest.approx(allmu.norm(dim=1).mean().item(), rel=1e-5)
    assert out["active_units"] == 3.0  # dims 0, 1, 3; not the constant dims 2, 5 nor the tiny dim 4
    assert out["active_units"] == float((allmu.var(dim=0) > 0.01).sum())


def test_latent_stats_effective_rank_sees_a_collapse_that_active_units_miss():
    gen = torch.Generator().manual_seed(0)
    a, b = _latents()
    stats = LatentStats()
    stats.update(a)
    stats.update(b)
    cov = torch.cov(torch.cat([a, b]).double().T)
    p = torch.linalg.eigvalsh(cov).clamp(min=0)
    p = p / p.sum()
    want = torch.exp(-(p[p > 0] * p[p > 0].log()).sum()).item()
    assert stats.compute()["effective_rank"] == pytest.approx(want, rel=1e-4)
    line = torch.randn(500, 1, generator=gen) * torch.randn(1, 8, generator=gen) + 3.0  # μ on one line
    line = (line - line.mean(0)) / line.std(0)  # standardised per dimension, as a batch-norm encoder does
    stats.update(line)
    out = stats.compute()
    assert out["active_units"] == 8.0 and out["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    stats.update(torch.randn(4000, 8, generator=gen))  # isotropic: the rank is nearly d
    assert stats.compute()["effective_rank"] > 7.9
    wide = LatentStats()
    wide.max_rank_dim = 4
    wide.update(a)
    out = wide.compute()
    assert "effective_rank" not in out and out["active_units"] == float((a.var(0) > 0.01).sum())


def test_latent_stats_threshold_controls_active_units():
    a, b = _latents()
    stats = LatentStats(threshold=1e-4)
    stats.update(torch.cat([a, b]))
    assert stats.compute()["active_units"] == 4.0  # now the small dim 4 counts too


def test_latent_stats_reset_after_compute_and_empty():
    stats = LatentStats()
    assert stats.compute() == {}
    stats.update(torch.randn(4, 3))
    assert stats.compute() != {}
    assert stats.compute() == {}


def test_latent_stats_reduce_is_applied_to_the_sums():
    # reduce stands for an all-reduce over ranks: two identical ranks = the data seen twice
    a, _ = _latents()
    stats = LatentStats()
    stats.update(a)
    out = stats.compute(reduce=lambda s: s + s)
    twice = torch.cat([a, a]).double()
    assert out["std_mean"] == pytest.approx(twice.std(dim=0).mean().item(), rel=1e-4)
    assert out["norm_mean"] == pytest.approx(twice.norm(dim=1).mean().item(), rel=1e-5)


def test_latent_stats_detach_and_flatten():
    mu = torch.randn(5, 2, 3, requires_grad=True)
    stats = LatentStats()
    stats.update(mu)
    out = stats.compute()
    flat = mu.detach().flatten(1).double()
    assert out["std_mean"] == pytest.approx(flat.std(0).mean().item(), rel=1e-4)
    assert out["norm_mean"] == pytest.approx(flat.norm(dim=1).mean().item(), rel=1e-5)


def test_latent_stats_one_dimensional_latent():
    # latent_dim = 1 is a valid latent; update must not index past the single column.
    mu = torch.tensor([[1.0], [2.0], [4.0]])
    stats = LatentStats()
    stats.update(mu)
    out = stats.compute()
    assert out["std_mean"] == pytest.approx(mu.std().item(), rel=1e-5)
    assert out["norm_mean"] == pytest.approx(7 / 3, rel=1e-6)
    assert out["active_units"] == 1.0


def test_latent_fd_is_near_zero_for_one_distribution_and_the_analytic_distance_for_two():
    """N(0, I) against N(m, s² I) in d dimensions: ‖m‖² + d (1 − s)² (Gaussian fits of 20,000 draws)."""
    g = torch.Generator().manual_seed(0)
    d, n = 8, 20_000
    a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    assert latent_fd(a, b) < 0.01
    shifted = 0.5 + 2.0 * torch.randn(n, d, generator=g)
    assert latent_fd(a, shifted) == pytest.approx(d * 0.25 + d * 1.0, rel=0.02)
    with pytest.raises(ValueError, match="at least 2 latents per set"):
        latent_fd(a[:1], b)
