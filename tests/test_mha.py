"""attnkit.mha against torch: split/merge against reshape, MultiHeadAttention against nn.MultiheadAttention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit.masks import padding_mask
from attnkit.mha import MultiHeadAttention, merge_heads, split_heads

B, H, L, S, E = 2, 4, 5, 7, 16  # L != S and B, H > 1 so that transpositions show


@pytest.fixture
def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, L, E, generator=g), torch.randn(B, S, E, generator=g), torch.randn(B, S, E, generator=g)


def pair(**kwargs) -> tuple[nn.MultiheadAttention, MultiHeadAttention]:
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(E, H, batch_first=True, **kwargs).eval()
    with torch.no_grad():  # torch initialises biases to zero, which would hide a bias mix-up
        for p in ref.parameters():
            if p.dim() == 1:
                p.normal_()
    return ref, MultiHeadAttention.from_torch(ref).eval()


def assert_same(expected: tuple, got: tuple) -> None:
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
    if expected[1] is None:
        assert got[1] is None
    else:
        torch.testing.assert_close(got[1], expected[1], atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- split_heads / merge_heads


def test_split_heads_matches_reshape_reference():
    x = torch.randn(B, L, E)
    expected = x.reshape(B, L, H, E // H).permute(0, 2, 1, 3)  # (B, H, L, D)
    got = split_heads(x, H)
    assert got.shape == (B, H, L, E // H)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.data_ptr() == x.data_ptr()  # a view, no copy
    # the classic bug, transposing before viewing, gives something else
    assert not torch.equal(x.transpose(1, 2).reshape(B, H, L, E // H), expected)


def test_merge_heads_inverts_split_heads():
    x = torch.randn(B, L, E)
    torch.testing.assert_close(merge_heads(split_heads(x, H)), x, rtol=0, atol=0)
    y = torch.randn(B, H, L, 3)
    torch.testing.assert_close(merge_heads(y), y.permute(0, 2, 1, 3).reshape(B, L, H * 3), rtol=0, atol=0)


def test_split_merge_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"`num_heads`.*E=16.*5"):
        split_heads(torch.randn(B, L, E), 5)
    with pytest.raises(ValueError, match=r"`x`.*\(B, L, E\).*\(2, 16\)"):
        split_heads(torch.randn(2, 16), 4)
    with pytest.raises(ValueError, match=r"`x`.*\(B, H, L, D\)"):
        merge_heads(torch.randn(B, L, E))
    with pytest.raises(TypeError, match="`x`"):
        split_heads([[1.0]], 1)


# ---------------------------------------------------------------- MultiHeadAttention vs torch


@pytest.mark.parametrize("average", [True, False])
def test_from_torch_matches_without_masks(inputs, average):
    q, k, v = inputs
    ref, ours = pair()
    assert_same(ref(q, k, v, average_attn_weights=average), ours(q, k, v, average_attn_weights=average))


def test_from_torch_matches_with_batch_first_false(inputs):
    q, k, v = inputs
    torch.manual_seed(2)
    ref = nn.MultiheadAttention(E, H).eval()  # torch's default: (L, B, E)
    ours = MultiHeadAttention.from_torch(ref)
    out, w = ref(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))
    our_out, our_w = ours(q, k, v)
    torch.testing.assert_close(our_out.transpose(0, 1), out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(our_w, w, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("average", [True, False])
def test_key_padding_mask_is_inverted_from_torch(inputs, average):
    q, k, v = inputs
    ref, ours = pair()
    real = padding_mask([S, 4], S)  # (B, S), True = real token
    expected = ref(q, k, v, key_padding_mask=~real, average_attn_weights=average)  # torch: True = ignore
    got = ours(q, k, v, key_padding_mask=real, average_attn_weights=average)
    assert_same(expected, got)
    assert (got[1][1, ..., 4:] == 0).all()  # padded keys get no weight
    with pytest.warns(UserWarning, match="inverse"):  # torch's mask: sequence 0 all padding
        ours(q, k, v, key_padding_mask=~real)


def test_inverted_key_padding_mask_changes_the_result(inputs):
    q, k, v = inputs
    ref, ours = pair()
    real = padding_mask([6, 4], S)  # no sequence is all padding either way round, so no warning
    expected = ref(q, k, v, key_padding_mask=~real)
    assert_same(expected, ours(q, k, v, key_padding_mask=real))
    wrong = ours(q, k, v, key_padding_mask=~real)  # torch's mask passed as is: silently different
    assert not torch.allclose(wrong[0], expected[0], atol=1e-3)


@pytest.mark.parametrize("shape", ["2d", "3d"])
@pytest.mark.parametrize("average", [True, False])
def test_bool_attn_mask_is_inverted_from_torch(inputs, shape, average):
    q, k, v = inputs
    ref, ours = pair()
    g = torch.Generator().manual_seed(3)
    full = (B * H, L, S) if shape == "3d" else (L, S)
    allowed = torch.rand(full, generator=g) > 0.4  # True = may attend
    allowed[..., 2] = True  # every query keeps a key
    real = padding_mask([S, 5], S)
    expected = ref(q, k, v, attn_mask=~allowed, key_padding_mask=~real, average_attn_weights=average)
    got = ours(q, k, v, attn_mask=allowed, key_padding_mask=real, average_attn_weights=average)
    assert_same(expected, got)


def test_four_dim_attn_mask_matches_torch_three_dim(inputs):
    q, k, v = inputs
    ref, ours = pair()
    allowed = torch.rand(B, H, L, S, generator=torch.Generator().manual_seed(4)) > 0.5
    allowed[..., 0] = True
    expected = ref(q, k, v, attn_mask=~allowed.reshape(B * H, L, S), average_attn_weights=False)
    assert_same(expected, ours(q, k, v, attn_mask=allowed, average_attn_weights=False))


@pytest.mark.parametrize("average", [True, False])
def test_float_masks_are_added_as_in_torch(inputs, average):
    q, k, v = inputs
    ref, ours = pair()
    g = torch.Generator().manual_seed(5)
    attn_mask = torch.randn(L, S, generator=g)
    attn_mask[torch.rand(L, S, generator=g) > 0.7] = float("-inf")
    attn_mask[:, 1] = 0.0  # every query keeps a key
    kpm = torch.zeros(B, S)
    kpm[1, 5:] = float("-inf")  # float masks mean the same in both: added
    expected = ref(q, k, v, attn_mask=attn_mask, key_padding_mask=kpm, average_attn_weights=average)
    assert_same(expected, ours(q, k, v, attn_mask=attn_mask, key_padding_mask=kpm, average_attn_weights=average))


def test_is_causal_matches_torch_with_explicit_mask():
    torch.manual_seed(6)
    x = torch.randn(B, L, E)
    ref, ours = pair()
    torch_causal = torch.ones(L, L, dtype=torch.bool).triu(1)  # True = ignore the future
    expected = ref(x, x, x, attn_mask=torch_causal, is_causal=True, average_attn_weights=False)
    got = ours(x, x, x, is_causal=True, average_attn_weights=False)
    assert_same(expected, got)
    assert (got[1].triu(1) == 0).all()


def test_kdim_vdim_use_separate_torch_weights():
    torch.manual_seed(7)
    ref = nn.MultiheadAttention(E, H, batch_first=True, kdim=12, vdim=10).eval()
    assert ref.in_proj_weight is None  # torch keeps q/k/v_proj_weight apart
    ours = MultiHeadAttention.from_torch(ref)
    assert ours.k_proj.weight.shape == (E, 12) and ours.v_proj.weight.shape == (E, 10)
    q, k, v = torch.randn(B, L, E), torch.randn(B, S, 12), torch.randn(B, S, 10)
    real = padding_mask([6, S], S)
    assert_same(ref(q, k, v, key_padding_mask=~real, average_attn_weights=False),
                ours(q, k, v, key_padding_mask=real, average_attn_weights=False))


def test_no_bias_and_need_weights_false(inputs):
    q, k, v = inputs
    ref, ours = pair(bias=False)
    assert ours.q_proj.bias is None and ours.out_proj.bias is None
    expected = ref(q, k, v, need_weights=False)
    got = ours(q, k, v, need_weights=False)
    assert got[1] is None
    assert_same(expected, got)


def test_dropout_only_in_training_mode_like_torch(inputs):
    q, k, v = inputs
    ref, ours = pair(dropout=0.5)
    assert_same(ref(q, k, v), ours(q, k, v))  # eval(): no dropout in either
    ref.train()
    ours.train()
    torch.manual_seed(8)
    expected = ref(q, k, v, average_attn_weights=False)
    torch.manual_seed(8)
    got = ours(q, k, v, average_attn_weights=False)
    assert_same(expected, got)  # same random numbers drawn in the same order
    assert (got[1] == 0).any() and got[1].max() > 1.0  # dropped, survivors scaled by 1 / (1 - p)


def test_fully_masked_query_gives_zeros_where_torch_gives_nan(inputs):
    q, k, v = inputs
    ref, ours = pair()
    real = padding_mask([S, 3], S)  # sequence 1 has 3 real keys
    allowed = torch.ones(L, S, dtype=torch.bool)
    allowed[0, :3] = False  # query 0 may only see keys 3.., which are padding in sequence 1
    expected = ref(q, k, v, attn_mask=~allowed, key_padding_mask=~real)
    got = ours(q, k, v, attn_mask=allowed, key_padding_mask=real)
    assert torch.isnan(expected[0][1, 0]).all()
    assert (got[0][1, 0] == ours.out_proj.bias).all() and (got[1][1, 0] == 0).all()
    torch.testing.assert_close(got[0][0], expected[0][0], atol=1e-5, rtol=1e-5)  # the rest agrees
    torch.testing.assert_close(got[0][1, 1:], expected[0][1, 1:], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- errors


def test_masks_built_for_torch_warn_and_give_zeros_like_sdpa(inputs):
    q, k, v = inputs
    _, ours = pair()
    no_padding_for_torch = torch.zeros(B, S, dtype=torch.bool)  # torch: nothing ignored
    with pytest.warns(UserWarning, match=r"`key_padding_mask`.*inverse of nn.MultiheadAttention.*~"):
        out, w = ours(q, k, v, key_padding_mask=no_padding_for_torch)
    assert (w == 0).all() and torch.allclose(out, ours.out_proj.bias.expand_as(out))  # zero heads, then W_O
    torch_causal = torch.ones(L, S, dtype=torch.bool).triu(S - L + 1)  # last row all False
    with pytest.warns(UserWarning, match=r"`attn_mask`.*MAY ATTEND.*~attn_mask"):
        _, w = ours(q, k, v, attn_mask=torch_causal)
    assert (w[:, -1] == 0).all() and not torch.isnan(w).any()


def test_shape_errors_name_the_argument(inputs):
    q, k, v = inputs
    _, ours = pair()
    with pytest.raises(ValueError, match=r"`query`.*shape\[-1\] to be 16.*got 8"):
        ours(q[..., :8], k, v)
    with pytest.raises(ValueError, match=r"`key`.*batch first"):
        ours(q, k[0], v)
    with pytest.raises(ValueError, match=r"`value`.*shape\[1\] to be 7.*got 6"):
        ours(q, k, v[:, :6])
    with pytest.raises(ValueError, match=r"`attn_mask` shape to be \(5, 7\), \(8, 5, 7\) or \(2, 4, 5, 7\).*\(7, 5\)"):
        ours(q, k, v, attn_mask=torch.ones(S, L, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`key_padding_mask` shape to be \(2, 7\).*\(7, 2\)"):
        ours(q, k, v, key_padding_mask=torch.ones(S, B, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"`attn_mask`.*int64"):
        ours(q, k, v, attn_mask=torch.ones(L, S, dtype=torch.long))
    with pytest.raises(TypeError, match="`query`"):
        ours(q.tolist(), k, v)
    with pytest.raises(ValueError, match=r"`num_heads`.*`embed_dim`=16"):
        MultiHeadAttention(16, 3)


@pytest.mark.parametrize("setting", ["add_bias_kv", "add_zero_attn"])
def test_from_torch_refuses_what_it_cannot_copy_with_value_error(setting):
    # A ValueError naming the setting; NotImplementedError would read as "not implemented yet" in the
    # self-checks (attnkit.checks.core), which is what they say of an exercise stub.
    with pytest.raises(ValueError, match=rf"`mha`.*{setting}=True.*not supported"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(E, H, **{setting: True}))


def test_from_torch_refuses_a_non_mha():
    with pytest.raises(TypeError, match="`mha`.*Linear"):
        MultiHeadAttention.from_torch(nn.Linear(E, E))


def test_half_precision_fully_masked_query_keeps_projection_gradients_finite():
    # attnkit's MultiHeadAttention in float16, with a query that may attend to nothing, against the same
    # weights run in float64 through torch's linear layers and F.scaled_dot_product_attention.
    g = torch.Generator().manual_seed(7)
    q, k, v = torch.randn(B, L, E, generator=g), torch.randn(B, S, E, generator=g), torch.randn(B, S, E, generator=g)
    allowed = torch.rand(L, S, generator=g) > 0.3
    allowed[:, 0] = True
    allowed[1] = False  # query 1 may attend to nothing
    _, ours = pair()
    ours = ours.half()
    with pytest.warns(UserWarning, match="no key to attend to"):
        out, _ = ours(q.half(), k.half(), v.half(), attn_mask=allowed)
    out.float().sum().backward()

    weights = {n: p.detach().double().requires_grad_() for n, p in ours.named_parameters()}

    def proj(name, x):  # (B, length, E) -> (B, H, length, D)
        y = F.linear(x.half().double(), weights[f"{name}.weight"], weights[f"{name}.bias"])
        return y.view(B, -1, H, E // H).transpose(1, 2)

    heads = F.scaled_dot_product_attention(proj("q_proj", q), proj("k_proj", k), proj("v_proj", v), attn_mask=allowed)
    expected = F.linear(heads.transpose(1, 2).reshape(B, L, E), weights["out_proj.weight"], weights["out_proj.bias"])
    expected.sum().backward()
    torch.testing.assert_close(out.double(), expected.detach(), atol=5e-3, rtol=5e-3)
    for name, p in ours.named_parameters():
        assert torch.isfinite(p.grad).all(), f"{name}.grad has NaN"
        torch.testing.assert_close(p.grad.double(), weights[name].grad, atol=2e-2, rtol=5e-3, msg=name)
