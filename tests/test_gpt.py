"""attnkit.gpt against Hugging Face's GPT2LMHeadModel: logits, the KV cache step by step, generation."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel, GPTNeoConfig
from transformers.utils import logging as hf_logging

from attnkit.decoding import _Decoder, _runs_as_built, generate
from attnkit.gpt import GPT, GPTConfig
from attnkit.kv_cache import KVCache

VOCAB, BLOCK = 101, 64
hf_logging.set_verbosity_error()


def hf_gpt2(n_embd: int = 32, n_head: int = 4, n_layer: int = 2, n_positions: int = BLOCK) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                        vocab_size=VOCAB, bos_token_id=0, eos_token_id=None, pad_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # HF initialises biases to zero and LayerNorm to 1: randomise so mix-ups show
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(mean=1.0 if "ln_" in name else 0.0, std=0.1)
    return model


@pytest.fixture(scope="module")
def hf() -> GPT2LMHeadModel:
    return hf_gpt2()


@pytest.fixture(scope="module")
def ours(hf) -> GPT:
    return GPT.from_gpt2(hf.state_dict(), n_head=4).eval()


@pytest.fixture
def idx() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))  # (B, L)


def test_from_gpt2_reads_the_sizes(ours):
    assert ours.config == GPTConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32)
    assert ours.lm_head.weight is ours.transformer.wte.weight  # tied


def test_logits_match_hugging_face(hf, ours, idx):
    with torch.no_grad():
        expected = hf(idx).logits  # (B, L, V)
        got = ours(idx)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours(idx, last_only=True), expected[:, -1:], atol=1e-4, rtol=1e-4)


def test_gpt2model_state_dict_without_prefix(hf, idx):
    model = GPT.from_gpt2(hf.transformer.state_dict(), n_head=4).eval()  # keys "wte.weight", ...
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, atol=1e-4, rtol=1e-4)


def test_cache_step_by_step_matches_hugging_face_past_key_values(hf, ours, idx):
    cache = KVCache(2, 2, 4, 20, 8)
    # Hugging Face's cache, made by us and updated in place by every call. It goes in by position:
    # transformers 4.x names the argument past_key_values, 5.x cache (the old name is deprecated).
    past = DynamicCache()
    with torch.no_grad():
        out = hf(idx[:, :5], past, use_cache=True)  # prefill
        torch.testing.assert_close(ours(idx[:, :5], cache), out.logits, atol=1e-4, rtol=1e-4)
        for t in range(5, 9):  # then one token at a time, positions continuing
            out = hf(idx[:, t:t + 1], past, use_cache=True)
            torch.testing.assert_close(ours(idx[:, t:t + 1], cache), out.logits, atol=1e-4, rtol=1e-4)
    assert len(cache) == 9 and past.get_seq_length() == 9
    hf_keys = past.layers[1].keys  # (B, H, S, D) after the last layer; Cache.layers since transformers 4.54
    torch.testing.assert_close(cache.keys[1][:, :, :9], hf_keys, atol=1e-5, rtol=1e-5)


def test_cache_in_chunks_matches_full_logits(ours, idx):
    with torch.no_grad():
        full = ours(idx)  # (B, 9, V), no cache
        cache = KVCache(2, 2, 4, 9, 8)
        pieces = [ours(idx[:, a:b], cache) for a, b in ((0, 4), (4, 7), (7, 8), (8, 9))]  # (B, L, V) each
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_greedy_generate_matches_hugging_face(hf, ours, idx):
    expected = hf.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=20, do_sample=False)
    cached = generate(ours, idx, 20)
    assert cached.shape == (2, 29)
    assert torch.equal(cached, expected)
    assert torch.equal(generate(ours, idx, 20, use_cache=False), expected)
    assert torch.equal(cached[:, :9], idx)  # the prompt is kept, not modified


def test_cached_and_uncached_logits_agree_along_a_generation(ours, idx):
    tokens = generate(ours, idx, 30)  # (B, 39)
    with torch.no_grad():
        full = ours(tokens[:, :-1])  # every position at once, no cache
        cache = KVCache(2, 2, 4, 39, 8)
        steps = [ours(tokens[:, :9], cache)] + [ours(tokens[:, t:t + 1], cache) for t in range(9, 38)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert torch.equal(full[:, 8:].argmax(-1), tokens[:, 9:])  # greedy = argmax of the uncached logits



def test_decoder_gives_the_modules_logits_exactly(ours, idx):
    tokens = generate(ours, idx, 12, use_cache=False)  # (B, 21): a sequence to feed one token at a time
    decode_step = _Decoder(ours)
    with torch.inference_mode():
        through_modules, direct = KVCache(2, 2, 4, 21, 8), KVCache(2, 2, 4, 21, 8)
        ours(tokens[:, :9], through_modules), ours(tokens[:, :9], direct)  # prefill both
        for t in range(9, 21):
            expected = ours(tokens[:, t:t + 1], through_modules, last_only=True)[:, -1, :]  # (B, V)
            got = decode_step(tokens[:, t:t + 1], direct)
            assert torch.equal(got, expected), f"step {t}: max |diff| {(got - expected).abs().max():.3g}"
    assert direct.n_seen == through_modules.n_seen == 21
    for layer in range(2):
        assert torch.equal(direct.keys[layer], through_modules.keys[layer])
        assert torch.equal(direct.values[layer], through_modules.values[layer])


def test_decoder_logits_of_several_new_tokens_are_the_modules_exactly(ours, idx):
    tokens = generate(ours, idx, 12, use_cache=False)  # (B, 21): fed in chunks of 1..4 after a prefill of 9
    decoder = _Decoder(ours)
    with torch.inference_mode():
        through_modules, direct = KVCache(2, 2, 4, 21, 8), KVCache(2, 2, 4, 21, 8)
        ours(tokens[:, :9], through_modules), ours(tokens[:, :9], direct)
        for start, stop in ((9, 12), (12, 13), (13, 17), (17, 19), (19, 21)):
            expected = ours(tokens[:, start:stop], through_modules)  # (B, L, V)
            got = decoder.logits(tokens[:, start:stop], direct)
            assert torch.equal(got, expected), f"chunk {start}:{stop}: max |diff| {(got - expected).abs().max():.3g}"
    assert direct.n_seen == through_modules.n_seen == 21


def test_generate_calls_a_hook_at_every_step(ours, idx):
    model = copy.deepcopy(ours)
    calls = []
    model.transformer.h[1].attn.c_attn.register_forward_hook(lambda mod, args, out: calls.append(out.shape))
    assert not _runs_as_built(model)
    tokens = generate(model, idx, 6)
    assert calls == [(2, 9, 96)] + [(2, 1, 96)] * 5  # the prefill, then one (B, 1, 3E) per step
    assert torch.equal(tokens, generate(ours, idx, 6))  # and the same tokens as without the hook


def test_generate_runs_a_replaced_module(ours, idx):
    class DoubledLinear(torch.nn.Linear):  # e.g. a LoRA layer: same weights, another forward
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    model = copy.deepcopy(ours)
    old = model.transformer.h[0].mlp.c_proj
    model.transformer.h[0].mlp.c_proj = DoubledLinear(old.in_features, old.out_features)
    model.transformer.h[0].mlp.c_proj.load_state_dict(old.state_dict())
    assert not _runs_as_built(model)
    cached = generate(model, idx, 12)
    assert torch.equal(cached, generate(model, idx, 12, use_cache=False))  # uncached always runs the modules
    assert not torch.equal(cached, generate(ours, idx, 12))  # the replacement changed the tokens


def test_a_global_hook_turns_the_decoder_off(ours):
    assert _runs_as_built(ours)
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda mod, args: None)
    try:
        assert not _runs_as_built(ours)
    finally:
        handle.remove()
    assert _runs_as_built(ours)

@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 5)])
def test_sampling_matches_a_reference_on_hugging_face_logits(hf, ours, idx, temperature, top_k):
    n = 15
    got = generate(ours, idx, n, do_sample=True, temperature=temperature, top_k=top_k,
                   generator=torch.Generator().manual_seed(3))
    uncached = generate(ours, idx, n, use_cache=False, do_sample=True, temperature=temperature, top_k=top_k,
                        generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, uncached)
    # reference: sample from HF's logits with the same generator, step by step
    g, seq = torch.Generator().manual_seed(3), idx
    with torch.no_grad():
        for _ in range(n):
            logits = hf(seq).logits[:, -1, :] / temperature  # (B, V)
            if top_k is not None:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(-1), 1, generator=g)  # (B, 1)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(got, seq)
    greedy = generate(ours, idx, n)
    assert not torch.equal(got, greedy)  # sampling really sampled


def test_uncached_generate_crops_to_block_size(hf, ours):
    prompt = torch.randint(0, VOCAB, (1, BLOCK - 2), generator=torch.Generator().manual_seed(4))
    out = generate(ours, prompt, 4, use_cache=False)  # past block_size: the context slides
    with torch.no_grad():
        expected_last = hf(out[:, -1 - BLOCK:-1]).logits[0, -1].argmax()
    assert out.shape == (1, BLOCK + 2) and out[0, -1] == expected_last
    with pytest.raises(ValueError, match=r"block_size=64.*62 \+ 4 = 66.*use_cache=False"):
        generate(ours, prompt, 4)


def test_positions_past_block_size_raise(ours):
    with pytest.raises(ValueError, match=r"block_size=64.*65"):
        ours(torch.zeros(1, BLOCK + 1, dtype=torch.long))
    cache = KVCache(2, 1, 4, 80, 8)
    ours(torch.zeros(1, 60, dtype=torch.long), cache)
    with pytest.raises(ValueError, match=r"block_size=64.*66 \(60 cached \+ 6 new\)"):
        ours(torch.zeros(1, 6, dtype=torch.long), cache)


def test_n_head_is_inferred_only_for_released_widths():
    with pytest.raises(ValueError, match=r"`n_head`.*n_embd=32.*pass n_head="):
        GPT.from_gpt2(hf_gpt2().state_dict())
    hf = hf_gpt2(n_embd=768, n_head=12, n_layer=1, n_positions=8)
    model = GPT.from_gpt2(hf.state_dict()).eval()
    assert model.config.n_head == 12
    idx = torch.randint(0, VOCAB, (1, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"`n_head`.*divisor of `n_embd`=768.*7"):
        GPT.from_gpt2(hf.state_dict(), n_head=7)


def test_untied_lm_head_and_bad_inputs_raise(hf, ours):
    state = dict(hf.state_dict())
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0
    with pytest.raises(ValueError, match="`lm_head.weight`.*ties"):
        GPT.from_gpt2(state, n_head=4)
    with pytest.raises(ValueError, match="`transformer.wte.weight`"):
        GPT.from_gpt2({"foo": torch.zeros(1)}, n_head=4)
    with pytest.raises(ValueError, match=r"`idx`.*\(B, L\).*float32"):
        ours(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"`temperature` > 0.*0"):
        generate(ours, torch.zeros(1, 3, dtype=torch.long), 2, do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match=r"`max_new_tokens`.*-1"):
        generate(ours, torch.zeros(1, 3, dtype=torch.long), -1)


# ---------------------------------------------------------------- from_gpt2 reads the Hugging Face config


def tiny_gpt2(**settings) -> GPT2LMHeadModel:
    """A random GPT-2 with n_layer=2, n_embd=32, n_head=2, vocab 50, n_positions 64 and `settings`."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=64, **settings)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # randomise biases and LayerNorm so that mix-ups show
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(mean=1.0 if "ln_" in name else 0.0, std=0.1)
    return model


