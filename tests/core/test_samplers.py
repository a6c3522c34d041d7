"""Samplers over the latent chain (method.md §4): DDPM ancestral, DDIM, DDIM inversion, guidance.

The reference equations are implemented here, independently of the library:
* DDPM: Ho et al. 2020, Alg. 2, x_{t−1} = (x_t − β_t/√(1−ᾱ_t) ε) / √α_t + σ_t z with σ_t² = β̃_t;
* DDIM: Song et al. 2021, Eq. 12 with σ_t(η) of Eq. 16,
  x_prev = √ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ²) ε + σ z, x̂0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t;
* guidance (Dhariwal & Nichol 2021, Eq. 14): ε ← ε − √(1 − ᾱ_t) · s · ∇ log p(y | x_t).
The schedule coefficients are Python floats computed from β, not read from the library's buffers.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from diled_core.samplers import ddim_invert, ddim_sample, ddim_timesteps, ddpm_sample
from diled_core.schedule import NoiseSchedule

T = 10
BETA = 0.1  # a noisier constant schedule than the paper's, so the T = 10 chain does something
D = 3
DT = torch.float64


# --- hand schedule -----------------------------------------------------------------------------------
def hand(T: int, beta: float) -> tuple[list[float], list[float], list[float]]:
    """β_t, α_t, ᾱ_t for t = 0 … T (index 0 = no noise), as Python floats."""
    betas = [0.0] + [beta] * T
    alphas = [1 - b for b in betas]
    abar = [1.0]
    for a in alphas[1:]:
        abar.append(abar[-1] * a)
    return betas, alphas, abar


BETAS, ALPHAS, ABAR = hand(T, BETA)


def sched() -> NoiseSchedule:
    return NoiseSchedule("constant", T, beta=BETA)


# --- analytic models ------------------------------------------------------------------------------------
def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth, time-dependent, non-linear ε model written in closed form."""
    assert t.dtype == torch.long and t.shape == (x.shape[0],)
    return 0.3 * torch.tanh(x) * (t.to(x.dtype) / T)[:, None] + 0.05 * x


