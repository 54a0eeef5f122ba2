"""attnkit.block: the pre-norm block equals attnkit.gpt.Block and Hugging Face's GPT2Block on the same weights."""

import pytest
import torch
from transformers import GPT2Config
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

from attnkit import GPTConfig, TransformerBlock, causal_mask, gradient_norms_by_depth
from attnkit.gpt import Block


def randomised(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.3 if p.dim() == 2 else 0.1))
    return module


def test_pre_norm_block_equals_gpt_block():
    ours = randomised(TransformerBlock(24, 3))
    gpt_block = Block(GPTConfig(n_embd=24, n_head=3))
    gpt_block.load_state_dict(ours.state_dict())  # the same parameter names
    x = torch.randn(2, 7, 24)
    torch.testing.assert_close(ours(x), gpt_block(x))


def test_pre_norm_block_equals_hf_gpt2_block():
    E, H = 32, 4
    ours = randomised(TransformerBlock(E, H), seed=1).eval()
    config = GPT2Config(n_embd=E, n_head=H, n_positions=16, attn_pdrop=0.0, resid_pdrop=0.0)
    config._attn_implementation = "eager"  # the written-out attention; the causal mask is passed explicitly
    hf = GPT2Block(config, layer_idx=0).eval()
    state = {}
    for name, w in ours.state_dict().items():  # HF's Conv1D stores (in, out): transpose nn.Linear's (out, in)
        state[name] = w.t() if name.endswith("weight") and w.dim() == 2 else w
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all(name.endswith(("attn.bias", "attn.masked_bias")) for name in missing)
    x = torch.randn(2, 9, E)
    causal = torch.zeros(9, 9).masked_fill(~causal_mask(9), float("-inf"))[None, None]  # (1, 1, L, L), added
    out = hf(x, attention_mask=causal)
    out = out[0] if isinstance(out, tuple) else out
    torch.testing.assert_close(ours(x), out, atol=1e-5, rtol=1e-4)


def test_post_norm_and_no_residual_compute_what_they_say():
    torch.manual_seed(0)
    pre = randomised(TransformerBlock(16, 2))
    post = TransformerBlock(16, 2, norm_first=False)
    post.load_state_dict(pre.state_dict())
    bare = TransformerBlock(16, 2, residual=False)
    bare.load_state_dict(pre.state_dict())
    x = torch.randn(2, 5, 16)
    h = pre.ln_1(x + pre.attn(x))
    torch.testing.assert_close(post(x), pre.ln_2(h + pre.mlp(h)))
    h = pre.attn(pre.ln_1(x))
    torch.testing.assert_close(bare(x), pre.mlp(pre.ln_2(h)))


def test_block_is_causal():
    block = randomised(TransformerBlock(16, 4))
    x = torch.randn(1, 6, 16)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(block(x)[:, :4], block(y)[:, :4])


def test_residuals_keep_the_first_layers_gradients():
    with_res = gradient_norms_by_depth(16)
    without = gradient_norms_by_depth(16, residual=False)
    assert with_res.shape == (16,)
    assert with_res[0] / with_res[-1] > 0.5  # the first block learns about as fast as the last
    assert without[0] / without[-1] < 0.5 * with_res[0] / with_res[-1]  # without residuals it fades
    assert torch.equal(gradient_norms_by_depth(4, seed=3), gradient_norms_by_depth(4, seed=3))


@pytest.mark.parametrize("call, error, name", [
    (lambda: TransformerBlock(10, 3), ValueError, "`n_head`"),
    (lambda: TransformerBlock(8, 2)(torch.randn(2, 8)), ValueError, "`x`"),
    (lambda: TransformerBlock(8, 2)(torch.randn(2, 3, 6)), ValueError, "`x`"),
    (lambda: TransformerBlock(8, 2)("x"), TypeError, "`x`"),
    (lambda: gradient_norms_by_depth(0), ValueError, "`n_layer`"),
])
def test_bad_input_names_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