@pytest.mark.parametrize("setting,value", [
    ("activation_function", "relu"),
    ("activation_function", "gelu"),  # exact GELU, not GPT-2's tanh approximation
    ("scale_attn_weights", False),
    ("scale_attn_by_inverse_layer_idx", True),
    ("reorder_and_upcast_attn", True),
    ("add_cross_attention", True),
    ("n_inner", 48),
])
def test_from_gpt2_refuses_settings_it_does_not_implement(setting, value):
    hf = tiny_gpt2(**{setting: value})
    message = rf"GPT does not implement the GPT-2 setting {setting}={value!r}"
    with pytest.raises(ValueError, match=message):
        GPT.from_gpt2(hf)
    with pytest.raises(ValueError, match=message):  # a state dict with its config: the same check
        GPT.from_gpt2(hf.state_dict(), config=hf.config)


@pytest.mark.parametrize("settings", [{}, {"activation_function": "gelu_pytorch_tanh"}, {"layer_norm_epsilon": 1e-2}])
def test_from_gpt2_with_a_supported_config_matches_hugging_face(settings, idx):
    hf = tiny_gpt2(**settings)
    model = GPT.from_gpt2(hf).eval()  # n_head=2 from the config; the width 32 alone would not tell it
    assert model.config.n_head == 2
    assert model.config.layer_norm_epsilon == hf.config.layer_norm_epsilon
    tokens = idx % 50
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-4, rtol=1e-4)


def test_from_gpt2_n_head_must_agree_with_the_config():
    hf = tiny_gpt2()
    with pytest.raises(ValueError, match=r"`n_head` to be the config's n_head=2 but got 4"):
        GPT.from_gpt2(hf, n_head=4)
    with pytest.raises(TypeError, match=r"`gpt2`.*GPT-2 model or its state dict.*str"):
        GPT.from_gpt2("gpt2")
    with pytest.raises(ValueError, match=r"`config` of a GPT-2.*'gpt_neo'"):
        GPT.from_gpt2(hf.state_dict(), config=GPTNeoConfig())
