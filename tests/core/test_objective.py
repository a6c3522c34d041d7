"""The objective (method.md §3) on every path: likelihood and diffusion decoders, each training phase,
the head, and its errors. Plain functions, no Lightning."""

from __future__ import annotations

import pytest
import torch
from diled_core import NoiseSchedule, Phase, SkipMLP, objective
from diled_core.toy import ToyDecoder, ToyDiffusionDecoder, ToyEncoder
from torch import Tensor

T = 50


@pytest.fixture
def parts():
    torch.manual_seed(0)
    sched = NoiseSchedule("constant", T)
    encoder = ToyEncoder(dim=8, latent_dim=4, hidden=32)
    denoiser = SkipMLP(4, width=32, depth=2)
    torch.nn.init.normal_(denoiser.out.weight, std=0.1)  # zero-initialised: no gradient to μ otherwise
    batch = {"x": torch.randn(64, 8), "property": torch.randn(64)}
    return sched, encoder, (lambda x, t: denoiser(x, t.float() / T)), batch


def run(parts, decoder, **kw):
    sched, encoder, eps, batch = parts
    return objective(encoder(batch), batch, decoder=decoder, eps_model=eps, schedule=sched, **kw)


def _t(seed: int, low: int, n: int = 64) -> Tensor:
    """The timesteps the objective draws first from a generator seeded with ``seed``."""
    return torch.randint(low, T + 1, (n,), generator=torch.Generator().manual_seed(seed))


def test_likelihood_decoder_is_weighted_by_the_elbo_split(parts) -> None:
    out = run(parts, ToyDecoder(latent_dim=4, hidden=32), w=8.0, generator=torch.Generator().manual_seed(3))
    t = _t(3, low=2)
    assert set(out.terms) == {"diffusion", "decoder/nll"}
    torch.testing.assert_close(out.weights["decoder/nll"], 1 / ((T - 1) * parts[0].lambdas[t]))
    assert out.weights["diffusion"] == 8.0
    expected = (out.weights["decoder/nll"] * out.terms["decoder/nll"]).mean() + 8.0 * out.terms["diffusion"].mean()
    torch.testing.assert_close(out.loss, expected)
    assert out.logs["decoder/nll"] == out.terms["decoder/nll"].mean() and out.logs["loss"] == out.loss


def test_uniform_weighting_is_one(parts) -> None:
    out = run(parts, ToyDecoder(latent_dim=4, hidden=32), rec_weighting="uniform")
    assert torch.equal(out.weights["decoder/nll"], torch.ones(64))


def test_diffusion_decoder_uses_two_minus_w_and_shares_t_down_to_1(parts) -> None:
    seen: list[Tensor] = []

    class Spy(ToyDiffusionDecoder):
        def loss(self, z, batch, *, t, generator=None):
            seen.append(t)
            return super().loss(z, batch, t=t, generator=generator)

    out = run(parts, Spy(latent_dim=4, hidden=32, latent_timesteps=T), w=1.5,
              generator=torch.Generator().manual_seed(5))
    assert out.weights == {"diffusion": 1.5, "decoder/eps_mse": 0.5}
    torch.testing.assert_close(out.loss, 1.5 * out.terms["diffusion"].mean() + 0.5 * out.terms["decoder/eps_mse"].mean())
    assert torch.equal(seen[0], _t(5, low=1))  # the shared t, drawn from {1 … T}
    for _ in range(5):
        run(parts, Spy(latent_dim=4, hidden=32, latent_timesteps=T))
    many = torch.cat(seen)
    assert many.min() == 1 and many.max() == T


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase(diffusion=False), {"decoder/nll": 1.0}),  # autoencoder, and two_stage's first stage
        (Phase(decoder=False), {"diffusion": 2.0}),  # two_stage's second stage
    ],
)
def test_phases_turn_terms_off(parts, phase: Phase, expected: dict) -> None:
    out = run(parts, ToyDecoder(latent_dim=4, hidden=32), phase=phase, w=2.0)
    assert out.weights == expected


def test_every_term_reaches_the_encoder(parts) -> None:
    sched, encoder, eps, batch = parts
    from diled_core import RegressionHead

    for decoder in (ToyDecoder(latent_dim=4, hidden=32), ToyDiffusionDecoder(latent_dim=4, hidden=32)):
        out = objective(encoder(batch), batch, decoder=decoder, eps_model=eps, schedule=sched,
                        head=RegressionHead(4), generator=torch.Generator().manual_seed(0))
        for name, term in out.terms.items():
            encoder.zero_grad()
            term.mean().backward(retain_graph=True)
            assert sum(p.grad.abs().sum() for p in encoder.parameters()) > 0, name