class Recorder:
    """Wraps an ε model and records the timesteps it is called with."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, x, t):
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        assert torch.all(t == t[0])
        self.calls.append(int(t[0]))
        return self.fn(x, t)


G = torch.tensor([0.5, -1.0, 2.0], dtype=DT)  # a constant guidance gradient


def const_guidance(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return G.to(x.dtype).expand_as(x)


# --- reference samplers (independent of the library) ---------------------------------------------------
def ref_ddpm(eps_fn, x, gen, betas=BETAS, alphas=ALPHAS, abar=ABAR, guidance=None, scale=1.0):
    Tn = len(betas) - 1
    for t in range(Tn, 1, -1):
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        eps = eps_fn(x, tt)
        if guidance is not None:
            eps = eps - math.sqrt(1 - abar[t]) * scale * guidance(x, tt)
        var = betas[t] * (1 - abar[t - 1]) / (1 - abar[t])  # β̃_t
        z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        x = (x - betas[t] / math.sqrt(1 - abar[t]) * eps) / math.sqrt(alphas[t]) + math.sqrt(var) * z
    return x


def ref_ddim(eps_fn, x, grid, eta, gen, abar=ABAR, guidance=None, scale=1.0):
    for t, tp in zip(grid, grid[1:] + [1]):
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        eps = eps_fn(x, tt)
        if guidance is not None:
            eps = eps - math.sqrt(1 - abar[t]) * scale * guidance(x, tt)
        x0 = (x - math.sqrt(1 - abar[t]) * eps) / math.sqrt(abar[t])
        sigma = eta * math.sqrt((1 - abar[tp]) / (1 - abar[t])) * math.sqrt(1 - abar[t] / abar[tp])
        x = math.sqrt(abar[tp]) * x0 + math.sqrt(1 - abar[tp] - sigma**2) * eps
        if eta > 0:
            x = x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x


def x_T(seed: int = 0, batch: int = 5, dtype=DT) -> torch.Tensor:
    return torch.randn(batch, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the shared sampler contract (diffusers style: one class, parameterised per sampler) -------------------
# name: (library call, reference call (eps, x, gen, guidance, scale), grid of ε evaluations, stochastic)
SAMPLERS = {
    "ddpm": (
        ddpm_sample,
        lambda e, x, g, gd, s: ref_ddpm(e, x, g, guidance=gd, scale=s),
        list(range(T, 1, -1)),
        True,
    ),
    "ddim_eta0_4steps": (
        partial(ddim_sample, steps=4, eta=0.0),
        lambda e, x, g, gd, s: ref_ddim(e, x, [10, 7, 5, 2], 0.0, g, guidance=gd, scale=s),
        [10, 7, 5, 2],
        False,
    ),
    "ddim_eta0_full": (
        partial(ddim_sample, steps=T - 1, eta=0.0),
        lambda e, x, g, gd, s: ref_ddim(e, x, list(range(T, 1, -1)), 0.0, g, guidance=gd, scale=s),
        list(range(T, 1, -1)),
        False,
    ),
    "ddim_eta0.5_3steps": (
        partial(ddim_sample, steps=3, eta=0.5),
        lambda e, x, g, gd, s: ref_ddim(e, x, [10, 6, 2], 0.5, g, guidance=gd, scale=s),
        [10, 6, 2],
        True,
    ),
    "ddim_eta1_full": (
        partial(ddim_sample, steps=T - 1, eta=1.0),
        lambda e, x, g, gd, s: ref_ddim(e, x, list(range(T, 1, -1)), 1.0, g, guidance=gd, scale=s),
        list(range(T, 1, -1)),
        True,
    ),
}


@pytest.fixture(params=list(SAMPLERS), ids=list(SAMPLERS))
def sampler(request):
    return SAMPLERS[request.param]


class TestSamplerContract:
    def test_shape_dtype_and_input_untouched(self, sampler):
        sample = sampler[0]
        for dtype in (torch.float32, torch.float64):
            x = x_T(dtype=dtype)
            before = x.clone()
            out = sample(eps_model, sched(), x, generator=gen(1))
            assert out.shape == x.shape and out.dtype == dtype
            assert torch.equal(x, before)
            assert torch.isfinite(out).all()

    def test_eps_model_is_called_once_per_grid_timestep_descending(self, sampler):
        sample, _, grid, _ = sampler
        rec = Recorder(eps_model)
        sample(rec, sched(), x_T(), generator=gen(1))
        assert rec.calls == grid

    def test_matches_the_reference_equations(self, sampler):
        sample, ref, _, _ = sampler
        out = sample(eps_model, sched(), x_T(), generator=gen(3))
        expected = ref(eps_model, x_T(), gen(3), None, 1.0)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)

    def test_same_seed_same_output(self, sampler):
        sample = sampler[0]
        a = sample(eps_model, sched(), x_T(), generator=gen(11))
        b = sample(eps_model, sched(), x_T(), generator=gen(11))
        assert torch.equal(a, b)

    def test_different_seed_differs_iff_stochastic(self, sampler):
        sample, _, _, stochastic = sampler
        a = sample(eps_model, sched(), x_T(), generator=gen(11))
        b = sample(eps_model, sched(), x_T(), generator=gen(12))
        c = sample(eps_model, sched(), x_T(), generator=None)
        if stochastic:
            assert (a - b).abs().max() > 1e-3
        else:  # η = 0: the generator is ignored, and not even advanced
            g = gen(11)
            state = g.get_state()
            d = sample(eps_model, sched(), x_T(), generator=g)
            assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(a, d)
            assert torch.equal(g.get_state(), state)

    def test_output_does_not_require_grad(self, sampler):
        net = torch.nn.Linear(D, D).double()
        out = sampler[0](lambda x, t: net(x), sched(), x_T(), generator=gen(0))
        assert not out.requires_grad

    def test_guidance_scale_zero_is_no_guidance(self, sampler):
        sample = sampler[0]
        plain = sample(eps_model, sched(), x_T(), generator=gen(5))
        zero = sample(
            eps_model, sched(), x_T(), generator=gen(5), guidance=const_guidance, guidance_scale=0.0
        )
        torch.testing.assert_close(zero, plain, rtol=0, atol=1e-12)

    def test_constant_guidance_matches_the_reference(self, sampler):
        sample, ref, grid, _ = sampler
        rec = Recorder(const_guidance)
        out = sample(eps_model, sched(), x_T(), generator=gen(5), guidance=rec, guidance_scale=1.5)
        expected = ref(eps_model, x_T(), gen(5), const_guidance, 1.5)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert rec.calls == grid  # the guidance sees (x_t, t) at every evaluated timestep
        plain = sample(eps_model, sched(), x_T(), generator=gen(5))
        assert (out - plain).abs().max() > 1e-2  # and it actually moves the sample

    def test_autograd_guidance_works_inside_inference_mode(self, sampler):
        """Lightning's predict runs in inference mode; ∇ log p(y | x_t) must still be computable."""
        sample = sampler[0]
        target = torch.tensor([1.0, -2.0, 0.5], dtype=DT)

        def grad_log_p(x, t):  # log p(y | x_t) = −‖x_t − target‖² / 2, by autograd
            assert x.requires_grad
            logp = -0.5 * ((x - target) ** 2).sum()
            return torch.autograd.grad(logp, x)[0]

        def analytic(x, t):
            return target - x

        with torch.inference_mode():
            out = sample(eps_model, sched(), x_T(), generator=gen(9), guidance=grad_log_p, guidance_scale=0.7)
        expected = sample(eps_model, sched(), x_T(), generator=gen(9), guidance=analytic, guidance_scale=0.7)
        torch.testing.assert_close(out.clone(), expected, rtol=1e-10, atol=1e-10)


