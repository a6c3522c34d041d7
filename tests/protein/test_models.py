"""Encoders and decoder: shapes, masking, per-example loss terms, decoding, gradients, ESM-2 options."""

from __future__ import annotations

import argparse

import esm
import pytest
import torch
import torch.nn.functional as F
from diled_protein import ConvDecoder, ESM2Encoder, ProteinVocab, ReLSOEncoder
from diled_protein.pooling import AttentionPool

V = ProteinVocab()


def tokens(seqs: list[str], max_length: int) -> dict[str, torch.Tensor]:
    t = torch.stack([V.encode(s, max_length) for s in seqs])
    return {"tokens": t, "mask": V.residue_mask(t)}


def small_relso(d: int = 8) -> ReLSOEncoder:
    return ReLSOEncoder(d, embed_dim=16, num_layers=2, num_heads=2, ff_dim=32, dropout=0.0)


def test_relso_defaults_are_the_paper_sizes():
    enc = ReLSOEncoder()
    assert enc.latent_dim == 30 and enc.embed.embedding_dim == 100
    assert len(enc.transformer.layers) == 6 and enc.transformer.layers[0].self_attn.num_heads == 4


@pytest.mark.parametrize(
    "make",
    [
        small_relso,
        lambda: ESM2Encoder(8, num_layers=1, embed_dim=16, attention_heads=2),
        lambda: ESM2Encoder(8, num_layers=1, embed_dim=16, attention_heads=2, pooling="attention"),
    ],
)
def test_encoders_give_mu_independent_of_padding_width(make):
    torch.manual_seed(0)
    enc = make().eval()
    seqs = ["ACDEFG", "KLM", "WYVPQRSTAC"]
    mu = enc(tokens(seqs, 12))
    assert mu.shape == (3, 8) and torch.isfinite(mu).all()
    wide = enc(tokens(seqs, 30))  # more padding must not change μ
    torch.testing.assert_close(mu, wide, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(mu[0], mu[1])


def test_the_authors_block_is_post_norm_relu_without_attention_dropout():
    """ReLSO's ``EncoderBlock`` (github guangyliu/EDDPM, Protein/codes/nn/transformers.py): x = norm(x +
    drop(attn(x))), x = norm(x + drop(ffn(x))), ReLU, no dropout on the attention weights, no final norm."""
    theirs = ReLSOEncoder(
        8,
        embed_dim=16,
        num_layers=2,
        num_heads=2,
        ff_dim=32,
        dropout=0.2,
        activation="relu",
        norm_first=False,
        attention_dropout=0.0,
    )
    ours = ReLSOEncoder(8, embed_dim=16, num_layers=2, num_heads=2, ff_dim=32, dropout=0.2)
    for layer in theirs.transformer.layers:
        assert not layer.norm_first and layer.activation is torch.nn.functional.relu
        assert layer.self_attn.dropout == 0.0 and layer.dropout.p == 0.2
    assert theirs.transformer.norm is None
    for layer in ours.transformer.layers:
        assert layer.norm_first and layer.self_attn.dropout == 0.2
    assert isinstance(ours.transformer.norm, torch.nn.LayerNorm)


def test_flatten_pooling_needs_the_width():
    torch.manual_seed(0)
    enc = ReLSOEncoder(
        8, embed_dim=16, num_layers=1, num_heads=2, ff_dim=32, dropout=0.0, pooling="flatten", max_length=12
    ).eval()
    assert enc.to_latent.in_features == 13 * 16
    b = tokens(["ACDEFG", "KLM"], 12)
    mu = enc(b)
    assert mu.shape == (2, 8) and torch.isfinite(mu).all()
    with pytest.raises(ValueError, match="built for 13 positions"):
        enc(tokens(["ACD"], 20))
    with pytest.raises(ValueError, match="needs the sequence length"):
        ReLSOEncoder(8, pooling="flatten")


def test_attention_pooling_under_bf16_autocast_and_in_fp32():
    """Under bf16-mixed the scores are bf16 while the features are float32: the padding fill must fit
    bf16 (it overflowed before). In float32 the weights are the softmax over real positions only."""
    torch.manual_seed(0)
    pool = AttentionPool(16)
    h = torch.randn(3, 5, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = pool(h, mask)
    assert torch.isfinite(low).all()
    out = pool(h, mask)
    scores = pool.score(h).squeeze(-1)
    want = torch.stack([scores[0, :3].softmax(0) @ h[0, :3], scores[1].softmax(0) @ h[1], h[2].mean(0)])
    torch.testing.assert_close(out, want)  # a row without real positions: uniform weights, finite
    torch.testing.assert_close(low.float(), want, atol=0.1, rtol=0.05)


def test_decoder_loss_is_per_example_mean_cross_entropy_over_residues_and_eos():
    torch.manual_seed(0)
    dec = ConvDecoder(8, 6, channels=16, num_layers=1, dropout=0.0)
    b = tokens(["ACD", "KLMNPQ"], 6)
    z = torch.randn(2, 8)
    terms = dec.loss(z, b, t=torch.tensor([1, 1]))
    assert list(terms) == ["nll"]  # the core reports its mean as nll_mean
    nll = terms["nll"]
    assert nll.shape == (2,) and torch.isfinite(nll).all()
    logp = F.log_softmax(dec.logits(z), -1)
    classes = dec.to_class[b["tokens"]]
    for i, n in enumerate([3, 6]):
        manual = -torch.stack([logp[i, p, classes[i, p]] for p in range(n + 1)]).mean()  # residues + eos
        torch.testing.assert_close(nll[i], manual)
    # a likelihood decoder without noise: the shared timestep and the generator change nothing
    later = dec.loss(z, b, t=torch.tensor([7, 900]), generator=torch.Generator().manual_seed(3))["nll"]
    torch.testing.assert_close(later, nll)


def test_decoder_rejects_a_batch_of_another_width():
    with pytest.raises(ValueError, match="max_length=6"):
        ConvDecoder(8, 6).loss(torch.zeros(1, 8), tokens(["ACD"], 9), t=torch.ones(1, dtype=torch.long))


def test_decode_takes_the_batch_but_no_options():
    torch.manual_seed(0)
    dec = ConvDecoder(4, 6, channels=8, num_layers=1).eval()
    z = torch.randn(2, 4)
    with_batch = dec.decode(z, batch=tokens(["ACD", "KL"], 6), generator=torch.Generator().manual_seed(1))
    assert torch.equal(with_batch["tokens"], dec.decode(z)["tokens"])  # greedy: the batch is not needed
    with pytest.raises(ValueError, match="no decoding options.*temperature, top_p"):
        dec.decode(z, top_p=0.9, temperature=0.7)


def test_decode_output_is_well_formed_and_forces_an_end():
    torch.manual_seed(0)
    dec = ConvDecoder(4, 10, channels=8, num_layers=1).eval()
    with torch.no_grad():
        dec.out.bias[-1] = -1e4  # <eos> is never the argmax: sequences run to max_length
    out = dec.decode(torch.randn(5, 4))
    assert out["tokens"].shape == (5, 11) and out["mask"].shape == (5, 11)
    assert (out["tokens"][:, 10] == V.eos_idx).all() and out["mask"][:, :10].all()
    with torch.no_grad():
        dec.out.bias[-1] = 1e4  # <eos> always: empty sequences
    out = dec.decode(torch.randn(5, 4))
    assert (out["tokens"][:, 0] == V.eos_idx).all() and (out["tokens"][:, 1:] == V.pad_idx).all()
    assert not out["mask"].any() and V.decode(out["tokens"]) == [""] * 5


@pytest.mark.parametrize(
    "make_encoder", [small_relso, lambda: ESM2Encoder(8, num_layers=1, embed_dim=16, attention_heads=2)]
)
def test_autoencoder_learns_to_reconstruct_and_gradients_reach_the_encoder(make_encoder):
    torch.manual_seed(0)
    enc, dec = make_encoder(), ConvDecoder(8, 12, channels=32, num_layers=2, dropout=0.0)
    seqs = ["ACDEFGHIK", "KLMN", "WYVPQRSTAC", "GGHHC"]
    b = tokens(seqs, 12)
    t = torch.ones(len(seqs), dtype=torch.long)
    loss = dec.loss(enc(b), b, t=t)["nll"].mean()
    loss.backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0 for n, p in enc.named_parameters() if p.requires_grad
    )
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        dec.loss(enc(b), b, t=t)["nll"].mean().backward()
        opt.step()
    enc.eval(), dec.eval()
    with torch.no_grad():
        out = dec.decode(enc(b))
    assert V.decode(out["tokens"]) == seqs
    assert torch.equal(out["tokens"], b["tokens"]) and torch.equal(out["mask"], b["mask"])


def test_esm2_representation_matches_fair_esm_forward():
    torch.manual_seed(0)
    enc = ESM2Encoder(8, num_layers=2, embed_dim=16, attention_heads=2).eval()
    ref = esm.model.esm2.ESM2(2, 16, 2, V.alphabet).eval()
    missing = ref.load_state_dict(enc.esm.state_dict(), strict=False).missing_keys
    assert all(k.startswith(("lm_head", "contact_head")) for k in missing)
    t = tokens(["ACDEFG", "KLM"], 8)["tokens"]
    t = torch.cat([torch.full_like(t[:, :1], V.cls_idx), t], 1)
    expected = ref(t, repr_layers=[2])["representations"][2]
    torch.testing.assert_close(enc._represent(t), expected)


def test_esm2_freeze_trains_only_the_projection():
    enc = ESM2Encoder(8, num_layers=1, embed_dim=16, attention_heads=2, freeze=True)
    enc(tokens(["ACDE"], 6)).sum().backward()
    assert all(p.grad is None for p in enc.esm.parameters())
    assert enc.to_latent.weight.grad is not None


def test_esm2_loads_a_local_fair_esm_checkpoint(tmp_path):
    torch.manual_seed(1)
    src = esm.model.esm2.ESM2(1, 16, 2, V.alphabet).eval()
    state = {
        f"encoder.sentence_encoder.{k}": v
        for k, v in src.state_dict().items()
        if not k.startswith("contact_head.regression")
    }
    cfg = argparse.Namespace(
        encoder_layers=1, encoder_embed_dim=16, encoder_attention_heads=2, token_dropout=True
    )
    path = tmp_path / "esm2_t1_tiny.pt"
    torch.save({"model": state, "cfg": {"model": cfg}}, path)  # the layout of fair-esm's released files
    enc = ESM2Encoder(8, weights_path=str(path)).eval()
    assert enc.esm.embed_dim == 16 and len(enc.esm.layers) == 1
    t = tokens(["ACDEFG"], 8)["tokens"]
    t = torch.cat([torch.full_like(t[:, :1], V.cls_idx), t], 1)
    torch.testing.assert_close(enc._represent(t), src(t, repr_layers=[1])["representations"][1])


def test_esm2_bad_weights_paths_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not found.*weights_path: null"):
        ESM2Encoder(8, weights_path=str(tmp_path / "missing.pt"))
    junk = tmp_path / "esm2_junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot load .*esm2_junk.pt"):
        ESM2Encoder(8, weights_path=str(junk))


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        ReLSOEncoder(8, embed_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="odd"):
        ConvDecoder(8, 10, kernel_size=4)


def test_fast_dropout_is_switched_by_config():
    """``fast_dropout`` (default) swaps the encoder's and decoder's nn.Dropout for RandDropout; the
    state dict is the same either way, so checkpoints load across the switch."""
    from diled_core import RandDropout

    for make in (
        lambda f: ReLSOEncoder(dropout=0.2, fast_dropout=f),
        lambda f: ConvDecoder(dropout=0.1, fast_dropout=f),
    ):
        fast, plain = make(True), make(False)
        assert any(type(m) is RandDropout for m in fast.modules())
        assert not any(type(m) is RandDropout for m in plain.modules())
        assert fast.state_dict().keys() == plain.state_dict().keys()
