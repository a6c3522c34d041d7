"""The latent denoiser SkipMLP, its time embedding, and the RegressionHead (method.md §4-5)."""

from __future__ import annotations

import math

import pytest
import torch
from diled_core.denoiser import RegressionHead, SkipMLP, timestep_embedding

D, WIDTH, DEPTH, TIME_DIM = 5, 16, 4, 8
SKIP = 32  # WIDTH + D = 21 columns, zero-padded to a multiple of the default align (16)


def _perturbed(seed: int = 0) -> SkipMLP:
    torch.manual_seed(seed)
    net = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM)
    with torch.no_grad():
        net.out.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
        net.out.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed + 1))
    return net


# --- timestep_embedding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [1, 2, 7, 8, 64])
def test_timestep_embedding_shape(dim):
    emb = timestep_embedding(torch.tensor([0.0, 0.5, 999.0]), dim)
    assert emb.shape == (3, dim) and emb.dtype == torch.float32


def test_timestep_embedding_values_by_hand():
    t = [0.0, 1.0, 250.0]
    emb = timestep_embedding(torch.tensor(t), 6)
    half = 3
    freqs = [math.exp(-math.log(10000.0) * i / half) for i in range(half)]  # 1, 10000^(−1/3), 10000^(−2/3)
    expected = [[math.cos(ti * f) for f in freqs] + [math.sin(ti * f) for f in freqs] for ti in t]
    torch.testing.assert_close(emb, torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_timestep_embedding_odd_dim_pads_one_zero_column():
    t = torch.tensor([3.0, 17.0])
    odd, even = timestep_embedding(t, 7), timestep_embedding(t, 6)
    assert torch.all(odd[:, -1] == 0)
    torch.testing.assert_close(odd[:, :6], even)


def test_timestep_embedding_distinguishes_times():
    emb = timestep_embedding(torch.tensor([1.0, 2.0, 500.0, 1000.0]), 32)
    d = torch.cdist(emb, emb)
    assert torch.all(d[~torch.eye(4, dtype=torch.bool)] > 0.1)


# --- SkipMLP ------------------------------------------------------------------------------------------------
def test_skipmlp_output_shape():
    net = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM)
    out = net(torch.randn(7, D), torch.rand(7))
    assert out.shape == (7, D)


def test_skipmlp_is_zero_at_init():
    net = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM)
    assert torch.all(net.out.weight == 0) and torch.all(net.out.bias == 0)
    out = net(torch.randn(6, D) * 3, torch.rand(6))
    assert torch.all(out == 0)


def test_skipmlp_default_hyperparameters_are_the_paper_width():
    net = SkipMLP(D)
    assert len(net.layers) == 10 and net.layers[0].linear.out_features == 2048


def test_skipmlp_time_conditions_the_output():
    net = _perturbed()
    x = torch.randn(4, D, generator=torch.Generator().manual_seed(3))
    early, late = net(x, torch.full((4,), 0.01)), net(x, torch.full((4,), 0.9))
    assert (early - late).abs().max() > 1e-3
    # …and each example uses its own time: a batch with mixed times equals the rows computed apart
    mixed = net(x, torch.tensor([0.01, 0.9, 0.01, 0.9]))
    torch.testing.assert_close(mixed[[0, 2]], early[[0, 2]])
    torch.testing.assert_close(mixed[[1, 3]], late[[1, 3]])


def test_skipmlp_input_conditions_the_output():
    net = _perturbed()
    t = torch.full((2,), 0.5)
    x = torch.randn(2, D, generator=torch.Generator().manual_seed(4))
    assert (net(x, t) - net(x + 1.0, t)).abs().max() > 1e-3


def test_skipmlp_every_layer_receives_the_input():
    net = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM)
    assert len(net.layers) == DEPTH
    assert net.layers[0].linear.in_features == D
    for layer in net.layers[1:]:
        assert layer.linear.in_features == SKIP
        assert layer.linear.out_features == WIDTH
    assert net.out.in_features == SKIP and net.out.out_features == D