def test_head_term_and_weight(parts) -> None:
    out = run(parts, ToyDecoder(latent_dim=4, hidden=32), head=lambda mu, b: (mu[:, 0] - b["property"]) ** 2,
              head_weight=0.25)
    assert out.weights["head"] == 0.25 and out.terms["head"].shape == (64,)


@pytest.mark.parametrize("decoder", ["likelihood", "diffusion"])
def test_latent_draws_average_k_draws_and_the_first_shares_the_decoders_t(parts, decoder: str) -> None:
    """K draws of (t, ε) per example; the first is K = 1's draw (the decoder's t), the others follow."""
    sched, encoder, eps, batch = parts
    dec = ToyDecoder(latent_dim=4, hidden=32) if decoder == "likelihood" else ToyDiffusionDecoder(
        latent_dim=4, hidden=32, latent_timesteps=T
    )
    low = 2 if decoder == "likelihood" else 1
    out = run(parts, dec, generator=torch.Generator().manual_seed(5), latent_draws=3)
    g = torch.Generator().manual_seed(5)
    t, noise = torch.randint(low, T + 1, (64,), generator=g), torch.randn(64, 4, generator=g)
    t = torch.cat([t, torch.randint(low, T + 1, (128,), generator=g)])
    noise = torch.cat([noise, torch.randn(128, 4, generator=g)])
    mu = encoder(batch).repeat(3, 1)
    x_t = sched.sqrt_alphas_cumprod[t, None] * mu + sched.sqrt_one_minus_alphas_cumprod[t, None] * noise
    per_draw = ((noise - eps(x_t, t)) ** 2).mean(1).view(3, 64)
    torch.testing.assert_close(out.terms["diffusion"], per_draw.mean(0))
    assert not torch.allclose(per_draw[0], per_draw[1])  # three different draws, not one repeated
    one = run(parts, dec, generator=torch.Generator().manual_seed(5))  # K = 1: the first draw alone
    torch.testing.assert_close(one.terms["diffusion"], per_draw[0])


def test_latent_draws_keep_the_gradient_to_the_encoder(parts) -> None:
    sched, encoder, eps, batch = parts
    out = run(parts, ToyDecoder(latent_dim=4, hidden=32), phase=Phase(decoder=False), latent_draws=4)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_errors_say_what_is_wrong(parts) -> None:
    class Reduced(ToyDecoder):
        def loss(self, z, batch, *, t, generator=None):
            return {"nll": super().loss(z, batch, t=t)["nll"].mean()}

    with pytest.raises(ValueError, match="per example"):
        run(parts, Reduced(latent_dim=4, hidden=32))

    class Empty(ToyDecoder):
        def loss(self, z, batch, *, t, generator=None):
            return {}

    with pytest.raises(ValueError, match="no terms"):
        run(parts, Empty(latent_dim=4, hidden=32))
    with pytest.raises(ValueError, match="no term"):
        run(parts, ToyDecoder(latent_dim=4, hidden=32), phase=Phase(diffusion=False, decoder=False))


def test_math_modules_do_not_import_lightning_even_indirectly() -> None:
    """Follow the imports of each math module through the package (statically) and find no Lightning."""
    import ast
    from pathlib import Path

    import diled_core

    root = Path(diled_core.__file__).parent

    def imports(name: str) -> set[str]:
        path = root / (name.replace(".", "/") + ".py")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:  # relative: within diled_core
                base = name.rsplit(".", node.level)[0] if "." in name else ""
                target = ".".join(p for p in (base if node.level > 1 else "", node.module or "") if p)
                found.add("." + (target or (node.names[0].name)))
            elif isinstance(node, ast.ImportFrom):
                found.add(node.module or "")
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        return found

    for math_module in ("schedule", "diffusion", "objective", "samplers", "denoiser", "contract", "interpolation"):
        todo, seen = [math_module], set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for imp in imports(name):
                if imp.startswith("."):
                    todo.append(imp[1:])
                else:
                    assert imp.split(".")[0] not in ("lightning", "pytorch_lightning"), (
                        f"{math_module} imports {imp} through {name}"
                    )
        assert seen <= {"schedule", "diffusion", "objective", "samplers", "denoiser", "contract", "interpolation"}, seen
