"""The encoder and decoder beyond the contract: latent injection, KV-cache decoding, decoding
options, freezing policies, optimizer groups and checkpoint-external weights."""

from __future__ import annotations

import pytest
import torch
from diled_text import CausalLMDecoder, HFEncoder, TinyTextDataModule

LATENT = 8


@pytest.fixture(scope="module")
def batch():
    dm = TinyTextDataModule(40, batch_size=4)
    return dm.collate([dm.dataset("train")[i] for i in range(4)])


@pytest.fixture
def make_decoder(tiny_gpt2):
    def make(**kwargs) -> CausalLMDecoder:
        torch.manual_seed(0)
        return CausalLMDecoder(LATENT, config=tiny_gpt2, **kwargs)

    return make


@pytest.mark.parametrize("injection", ["optimus", "prefix"])
def test_the_latent_changes_the_output_and_gradients_reach_the_encoder(
    batch, tiny_bert, make_decoder, injection
):
    torch.manual_seed(0)
    encoder, decoder = HFEncoder(LATENT, config=tiny_bert), make_decoder(injection=injection)
    t = torch.ones(4, dtype=torch.long)
    mu = encoder(batch)
    nll = decoder.loss(mu, batch, t=t)["nll"]
    other = decoder.loss(mu + 1.0, batch, t=t)["nll"]
    assert not torch.allclose(nll, other), "the decoder ignores the latent"
    nll.sum().backward()
    grads = [p.grad for p in encoder.transformer.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0, "no gradient reached the encoder's transformer"


def test_each_optimus_path_conditions_on_its_own(batch, make_decoder):
    """Zeroing the embedding projection or the memory projection leaves the other path working."""
    z, t = torch.randn(4, LATENT), torch.ones(4, dtype=torch.long)
    for path in ("to_embedding", "to_memory"):
        decoder = make_decoder()
        with torch.no_grad():
            getattr(decoder, path).weight.zero_()
        assert not torch.allclose(decoder.loss(z, batch, t=t)["nll"], decoder.loss(-z, batch, t=t)["nll"]), (
            path
        )


@pytest.mark.parametrize("injection", ["optimus", "prefix"])
def test_the_loss_is_the_mean_cross_entropy_over_real_target_tokens(batch, make_decoder, injection):
    decoder = make_decoder(injection=injection, prefix_slots=2).eval()
    z = torch.randn(4, LATENT)
    nll = decoder.loss(z, batch, t=torch.ones(4, dtype=torch.long))["nll"]
    for i in range(4):  # one row alone, without padding: the mean over its tokens after BOS
        n = int(batch["attention_mask"][i].sum())
        ids = batch["input_ids"][i : i + 1, :n]
        logits, _ = decoder.logits(z[i : i + 1], ids[:, :-1], torch.ones_like(ids[:, :-1]))
        want = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:])
        torch.testing.assert_close(nll[i], want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("injection", ["optimus", "prefix"])
def test_kv_cache_decoding_matches_a_full_forward_pass(make_decoder, injection):
    decoder = make_decoder(injection=injection, prefix_slots=2).eval()
    z = torch.randn(3, LATENT)
    out = decoder.decode(z, max_length=12)
    ids = out["input_ids"]
    logits, _ = decoder.logits(z, ids, torch.ones_like(ids))
    real = out["attention_mask"][:, 1:].bool()
    assert torch.equal(logits[:, :-1].argmax(-1)[real], ids[:, 1:][real])  # greedy = argmax at every step


def test_decoded_rows_end_at_eos_and_are_padded_after_it(make_decoder, monkeypatch):
    """Row i emits EOS at step i (row 3 never): masks, padding and text follow; decoding stops when all
    rows have ended."""
    import diled_text.decoder as module

    decoder = make_decoder().eval()
    eos, pad, word = decoder.text_tokenizer.eos_id, decoder.pad_token_id, 2000
    steps = []

    def scripted(logits, **_):
        step = len(steps)
        steps.append(step)
        return torch.tensor([eos if i == step < 3 else word for i in range(4)])

    monkeypatch.setattr(module, "next_token", scripted)
    out = decoder.decode(torch.randn(4, LATENT), max_length=6)
    bos = decoder.text_tokenizer.bos_id
    assert out["input_ids"].tolist() == [
        [bos, eos, pad, pad, pad, pad, pad],
        [bos, word, eos, pad, pad, pad, pad],
        [bos, word, word, eos, pad, pad, pad],
        [bos, word, word, word, word, word, word],
    ]
    assert out["attention_mask"].sum(1).tolist() == [2, 3, 4, 7] and len(steps) == 6
    assert out["text"] == [
        "",
        decoder.text_tokenizer.hf.decode([word]),
        *[decoder.text_tokenizer.decode(r) for r in out["input_ids"][2:]],
    ]


def test_decoding_options(make_decoder):
    decoder = make_decoder().eval()
    z = torch.randn(4, LATENT)
    greedy = decoder.decode(z, max_length=8)
    torch.testing.assert_close(greedy["input_ids"], decoder.decode(z, max_length=8)["input_ids"])

    def sample(seed: int, **kw):
        return decoder.decode(
            z, max_length=8, greedy=False, generator=torch.Generator().manual_seed(seed), **kw
        )

    a, b, c = (
        sample(1, temperature=1.5, top_p=0.9),
        sample(1, temperature=1.5, top_p=0.9),
        sample(2, temperature=1.5),
    )
    assert torch.equal(a["input_ids"], b["input_ids"]) and not torch.equal(a["input_ids"], c["input_ids"])
    tiny_p = sample(3, top_p=1e-6)  # nucleus of one token: the greedy choice
    assert torch.equal(tiny_p["input_ids"], greedy["input_ids"])
    with pytest.raises(ValueError, match="greedy: false"):
        decoder.decode(z, temperature=0.7)
    with pytest.raises(ValueError, match=r"unknown decoding option\(s\) \['beams'\]"):
        decoder.decode(z, beams=2)
    with pytest.raises(ValueError, match="lower max_length"):
        decoder.decode(z, max_length=100)


def test_paper_freeze_trains_injection_embeddings_and_first_block(make_decoder):
    decoder = make_decoder(freeze="paper", lr=1e-4)
    trainable = {n for n, p in decoder.named_parameters() if p.requires_grad}
    assert {
        "to_embedding.weight",
        "to_memory.weight",
        "lm.transformer.wte.weight",
        "lm.transformer.wpe.weight",
    } <= trainable
    assert any(n.startswith("lm.transformer.h.0.") for n in trainable)
    assert not any(n.startswith(("lm.transformer.h.1.", "lm.transformer.ln_f.")) for n in trainable)
    groups = decoder.param_groups()
    assert groups[0]["lr"] == 1e-4 and "lr" not in groups[1]
    assert {id(p) for p in groups[1]["params"]} == {
        id(p) for n, p in decoder.named_parameters() if not n.startswith("lm.")
    }
    assert decoder.external_state() == []  # random init: frozen weights cannot be rebuilt, so they are saved


def test_pretrained_frozen_weights_stay_out_of_checkpoints(tmp_path, tiny_gpt2, tiny_bert):
    torch.manual_seed(0)
    CausalLMDecoder(LATENT, config=tiny_gpt2).lm.save_pretrained(tmp_path / "lm")
    decoder = CausalLMDecoder(LATENT, model_path=str(tmp_path / "lm"), freeze="paper")
    external = decoder.external_state()
    assert "lm.transformer.h.1.attn.c_attn.weight" in external and "lm.transformer.wte.weight" not in external
    again = CausalLMDecoder(LATENT, model_path=str(tmp_path / "lm"), freeze="paper")
    state = again.state_dict()
    for key in external:  # rebuilt identically from the path
        torch.testing.assert_close(decoder.state_dict()[key], state[key])
    HFEncoder(LATENT, config=tiny_bert).transformer.save_pretrained(tmp_path / "enc")
    encoder = HFEncoder(LATENT, model_path=str(tmp_path / "enc"), freeze="all")
    assert encoder.external_state() and all(k.startswith("transformer.") for k in encoder.external_state())
    assert [g["params"] for g in encoder.param_groups()] == [list(encoder.proj.parameters())]


def test_weights_frozen_after_construction_stay_in_checkpoints(tmp_path, tiny_gpt2, tiny_bert):
    """two_stage freezes encoder and decoder for its second stage: those weights were trained, so only
    what the freeze policy froze at construction is left out (a regression: the whole MiniLM was)."""
    HFEncoder(LATENT, config=tiny_bert).transformer.save_pretrained(tmp_path / "enc")
    encoder = HFEncoder(LATENT, model_path=str(tmp_path / "enc"), freeze="embeddings")
    CausalLMDecoder(LATENT, config=tiny_gpt2).lm.save_pretrained(tmp_path / "lm")
    decoder = CausalLMDecoder(LATENT, model_path=str(tmp_path / "lm"), freeze="paper")
    before = (encoder.external_state(), decoder.external_state())
    assert all(".embeddings." in k for k in before[0]) and before[0]
    encoder.requires_grad_(False)
    decoder.requires_grad_(False)
    assert (encoder.external_state(), decoder.external_state()) == before


def test_pretrained_models_train_with_their_dropout_unless_overrides_turn_it_off(
    tmp_path, batch, tiny_bert, tiny_gpt2
):
    """``from_pretrained`` returns eval mode and Lightning keeps each module's mode: without
    ``load_trainable`` a pretrained MiniLM fine-tuned with its dropout silently off."""
    dropout_bert = {**tiny_bert, "hidden_dropout_prob": 0.5, "attention_probs_dropout_prob": 0.5}
    HFEncoder(LATENT, config=dropout_bert).transformer.save_pretrained(tmp_path / "enc")
    CausalLMDecoder(LATENT, config={**tiny_gpt2, "resid_pdrop": 0.5}).lm.save_pretrained(tmp_path / "lm")
    off = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    z = torch.randn(4, LATENT)
    for overrides, varies in ((None, True), (off, False)):
        encoder = HFEncoder(LATENT, model_path=str(tmp_path / "enc"), config_overrides=overrides)
        assert encoder.transformer.training
        assert (not torch.equal(encoder(batch), encoder(batch))) is varies
    decoder = CausalLMDecoder(LATENT, model_path=str(tmp_path / "lm"))
    nll = [decoder.loss(z, batch, t=torch.zeros(4))["nll"] for _ in "ab"]
    assert decoder.lm.training and not torch.equal(*nll)
    quiet = CausalLMDecoder(LATENT, model_path=str(tmp_path / "lm"), config_overrides={"resid_pdrop": 0})
    assert quiet.lm.config.resid_pdrop == 0
    unknown = r"\['hidden_dropout'\] are not fields of its config .*'hidden_dropout_prob'"
    with pytest.raises(ValueError, match=unknown):
        HFEncoder(LATENT, model_path=str(tmp_path / "enc"), config_overrides={"hidden_dropout": 0.0})
    with pytest.raises(ValueError, match="config_overrides change a pretrained config; put them in config"):
        HFEncoder(LATENT, config=tiny_bert, config_overrides=off)


def test_a_decoder_for_another_vocabulary_is_refused(tiny_gpt2, tmp_path):
    with pytest.raises(ValueError, match="has 30522 output tokens but the data's tokenizer has 50257"):
        CausalLMDecoder(LATENT, vocab_size=50257, config={**tiny_gpt2, "vocab_size": 30522})
    from transformers import AutoConfig, AutoModelForCausalLM

    AutoModelForCausalLM.from_config(AutoConfig.for_model(**tiny_gpt2, vocab_size=1000)).save_pretrained(
        tmp_path
    )
    with pytest.raises(
        ValueError, match="has 30522 tokens but the language model only 1000; pass the model's own"
    ):
        CausalLMDecoder(LATENT, model_path=str(tmp_path))  # the default (MiniLM) tokenizer
    with pytest.raises(ValueError, match="nothing is downloaded at run time"):
        CausalLMDecoder(LATENT, model_path="weights/no-such-model", tokenizer=str(tmp_path / "nope"))


def test_a_decoder_that_sees_later_tokens_is_refused(batch, tiny_bert):
    """A BERT-family model loaded as a causal LM attends both ways unless ``is_decoder``: teacher forcing
    would then read each target token from the input."""
    with pytest.raises(ValueError, match=r"lets each token see the tokens after it.*is_decoder: true"):
        CausalLMDecoder(LATENT, config=tiny_bert)
    decoder = CausalLMDecoder(LATENT, config={**tiny_bert, "is_decoder": True})
    assert decoder.lm.training  # the check leaves the mode as it was
    ids, mask = batch["input_ids"][:1], batch["attention_mask"][:1]
    z = torch.randn(1, LATENT)
    with torch.no_grad():
        full, _ = decoder.logits(z, ids, mask)
        changed = ids.clone()
        changed[0, -1] = (changed[0, -1] + 1) % decoder.vocab_size
        again, _ = decoder.logits(z, changed, mask)
    torch.testing.assert_close(full[:, :-1], again[:, :-1])  # earlier positions ignore the last token


def test_the_encoder_standardises_mu_over_the_batch_by_default(batch, tiny_bert):
    torch.manual_seed(0)
    mu = HFEncoder(LATENT, config=tiny_bert)(batch)
    torch.testing.assert_close(mu.mean(0), torch.zeros(LATENT), atol=1e-5, rtol=0)
    torch.testing.assert_close(mu.var(0, unbiased=False), torch.ones(LATENT), atol=1e-3, rtol=0)
    torch.manual_seed(0)
    raw = HFEncoder(LATENT, config=tiny_bert, normalize="none")(batch)
    assert raw.var(0, unbiased=False).mean() < 0.5  # what the projection alone gives is not unit-scale
    with pytest.raises(ValueError, match="HFEncoder: normalize must be one of"):
        HFEncoder(LATENT, config=tiny_bert, normalize="layer")


@pytest.mark.parametrize("injection", ["optimus", "prefix"])
def test_the_injected_latent_starts_at_the_token_embeddings_scale(make_decoder, injection):
    """A prior-scale latent must not drown the tokens of a decoder trained from scratch (GPT-2 init:
    embeddings of std 0.02); PyTorch's default Linear init gave vectors ~30× their norm."""
    decoder = make_decoder(injection=injection)
    z = torch.randn(256, LATENT)
    layer = decoder.to_embedding if injection == "optimus" else decoder.to_prefix
    injected = layer(z).detach().std().item()
    tokens = decoder.lm.get_input_embeddings().weight.std().item()
    assert 0.7 < injected / tokens < 1.4, (injected, tokens)


def test_local_weights_load_without_transformers_progress_bar(tiny_reference_lm, capfd):
    """The bar landed in the middle of `diled predict`'s output; the user's own code keeps its bars."""
    from diled_text.tokenizer import load_local
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    capfd.readouterr()
    load_local(AutoModelForCausalLM.from_pretrained, tiny_reference_lm, "reference LM")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