# --- DDIM η = 1 on the full grid is DDPM ancestral ------------------------------------------------------
@pytest.mark.parametrize("Tn, beta", [(10, 0.1), (50, 0.008)])
def test_ddim_eta1_full_grid_equals_ddpm_with_the_same_seed(Tn, beta):
    s = NoiseSchedule("constant", Tn, beta=beta)
    x = x_T(4, batch=8)
    ddpm = ddpm_sample(eps_model, s, x, generator=gen(21))
    ddim = ddim_sample(eps_model, s, x, steps=Tn - 1, eta=1.0, generator=gen(21))
    torch.testing.assert_close(ddim, ddpm, rtol=1e-5, atol=1e-5)
    assert (ddim - ddim_sample(eps_model, s, x, steps=Tn - 1, eta=1.0, generator=gen(22))).abs().max() > 1e-3


# --- one guided step by hand (T = 2: a single step x_2 -> x_1) -------------------------------------------
def test_one_guided_ddim_step_by_hand():
    s_, scale = NoiseSchedule("constant", 2, beta=0.2), 2.0
    abar1, abar2 = 0.8, 0.64  # ᾱ_1 = 0.8, ᾱ_2 = 0.8²
    x = torch.tensor([[1.0, -0.5, 2.0]], dtype=DT)

    def lin_eps(x, t):
        return 0.1 * x

    out = ddim_sample(lin_eps, s_, x, steps=1, eta=0.0, guidance=const_guidance, guidance_scale=scale)
    expected = []
    for xi, gi in zip(x[0].tolist(), G.tolist()):
        e = 0.1 * xi - math.sqrt(1 - abar2) * scale * gi  # ε − √(1 − ᾱ_2) s g  (√0.36 = 0.6)
        x0 = (xi - math.sqrt(1 - abar2) * e) / math.sqrt(abar2)
        expected.append(math.sqrt(abar1) * x0 + math.sqrt(1 - abar1) * e)
    torch.testing.assert_close(out, torch.tensor([expected], dtype=DT), rtol=1e-6, atol=1e-7)
    # the same step with the shift written as a number: ε' = 0.1 x − 1.2 g
    unguided = ddim_sample(lambda x, t: 0.1 * x - 1.2 * G, s_, x, steps=1, eta=0.0)
    torch.testing.assert_close(out, unguided, rtol=1e-6, atol=1e-7)


def test_one_guided_ddpm_step_by_hand():
    s_, scale = NoiseSchedule("constant", 2, beta=0.2), 2.0
    beta2, abar1, abar2 = 0.2, 0.8, 0.64
    x = torch.tensor([[1.0, -0.5, 2.0]], dtype=DT)
    out = ddpm_sample(
        lambda x, t: 0.1 * x, s_, x, generator=gen(3), guidance=const_guidance, guidance_scale=scale
    )
    z = torch.randn(1, 3, generator=gen(3), dtype=DT)[0].tolist()
    var = beta2 * (1 - abar1) / (1 - abar2)
    expected = [
        (xi - beta2 / math.sqrt(1 - abar2) * (0.1 * xi - 0.6 * scale * gi)) / math.sqrt(1 - beta2)
        + math.sqrt(var) * zi
        for xi, gi, zi in zip(x[0].tolist(), G.tolist(), z)
    ]
    torch.testing.assert_close(out, torch.tensor([expected], dtype=DT), rtol=1e-6, atol=1e-7)


# --- argument checks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("eta", [-0.1, 1.01, 2.0])
def test_eta_outside_0_1_raises(eta):
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(eps_model, sched(), x_T(), steps=3, eta=eta)


@pytest.mark.parametrize("steps", [0, -1, T, T + 5])
def test_bad_step_counts_raise_in_the_samplers(steps):
    with pytest.raises(ValueError, match="steps"):
        ddim_sample(eps_model, sched(), x_T(), steps=steps)
    with pytest.raises(ValueError, match="steps"):
        ddim_invert(eps_model, sched(), x_T(), steps=steps)


