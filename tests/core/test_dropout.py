"""RandDropout: nn.Dropout's distribution and gradient with a torch.rand mask on the CPU."""

from __future__ import annotations

import pytest
import torch
from diled_core import RandDropout, use_rand_dropout
from torch import nn


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_keeps_each_element_with_probability_one_minus_p_and_scales_it(p):
    torch.manual_seed(0)
    n = 200_000
    y = RandDropout(p).train()(torch.ones(n))
    dropped = y.eq(0).double().mean().item()
    assert abs(dropped - p) < 4 * (p * (1 - p) / n) ** 0.5
    kept = y[y.ne(0)]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)))
    assert abs(y.mean().item() - 1.0) < 0.01


def test_the_gradient_goes_through_the_same_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 21, 100, requires_grad=True)
    y = RandDropout(0.2).train()(x)
    y.backward(torch.ones_like(y))
    kept = y.detach().ne(0)
    torch.testing.assert_close(x.grad, kept.float() / 0.8)


def test_masks_follow_the_seed_and_differ_between_calls():
    drop = RandDropout(0.3).train()
    torch.manual_seed(1)
    a, b = drop(torch.ones(1000)), drop(torch.ones(1000))
    torch.manual_seed(1)
    assert torch.equal(drop(torch.ones(1000)), a)
    assert not torch.equal(a, b)


def test_eval_mode_p0_and_p1():
    x = torch.randn(10, 10)
    assert torch.equal(RandDropout(0.5).eval()(x), x)
    assert torch.equal(RandDropout(0.0).train()(x), x)
    assert torch.equal(RandDropout(1.0).train()(x), torch.zeros_like(x))


def test_keeps_a_bf16_input_in_bf16():
    y = RandDropout(0.2).train()(torch.ones(1000, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and set(y.unique().tolist()) <= {0.0, 1.25}


def test_use_rand_dropout_swaps_every_dropout_and_leaves_the_state_dict_alone():
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.2, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    keys = list(model.state_dict())
    use_rand_dropout(model)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 6 and all(type(m) is RandDropout and m.p == 0.2 for m in drops)
    assert list(model.state_dict()) == keys
