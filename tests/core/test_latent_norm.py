"""The latent standardisation every modality's encoder ends with (method.md §3, latent collapse)."""

from __future__ import annotations

import pytest
import torch
from diled_core import LatentNorm, latent_norm
from diled_core.latent_norm import GroupWhiten
from diled_core.runs import state_dict_mismatch
from torch import nn


def test_batch_standardises_each_dimension_and_keeps_the_gradient_through_the_statistics():
    torch.manual_seed(0)
    raw = (0.01 * torch.randn(16, 4) + 3.0).requires_grad_()  # small and off-centre, as a shrunk μ
    mu = LatentNorm(4)(raw)
    torch.testing.assert_close(mu.mean(0), torch.zeros(4), atol=1e-4, rtol=0)  # float32: offset 3 / std 0.01
    torch.testing.assert_close(mu.var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    # scaling the raw latent cannot shrink the standardised one: its spread is no longer the encoder's
    torch.testing.assert_close(LatentNorm(4)(0.1 * raw), mu, atol=1e-3, rtol=0)
    mu[:, 0].square().sum().backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0


def test_eval_mode_uses_running_statistics_so_encoding_is_per_example():
    torch.manual_seed(0)
    norm = LatentNorm(3)
    for _ in range(50):
        norm(2.0 + 0.5 * torch.randn(64, 3))
    norm.eval()
    x = 2.0 + 0.5 * torch.randn(5, 3)
    torch.testing.assert_close(norm(x)[:1], norm(x[:1]))
    torch.testing.assert_close(norm(x), (x - 2.0) / 0.5, atol=0.15, rtol=0)


def test_a_training_batch_of_one_uses_the_running_statistics():
    norm = LatentNorm(2)
    x = torch.tensor([[3.0, -1.0]])
    torch.testing.assert_close(norm(x), x)  # fresh running stats: mean 0, var 1


def _correlated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """n examples of d dimensions that share most of their variance, off-centre, as a collapsing μ."""
    g = torch.Generator().manual_seed(seed)
    line = torch.randn(n, 1, generator=g) * (1.0 + 0.2 * torch.randn(1, d, generator=g))
    return 3.0 + line + 0.2 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("d", [8, 30, 32])
def test_whiten_gives_each_group_zero_mean_and_identity_covariance(d):
    raw = _correlated(64, d).requires_grad_()
    norm = GroupWhiten(d)
    assert norm.sizes == {8: [8], 30: [16, 14], 32: [16, 16]}[d]
    mu = norm(raw)
    torch.testing.assert_close(mu.mean(0), torch.zeros(d), atol=1e-4, rtol=0)
    cov, start = torch.cov(mu.T), 0
    for n in norm.sizes:
        torch.testing.assert_close(cov[start : start + n, start : start + n], torch.eye(n), atol=1e-3, rtol=0)
        start += n
    # the batch standardisation leaves the one shared signal: every pair of dimensions correlated
    standardised = torch.corrcoef(LatentNorm(d)(raw).T)
    assert standardised[0, 1:].abs().min() > 0.9 and cov[0, 1 : min(d, 16)].abs().max() < 1e-3
    mu[:, 0].sum().backward()  # a non-constant function: the gradient reaches the raw latent
    assert raw.grad is not None and raw.grad.abs().sum() > 0


def test_whiten_cannot_be_shrunk():
    raw = _correlated(64, 16)
    torch.testing.assert_close(GroupWhiten(16)(0.01 * raw), GroupWhiten(16)(raw), atol=1e-3, rtol=0)


def test_whiten_eval_and_small_training_batches_use_the_running_statistics():
    torch.manual_seed(0)
    mix = torch.randn(4, 4)
    norm = GroupWhiten(4, group=4)
    for _ in range(100):
        norm(1.0 + torch.randn(256, 4) @ mix)
    norm.eval()
    x = 1.0 + torch.randn(4096, 4) @ mix
    torch.testing.assert_close(norm(x)[:1], norm(x[:1]))  # per example
    torch.testing.assert_close(torch.cov(norm(x).T), torch.eye(4), atol=0.15, rtol=0)
    norm.train()
    torch.testing.assert_close(norm(x[:4]), norm.eval()(x[:4]))  # a batch no larger than a group


def test_whiten_runs_under_bf16_autocast():
    raw = _correlated(32, 16).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mu = GroupWhiten(16)(raw)
    assert mu.dtype == torch.bfloat16 and torch.isfinite(mu).all()


def test_example_and_none_and_a_bad_kind():
    x = torch.randn(3, 16)
    torch.testing.assert_close(
        latent_norm("example", 16, "E")(x).norm(dim=1), torch.full((3,), 4.0), atol=1e-3, rtol=0
    )
    assert latent_norm("none", 16, "E")(x) is x
    assert isinstance(latent_norm("whiten", 16, "E"), GroupWhiten)
    with pytest.raises(ValueError, match="MyEncoder: normalize must be one of batch, whiten, example, none"):
        latent_norm("layer", 16, "MyEncoder")  # type: ignore[arg-type]


def _with_encoder(last: nn.Module) -> nn.Module:
    model = nn.Module()
    model.encoder = nn.Sequential(nn.Linear(3, 4), last)
    return model


def _load_error(trained: nn.Module, configured: nn.Module) -> str:
    with pytest.raises(RuntimeError) as err:
        configured.load_state_dict(trained.state_dict())
    return state_dict_mismatch(err.value)


@pytest.mark.parametrize(
    ("trained", "configured"),
    [("none", "batch"), ("example", "batch"), ("batch", "none"), ("whiten", "batch"), ("batch", "whiten"),
     ("whiten", "none"), ("none", "whiten")],
)
def test_a_normalize_mismatch_is_named_in_the_checkpoint_error(trained: str, configured: str) -> None:
    """Runs from before LatentNorm became the default load with a config that says what they were."""
    message = _load_error(*(_with_encoder(latent_norm(k, 4, "test")) for k in (trained, configured)))
    assert "Only the encoder's latent standardisation differs" in message
    named = "none" if trained == "example" else trained
    assert f"--model.encoder.init_args.normalize {named}" in message


def test_other_mismatches_get_no_normalize_hint() -> None:
    message = _load_error(_with_encoder(LatentNorm(4)), _with_encoder(nn.Linear(4, 4)))
    assert "weight(s)" in message and "latent standardisation" not in message