# --- ddim_timesteps ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "Tn, steps, expected",
    [
        (10, 9, [10, 9, 8, 7, 6, 5, 4, 3, 2]),
        (10, 4, [10, 7, 5, 2]),  # linspace(2, 10, 4) = 2, 4.67, 7.33, 10
        (10, 3, [10, 6, 2]),
        (10, 2, [10, 2]),
        (2, 1, [2]),
        (3, 2, [3, 2]),
    ],
)
def test_ddim_timesteps_by_hand(Tn, steps, expected):
    assert ddim_timesteps(Tn, steps) == expected


@pytest.mark.parametrize(
    "Tn, steps",
    [(Tn, k) for Tn in (3, 10, 100, 1000) for k in (2, 3, 7, 20, 50, 200, 999) if k <= Tn - 1],
)
def test_ddim_timesteps_properties(Tn, steps):
    grid = ddim_timesteps(Tn, steps)
    assert len(grid) == steps  # as many ε evaluations as asked for
    assert len(set(grid)) == len(grid)
    assert all(a > b for a, b in zip(grid, grid[1:]))  # strictly descending
    assert grid[0] == Tn and grid[-1] == 2
    assert all(isinstance(t, int) for t in grid)


@pytest.mark.parametrize("Tn", [2, 10, 1000])
def test_ddim_timesteps_single_step_starts_at_T(Tn):
    # One DDIM step must go from x_T to x_1, so ε_θ is evaluated at t = T (the docstring: "descending
    # from T"); evaluating at t = 2 would treat pure noise x_T as if it were x_2.
    assert ddim_timesteps(Tn, 1) == [Tn]


@pytest.mark.parametrize("Tn, steps", [(1000, 0), (1000, 1000), (1000, -3), (2, 2), (10, 11)])
def test_ddim_timesteps_bad_step_counts_raise(Tn, steps):
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(Tn, steps)


# --- the chain ends are x_T and x_1: with ε ≡ 0 a DDIM step is x_prev = √(ᾱ_prev / ᾱ_t) x_t, so the whole
# chain is a pure rescaling by √(ᾱ_end / ᾱ_start) whatever the grid ------------------------------------
@pytest.mark.parametrize("steps", [1, 2, 7, 50, 999])
def test_ddim_invert_with_zero_eps_goes_from_1_to_T(steps):
    s_ = NoiseSchedule("constant", 1000)  # ᾱ_t = 0.992^t
    x = x_T(2)
    inverted = ddim_invert(lambda x, t: torch.zeros_like(x), s_, x, steps=steps)
    torch.testing.assert_close(inverted, math.sqrt(0.992**1000 / 0.992) * x, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 7, 50, 999])
def test_ddim_sample_with_zero_eps_goes_from_T_to_1(steps):
    s_ = NoiseSchedule("constant", 1000)
    x = x_T(2)
    sampled = ddim_sample(lambda x, t: torch.zeros_like(x), s_, x, steps=steps, eta=0.0)
    torch.testing.assert_close(sampled, math.sqrt(0.992 / 0.992**1000) * x, rtol=1e-5, atol=1e-12)


# --- DDIM inversion round trip (method.md §4: close to exact with enough steps) ---------------------------
T_PAPER, BETA_PAPER = 1000, 0.008
ABAR_PAPER = torch.tensor([(1 - BETA_PAPER) ** t for t in range(T_PAPER + 1)], dtype=DT)
M, S = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=DT), 0.7