def test_skipmlp_skip_concatenates_the_raw_input_into_every_layer():
    net = _perturbed()
    seen: list[torch.Tensor] = []
    hooks = [layer.linear.register_forward_pre_hook(lambda m, a: seen.append(a[0])) for layer in net.layers]
    hooks.append(net.out.register_forward_pre_hook(lambda m, a: seen.append(a[0])))
    x = torch.randn(3, D)
    net(x, torch.rand(3))
    for h in hooks:
        h.remove()
    assert len(seen) == DEPTH + 1
    assert torch.equal(seen[0], x)
    for inp in seen[1:]:
        assert inp.shape == (3, SKIP)
        assert torch.equal(inp[:, WIDTH : WIDTH + D], x)  # after the hidden state: x itself…
        assert torch.all(inp[:, WIDTH + D :] == 0)  # …then the zero columns of the alignment


def test_skipmlp_depth_one():
    net = SkipMLP(D, width=WIDTH, depth=1, time_dim=TIME_DIM)
    assert len(net.layers) == 1 and net.out.in_features == SKIP
    assert net(torch.randn(2, D), torch.rand(2)).shape == (2, D)


@pytest.mark.parametrize("depth, width, align", [(0, 16, 16), (-1, 16, 16), (2, 0, 16), (2, 16, 0)])
def test_skipmlp_bad_sizes_raise(depth, width, align):
    with pytest.raises(ValueError, match="depth"):
        SkipMLP(D, width=width, depth=depth, align=align)


def _unpadded() -> SkipMLP:
    """An ``align 1`` SkipMLP with the perturbed net's weights (its padding columns cut off)."""
    net = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM, align=1)
    net.load_state_dict({k: v[:, : WIDTH + D] if v.dim() == 2 and v.shape[1] == SKIP else v
                         for k, v in _perturbed().state_dict().items()})
    return net


@pytest.mark.parametrize("align", [8, 16, 64])
def test_skipmlp_alignment_pads_with_zero_weights_and_keeps_the_function(align):
    assert _perturbed().pad == 11 and SkipMLP(D, WIDTH, DEPTH, TIME_DIM, align=1).pad == 0
    net = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM, align=align)
    assert all(layer.linear.in_features % align == 0 for layer in net.layers[1:])
    assert all(torch.all(layer.linear.weight[:, WIDTH + D :] == 0) for layer in net.layers[1:])
    unpadded = _unpadded()
    aligned = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM, align=align)
    aligned.load_state_dict(unpadded.state_dict())  # unpadded weights gain their zero columns
    x, t = torch.randn(6, D), torch.rand(6)
    torch.testing.assert_close(aligned(x, t), unpadded(x, t))
    aligned(x, t).pow(2).sum().backward()
    unpadded(x, t).pow(2).sum().backward()
    for (name, a), b in zip(aligned.named_parameters(), unpadded.parameters()):
        real = tuple(slice(0, n) for n in b.shape)
        torch.testing.assert_close(a.grad[real], b.grad, msg=name)
        assert torch.count_nonzero(a.grad) == torch.count_nonzero(a.grad[real]), name  # padding: 0


def test_skipmlp_draws_the_same_initial_weights_with_and_without_alignment():
    torch.manual_seed(0)
    plain = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM, align=1).state_dict()
    torch.manual_seed(0)
    aligned = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM).state_dict()
    for name, value in plain.items():
        torch.testing.assert_close(aligned[name][..., : value.shape[-1]], value, rtol=0, atol=0)


def test_skipmlp_padded_weights_stay_zero_under_adam_with_weight_decay():
    net = _perturbed()
    padded = [layer.linear.weight for layer in net.layers[1:]]
    before = [w.detach().clone() for w in padded]
    opt = torch.optim.Adam(net.parameters(), lr=0.1, weight_decay=0.5)  # L2 on the gradient too
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, D), torch.rand(4)).pow(2).sum().backward()
        opt.step()
    assert all(torch.all(w[:, WIDTH + D :] == 0) for w in padded)
    assert all(not torch.equal(w[:, : WIDTH + D], b[:, : WIDTH + D]) for w, b in zip(padded, before))


def test_skipmlp_gradients_reach_every_layer_once_the_output_is_nonzero():
    net = _perturbed()
    net(torch.randn(4, D), torch.rand(4)).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- RegressionHead ----------------------------------------------------------------------------------------
