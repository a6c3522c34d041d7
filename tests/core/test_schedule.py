"""Noise schedules (method.md §2) and the KL weights λ_t (method.md §3).

Every expected value is recomputed here from the formulas with Python floats (float64), never taken
from the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
from diled_core.schedule import NoiseSchedule, make_betas

KINDS = ["constant", "linear", "cosine"]
BUFFERS = [
    "betas",
    "alphas",
    "alphas_cumprod",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "posterior_variance",
    "lambdas",
]


# --- the schedules written out by hand (β_1 … β_T as Python floats) ------------------------------
def hand_betas(kind: str, T: int, beta: float = 0.008, beta_start: float = 1e-4, beta_end: float = 0.02):
    if kind == "constant":
        return [beta] * T
    if kind == "linear":
        lo, hi = 1000.0 / T * beta_start, min(1000.0 / T * beta_end, 0.999)
        return [lo + (hi - lo) * i / (T - 1) for i in range(T)]
    if kind == "cosine":  # Nichol & Dhariwal 2021, Eq. 17 with s = 0.008, β clipped at 0.999
        s = 0.008

        def f(t):
            return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

        return [min(1 - f(t) / f(t - 1), 0.999) for t in range(1, T + 1)]
    raise AssertionError(kind)


def hand_abar(betas: list[float], t: int) -> float:
    """ᾱ_t = ∏_{s=1..t} (1 − β_s), with ᾱ_0 = 1."""
    return math.prod(1.0 - b for b in betas[:t])


def hand_lambda(betas: list[float], t: int) -> float:
    """λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t)) with σ_t² = β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)."""
    b = betas[t - 1]
    abar, abar_prev = hand_abar(betas, t), hand_abar(betas, t - 1)
    sigma2 = b * (1 - abar_prev) / (1 - abar)
    return b**2 / (2 * sigma2 * (1 - b) * (1 - abar))


# --- shapes and the index-0 convention ------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [2, 10, 1000])
def test_buffers_have_length_T_plus_one_and_index_zero_is_noise_free(kind, T):
    sched = NoiseSchedule(kind, T)
    for name in BUFFERS:
        assert getattr(sched, name).shape == (T + 1,), name
    assert sched.betas[0].item() == 0.0
    assert sched.alphas[0].item() == 1.0
    assert sched.alphas_cumprod[0].item() == 1.0
    assert sched.sqrt_alphas_cumprod[0].item() == 1.0
    assert sched.sqrt_one_minus_alphas_cumprod[0].item() == 0.0
    assert sched.lambdas[0].item() == 0.0 and sched.lambdas[1].item() == 0.0
    assert sched.timesteps == T


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [10, 1000])
def test_betas_match_the_published_formulas(kind, T):
    expected = torch.tensor(hand_betas(kind, T), dtype=torch.float64)
    torch.testing.assert_close(make_betas(kind, T), expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(NoiseSchedule(kind, T).betas[1:].double(), expected, rtol=1e-6, atol=1e-9)


def test_constant_schedule_is_the_paper_default():
    sched = NoiseSchedule()
    assert sched.kind == "constant" and sched.timesteps == 1000
    assert torch.all(sched.betas[1:] == torch.tensor(0.008, dtype=torch.float32))
    # ᾱ_t = 0.992^t
    for t in [1, 2, 500, 1000]:
        assert sched.alphas_cumprod[t].item() == pytest.approx(0.992**t, rel=1e-5)


def test_linear_schedule_endpoints_at_T_1000_are_ddpm():
    betas = NoiseSchedule("linear", 1000).betas
    assert betas[1].item() == pytest.approx(1e-4, rel=1e-5)
    assert betas[1000].item() == pytest.approx(0.02, rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [10, 1000])
def test_alphas_cumprod_is_the_product_of_alphas(kind, T):
    sched = NoiseSchedule(kind, T)
    betas = hand_betas(kind, T)
    for t in sorted({1, 2, 3, T // 2, T - 1, T}):
        assert sched.alphas[t].item() == pytest.approx(1 - betas[t - 1], rel=1e-6)
        abar = hand_abar(betas, t)
        assert sched.alphas_cumprod[t].item() == pytest.approx(abar, rel=1e-5, abs=1e-12)
        assert sched.sqrt_alphas_cumprod[t].item() == pytest.approx(math.sqrt(abar), rel=1e-5, abs=1e-12)
        assert sched.sqrt_one_minus_alphas_cumprod[t].item() == pytest.approx(math.sqrt(1 - abar), rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [2, 10, 1000])
def test_alphas_cumprod_is_strictly_decreasing_in_0_1(kind, T):
    abar = NoiseSchedule(kind, T).alphas_cumprod.double()
    assert torch.all(abar[1:] < abar[:-1])
    assert torch.all(abar[1:] > 0) and torch.all(abar <= 1)
    betas = NoiseSchedule(kind, T).betas[1:]
    assert torch.all(betas > 0) and torch.all(betas < 1)


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_variance_by_hand(kind):
    T = 10
    sched, betas = NoiseSchedule(kind, T), hand_betas(kind, T)
    assert sched.posterior_variance[1].item() == pytest.approx(betas[0], rel=1e-6)
    for t in [2, 5, T]:
        expected = betas[t - 1] * (1 - hand_abar(betas, t - 1)) / (1 - hand_abar(betas, t))
        assert sched.posterior_variance[t].item() == pytest.approx(expected, rel=1e-5)


# --- λ_t (method.md §3) -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [10, 1000])
def test_lambdas_by_hand_at_t2_and_tT(kind, T):
    sched, betas = NoiseSchedule(kind, T), hand_betas(kind, T)
    for t in [2, T]:
        assert sched.lambdas[t].item() == pytest.approx(hand_lambda(betas, t), rel=1e-5), t
    assert sched.lambdas[0].item() == 0.0 and sched.lambdas[1].item() == 0.0


def test_lambda_2_of_the_constant_schedule_is_one_over_two_alpha():
    # With β̃_2 = β (1 − ᾱ_1)/(1 − ᾱ_2) and 1 − ᾱ_1 = β, λ_2 = β² / (2 β̃_2 α (1 − ᾱ_2)) = 1 / (2 α).
    lam = NoiseSchedule("constant", 1000, beta=0.008).lambdas
    assert lam[2].item() == pytest.approx(1 / (2 * 0.992), rel=1e-6)
    assert lam[2].item() == pytest.approx(0.50403226, rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_lambdas_equal_the_simplified_kl_weight_everywhere(kind):
    # Substituting σ_t² = β̃_t: λ_t = β_t / (2 α_t (1 − ᾱ_{t−1})) for t ≥ 2, an independent closed form.
    T = 50
    betas = torch.tensor(hand_betas(kind, T), dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)  # abar[i] = ᾱ_{i+1}
    t = torch.arange(2, T + 1)
    expected = betas[t - 1] / (2 * (1 - betas[t - 1]) * (1 - abar[t - 2]))
    torch.testing.assert_close(NoiseSchedule(kind, T).lambdas[2:].double(), expected, rtol=2e-5, atol=0)


# --- buffers: dtype, persistence, device / dtype moves ------------------------------------------------
def test_buffers_are_float32_and_not_in_the_state_dict():
    sched = NoiseSchedule("cosine", 20)
    names = {n for n, _ in sched.named_buffers()}
    assert names == set(BUFFERS)
    for _, buf in sched.named_buffers():
        assert buf.dtype == torch.float32
    assert sched.state_dict() == {}
    # …so a checkpoint of a parent module carries no schedule tensors
    parent = torch.nn.Module()
    parent.schedule = sched
    assert not any(k.startswith("schedule.") for k in parent.state_dict())


def test_buffers_follow_to_dtype():
    sched = NoiseSchedule("linear", 20).to(torch.float64)
    for name in BUFFERS:
        assert getattr(sched, name).dtype == torch.float64, name
    assert sched.alphas_cumprod[20].item() == pytest.approx(hand_abar(hand_betas("linear", 20), 20), rel=1e-5)


def test_buffers_follow_to_device():
    sched = NoiseSchedule("constant", 20).to("meta")
    for name in BUFFERS:
        assert getattr(sched, name).device.type == "meta", name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_buffers_follow_to_cuda():
    sched = NoiseSchedule("constant", 20).to("cuda")
    for name in BUFFERS:
        assert getattr(sched, name).is_cuda, name


def test_gather_broadcasts_and_casts():
    sched = NoiseSchedule("constant", 10)
    like = torch.zeros(3, 4, 5, dtype=torch.float64)
    out = NoiseSchedule.gather(sched.alphas_cumprod, torch.tensor([0, 1, 10]), like)
    assert out.shape == (3, 1, 1) and out.dtype == torch.float64
    expected = torch.tensor([1.0, 0.992, 0.992**10], dtype=torch.float64).reshape(3, 1, 1)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=0)


# --- bad inputs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 0, -3])
def test_too_few_timesteps_raise(kind, T):
    with pytest.raises(ValueError, match="timesteps"):
        NoiseSchedule(kind, T)
    with pytest.raises(ValueError, match="timesteps"):
        make_betas(kind, T)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="unknown schedule"):
        NoiseSchedule("quadratic", 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.1, 1.5])
def test_constant_beta_out_of_range_raises(beta):
    with pytest.raises(ValueError, match="beta"):
        NoiseSchedule("constant", 10, beta=beta)


@pytest.mark.parametrize(
    "beta_start, beta_end",
    [(-1e-3, 0.02), (0.0, 0.02)],
    ids=["negative_start", "zero_start"],
)
def test_linear_beta_out_of_range_raises(beta_start, beta_end):
    # β_t ≤ 0 gives α_t ≥ 1, ᾱ_t ≥ 1 and NaN in sqrt(1 − ᾱ_t): it must be refused like a bad constant β.
    with pytest.raises(ValueError, match="beta"):
        NoiseSchedule("linear", 1000, beta_start=beta_start, beta_end=beta_end)
