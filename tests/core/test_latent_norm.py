"""The latent standardisation every modality's encoder ends with (method.md §3, latent collapse)."""

from __future__ import annotations

import pytest
import torch
from diled_core import LatentNorm, latent_norm
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


def test_example_and_none_and_a_bad_kind():
    x = torch.randn(3, 16)
    torch.testing.assert_close(
        latent_norm("example", 16, "E")(x).norm(dim=1), torch.full((3,), 4.0), atol=1e-3, rtol=0
    )
    assert latent_norm("none", 16, "E")(x) is x
    with pytest.raises(ValueError, match="MyEncoder: normalize must be one of batch, example, none"):
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
    ("trained", "configured"), [("none", "batch"), ("example", "batch"), ("batch", "none")]
)
def test_a_normalize_mismatch_is_named_in_the_checkpoint_error(trained: str, configured: str) -> None:
    """Runs from before LatentNorm became the default load with a config that says what they were."""
    message = _load_error(*(_with_encoder(latent_norm(k, 4, "test")) for k in (trained, configured)))
    assert "Only the encoder's latent standardisation differs" in message
    assert f"--model.encoder.init_args.normalize {'batch' if trained == 'batch' else 'none'}" in message


def test_other_mismatches_get_no_normalize_hint() -> None:
    message = _load_error(_with_encoder(LatentNorm(4)), _with_encoder(nn.Linear(4, 4)))
    assert "weight(s)" in message and "latent standardisation" not in message