def _head() -> RegressionHead:
    torch.manual_seed(0)
    return RegressionHead(D, hidden=8)


def test_regression_head_forward_shape():
    assert _head()(torch.randn(6, D)).shape == (6,)


def test_regression_head_loss_is_per_example_squared_error():
    head, mu = _head(), torch.randn(4, D)
    y = torch.tensor([0.5, -1.0, 2.0, 0.0])
    loss = head.loss(mu, {"property": y})
    with torch.no_grad():
        expected = (head(mu) - y) ** 2
    assert loss.shape == (4,)
    torch.testing.assert_close(loss, expected)


def test_regression_head_masks_unlabelled_examples():
    head, mu = _head(), torch.randn(4, D, requires_grad=True)
    y = torch.tensor([0.5, 0.0, 2.0, 0.0])
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = head.loss(mu, {"property": y, "property_mask": mask})
    with torch.no_grad():
        pred = head(mu)
    assert torch.all(loss[[1, 3]] == 0)
    torch.testing.assert_close(loss[[0, 2]], (pred[[0, 2]] - y[[0, 2]]) ** 2)
    loss.sum().backward()
    assert torch.all(mu.grad[[1, 3]] == 0) and torch.all(mu.grad[[0, 2]].abs().sum(1) > 0)


def test_regression_head_nan_targets_with_mask_give_finite_zero_loss_and_grad():
    head, mu = _head(), torch.randn(3, D, requires_grad=True)
    batch = {"property": torch.tensor([1.0, math.nan, -1.0]), "property_mask": torch.tensor([1.0, 0.0, 1.0])}
    loss = head.loss(mu, batch)
    assert torch.isfinite(loss).all() and loss[1] == 0
    loss.sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.all(mu.grad[1] == 0)


def test_regression_head_nan_targets_without_mask_are_unlabelled():
    # "Per-example loss [B]; zero for examples without a label" (AuxHead.loss): a NaN target is an
    # example without a label even when the batch carries no explicit mask.
    head, mu = _head(), torch.randn(3, D, requires_grad=True)
    y = torch.tensor([1.0, math.nan, -1.0])
    loss = head.loss(mu, {"property": y})
    assert torch.isfinite(loss).all()
    assert loss[1] == 0, "a NaN target was trained towards 0"
    loss.sum().backward()
    assert torch.all(mu.grad[1] == 0)


def test_regression_head_custom_target_key():
    head = RegressionHead(D, hidden=4, target="fitness")
    mu = torch.randn(2, D)
    loss = head.loss(mu, {"fitness": torch.zeros(2), "fitness_mask": torch.tensor([0.0, 1.0])})
    assert loss[0] == 0
    torch.testing.assert_close(loss[1], head(mu)[1].detach() ** 2)


def test_regression_head_missing_target_raises_a_helpful_key_error():
    head = RegressionHead(D, target="fitness")
    with pytest.raises(KeyError) as info:
        head.loss(torch.randn(2, D), {"tokens": torch.zeros(2, 3), "property": torch.zeros(2)})
    msg = str(info.value)
    assert "'fitness'" in msg  # what is missing
    assert "property" in msg and "tokens" in msg  # what the batch has
    assert "target" in msg  # how to fix it


def test_weights_saved_unpadded_load_into_an_aligned_net_with_zero_columns():
    """Runs saved with ``align 1`` (or before the option) load with the default alignment."""
    unpadded = _unpadded()
    holder = torch.nn.Module()
    holder.ema = torch.nn.Module()
    holder.ema.module = SkipMLP(D, width=WIDTH, depth=DEPTH, time_dim=TIME_DIM)  # prefixed, as DiLED's EMA
    holder.load_state_dict({f"ema.module.{k}": v for k, v in unpadded.state_dict().items()})
    aligned = holder.ema.module
    assert aligned.layers[1].linear.weight.shape == (WIDTH, SKIP)
    assert torch.all(aligned.layers[1].linear.weight[:, WIDTH + D :] == 0)
    x, t = torch.randn(5, D), torch.rand(5)
    torch.testing.assert_close(aligned(x, t), unpadded(x, t))