def optimal_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[ε | x_t] for data μ ~ N(m, s² I): (x_t − √ᾱ_t m) √(1−ᾱ_t) / (ᾱ_t s² + 1 − ᾱ_t)."""
    a = ABAR_PAPER[t][:, None]
    return (x - a.sqrt() * M) * (1 - a).sqrt() / (a * S**2 + 1 - a)


def _x1(batch: int = 256) -> torch.Tensor:
    g = gen(0)
    mu = M + S * torch.randn(batch, 4, generator=g, dtype=DT)
    eps = torch.randn(batch, 4, generator=g, dtype=DT)
    return ABAR_PAPER[1].sqrt() * mu + (1 - ABAR_PAPER[1]).sqrt() * eps


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_ddim_inversion_round_trip_gaussian_optimal_eps():
    s_ = NoiseSchedule("constant", T_PAPER, beta=BETA_PAPER)
    x1 = _x1()
    err = {}
    for k in (20, 200, 999):
        back = ddim_sample(optimal_eps, s_, ddim_invert(optimal_eps, s_, x1, steps=k), steps=k, eta=0.0)
        err[k] = _rel(back, x1)
    assert err[200] < err[20] / 4  # first order: ~1/k
    assert err[999] < err[200] / 2
    assert err[200] < 0.05 and err[999] < 0.015


def test_ddim_inversion_lands_on_the_exact_ode_solution():
    # For Gaussian data the DDIM ODE keeps (x_t − √ᾱ_t m) / √(ᾱ_t s² + 1 − ᾱ_t) constant, so the exact
    # inverse of x_1 is x_T = √ᾱ_T m + √(ᾱ_T s² + 1 − ᾱ_T) · (x_1 − √ᾱ_1 m) / √(ᾱ_1 s² + 1 − ᾱ_1).
    s_ = NoiseSchedule("constant", T_PAPER, beta=BETA_PAPER)
    x1 = _x1()
    a1, aT = ABAR_PAPER[1], ABAR_PAPER[T_PAPER]
    exact = aT.sqrt() * M + (aT * S**2 + 1 - aT).sqrt() * (x1 - a1.sqrt() * M) / (a1 * S**2 + 1 - a1).sqrt()
    e20 = _rel(ddim_invert(optimal_eps, s_, x1, steps=20), exact)
    e200 = _rel(ddim_invert(optimal_eps, s_, x1, steps=200), exact)
    assert e200 < e20 / 4 and e200 < 0.05


def test_ddim_inversion_round_trip_random_tanh_mlp():
    s_ = NoiseSchedule("constant", T_PAPER, beta=BETA_PAPER)
    g = gen(0)
    w1 = 0.1 * torch.randn(4, 16, generator=g, dtype=DT)
    w_t = 0.1 * torch.randn(16, generator=g, dtype=DT)
    w2 = 0.1 * torch.randn(16, 4, generator=g, dtype=DT)

    def mlp(x, t):  # a fixed random 4 -> 16 -> 4 tanh MLP with the time t/T as an extra input
        # (products written as broadcast-and-sum: no BLAS call, which can stall on a busy machine)
        h = torch.tanh((x[:, :, None] * w1).sum(1) + (t.to(x.dtype) / T_PAPER)[:, None] * w_t)
        return (h[:, :, None] * w2).sum(1)

    x1 = _x1(batch=32)
    err = {k: _rel(ddim_sample(mlp, s_, ddim_invert(mlp, s_, x1, steps=k), steps=k), x1) for k in (20, 200)}
    assert err[200] < err[20] / 4 and err[200] < 0.02


def test_ddim_invert_evaluates_eps_only_at_trained_timesteps():
    rec = Recorder(eps_model)
    ddim_invert(rec, sched(), x_T(), steps=4)
    # x_1 -> x_2 -> x_5 -> x_7 -> x_10: ε at the start of each step, except at x_1 (t = 1 is the
    # decoder's step, never trained), where it is taken at the step's target t = 2
    assert rec.calls == [2, 2, 5, 7]


def test_ddim_to_x0_and_inversion_from_x0_use_the_whole_chain():
    rec = Recorder(eps_model)
    ddim_sample(rec, sched(), x_T(), steps=10, end=0)
    assert rec.calls == list(range(10, 0, -1))
    rec = Recorder(eps_model)
    ddim_invert(rec, sched(), x_T(), steps=10, start=0)
    assert rec.calls == [1] + list(range(1, 10))


@pytest.mark.parametrize("name", ["ddpm", "ddim", "ddim_to_x0", "invert_from_x0"])
def test_a_bf16_start_runs_the_chain_in_fp32(name: str) -> None:
    """A bf16 x (an encoder's latent under autocast) on a 1000-step linear schedule: in bf16, 1 − ᾱ_t
    rounds to 0 at small t and DDIM divides by it. The chain runs in fp32 and matches the fp32 run."""
    schedule = NoiseSchedule("linear", 1000)
    x = torch.randn(4, D, generator=gen(0)).bfloat16()
    run = {
        "ddpm": lambda x: ddpm_sample(eps_model, schedule, x, generator=gen(1)),
        "ddim": lambda x: ddim_sample(eps_model, schedule, x, steps=20),
        "ddim_to_x0": lambda x: ddim_sample(eps_model, schedule, x, steps=20, end=0),
        "invert_from_x0": lambda x: ddim_invert(eps_model, schedule, x, steps=20, start=0),
    }[name]
    out = run(x)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    torch.testing.assert_close(out, run(x.float()))
