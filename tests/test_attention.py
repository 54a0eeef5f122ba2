"""attnkit.scaled_dot_product_attention against torch.nn.functional.scaled_dot_product_attention."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnkit import scaled_dot_product_attention, softmax

# Shapes chosen so a transposition cannot pass: B > 1, H > 1, L != S, E != Ev.
B, H, L, S, E, Ev = 2, 3, 4, 6, 8, 5


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, H, L, E, generator=g), torch.randn(B, H, S, E, generator=g),
            torch.randn(B, H, S, Ev, generator=g))


def reference_weights(q, k, mask=None, scale=None):
    """Weights the slow obvious way, with torch's softmax (rows of -inf handled separately)."""
    scores = q @ k.transpose(-2, -1) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)


def test_no_mask_matches_torch(qkv):
    q, k, v = qkv
    out, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(w, reference_weights(q, k))
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, L))


@pytest.mark.parametrize("mask_shape", [(L, S), (B, 1, L, S), (B, H, L, S), (1, 1, 1, S)])
def test_bool_mask_true_means_may_attend(qkv, mask_shape):
    q, k, v = qkv
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(*mask_shape, generator=g) > 0.3
    mask[..., 0] = True
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.testing.assert_close(w, reference_weights(q, k, mask))
    assert (w.masked_select(~mask.expand(B, H, L, S)) == 0).all()


def test_float_mask_is_added(qkv):
    q, k, v = qkv
    g = torch.Generator().manual_seed(2)
    mask = torch.randn(L, S, generator=g)
    mask[1, 2:] = float("-inf")
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.testing.assert_close(w, reference_weights(q, k, mask))


def test_fully_masked_rows_give_zeros_like_torch(qkv):
    q, k, v = qkv
    mask = torch.ones(L, S, dtype=torch.bool)
    mask[2] = False  # query 2 may attend to nothing
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, expected)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert (out[:, :, 2] == 0).all() and (w[:, :, 2] == 0).all()
    torch.testing.assert_close(w[:, :, [0, 1, 3]].sum(-1), torch.ones(B, H, 3))


@pytest.mark.parametrize("Lq,Sk", [(4, 4), (4, 6), (6, 4)])
def test_is_causal_is_top_left_like_torch(Lq, Sk):
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(B, Lq, E, generator=g), torch.randn(B, Sk, E, generator=g)
    v = torch.randn(B, Sk, Ev, generator=g)
    out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert (w[:, 0, 1:] == 0).all()  # top-left: the first query sees only the first key


def test_scale_matches_torch(qkv):
    q, k, v = qkv
    out, w = scaled_dot_product_attention(q, k, v, scale=0.37)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.37))
    torch.testing.assert_close(w, reference_weights(q, k, scale=0.37))


def test_dropout_zero_is_identity_and_dropout_rescales(qkv):
    q, k, v = qkv
    out, _ = scaled_dot_product_attention(q, k, v, dropout_p=0.0)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, dropout_p=0.0))
    torch.manual_seed(0)
    _, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    kept = w != 0
    torch.testing.assert_close(w[kept], 2 * reference_weights(q, k)[kept])  # survivors scaled by 1/(1-p)
    assert 0.3 < kept.float().mean() < 0.7


def test_gqa_matches_torch():
    g = torch.Generator().manual_seed(4)
    q = torch.randn(B, 4, L, E, generator=g)
    k, v = torch.randn(B, 2, S, E, generator=g), torch.randn(B, 2, S, Ev, generator=g)
    out, _ = scaled_dot_product_attention(q, k, v, enable_gqa=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, enable_gqa=True))


def test_gradients_match_torch(qkv):
    q, k, v = (t.clone().requires_grad_() for t in qkv)
    scaled_dot_product_attention(q, k, v)[0].sum().backward()
    q2, k2, v2 = (t.clone().requires_grad_() for t in qkv)
    F.scaled_dot_product_attention(q2, k2, v2).sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(a.grad, b.grad)


def test_softmax_is_stable_and_safe():
    x = torch.tensor([[1000.0, 1001.0, 1002.0], [float("-inf")] * 3, [-1e30, 0.0, float("-inf")]])
    w = softmax(x)
    torch.testing.assert_close(w[0], torch.softmax(x[0], -1))
    assert (w[1] == 0).all()
    torch.testing.assert_close(w[2], torch.tensor([0.0, 1.0, 0.0]))


def test_inputs_are_not_modified(qkv):
    q, k, v = qkv
    copies = [t.clone() for t in qkv]
    mask = torch.ones(L, S, dtype=torch.bool)
    scaled_dot_product_attention(q, k, v, attn_mask=mask)
    for t, c in zip(qkv, copies, strict=True):
        assert torch.equal(t, c)


@pytest.mark.parametrize("kwargs,message", [
    ({"key": torch.zeros(2, 6, 7)}, r"`key`.shape\[-1\] to be 8"),
    ({"value": torch.zeros(2, 5, 5)}, r"`value`.shape\[-2\] to be 6"),
    ({"attn_mask": torch.ones(6, 4, dtype=torch.bool)},
     r"Expected `attn_mask` shape to be broadcastable to \(2, 4, 6\) but got \(6, 4\)"),
    ({"attn_mask": torch.ones(4, 6, dtype=torch.int64)}, r"`attn_mask` to be a bool tensor"),
    ({"query": [[1.0]]}, r"Expected `query` to be a torch.Tensor but got list"),
    ({"query": torch.zeros(8)}, r"`query` to have at least 2 dimensions"),
    ({"dropout_p": 1.5}, r"`dropout_p` in \[0, 1\)"),
])
def test_errors_name_argument_expected_and_actual(kwargs, message):
    args = {"query": torch.zeros(2, 4, 8), "key": torch.zeros(2, 6, 8), "value": torch.zeros(2, 6, 5)}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        scaled_dot_product_attention(**args)


def test_mask_and_is_causal_together_is_an_error(qkv):
    with pytest.raises(ValueError, match="not both"):
        scaled_dot_product_attention(*qkv, attn_mask=torch.ones(L, S, dtype=torch.bool), is_causal=True)


# ---------------------------------------------------------------- float16 / bfloat16


def _run_with_grads(attend, q, k, v, mask, grad_out):
    """Output and (dq, dk, dv) of `attend` for the upstream gradient `grad_out`."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = attend(q, k, v, mask)
    (out * grad_out.to(out.dtype)).sum().backward()
    return out.detach(), q.grad, k.grad, v.grad


def _relative_error(x, reference):
    return ((x.double() - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_with_fully_masked_row_is_finite_and_as_accurate_as_torch(dtype):
    # Larger than the fixture so the rounding errors average out: scores of size ~10 in half precision.
    g = torch.Generator().manual_seed(5)
    Bh, Hh, Lh, Sh, Eh, Evh = 2, 3, 16, 24, 32, 40
    q, k = 2 * torch.randn(Bh, Hh, Lh, Eh, generator=g), 2 * torch.randn(Bh, Hh, Sh, Eh, generator=g)
    v, grad_out = torch.randn(Bh, Hh, Sh, Evh, generator=g), torch.randn(Bh, Hh, Lh, Evh, generator=g)
    mask = torch.rand(Lh, Sh, generator=g) > 0.3
    mask[:, 0] = True
    mask[3] = False  # query 3 may attend to nothing
    q, k, v, grad_out = (t.to(dtype) for t in (q, k, v, grad_out))

    def ours(q, k, v, m):
        return scaled_dot_product_attention(q, k, v, attn_mask=m)[0]

    def torchs(q, k, v, m):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m)

    exact = _run_with_grads(torchs, *(t.double() for t in (q, k, v)), mask, grad_out.double())
    theirs = _run_with_grads(torchs, q, k, v, mask, grad_out)
    got = _run_with_grads(ours, q, k, v, mask, grad_out)
    for name, a, t, x in zip(("output", "dq", "dk", "dv"), got, theirs, exact, strict=True):
        assert a.dtype == dtype, name
        assert torch.isfinite(a).all(), f"{name} has NaN/inf"
        assert (a[t == 0] == 0).all(), f"{name}: not zero where torch's is"
        ours_err, torch_err = _relative_error(a, x), _relative_error(t, x)
        # measured: the same error as torch's (ratio 1.00); rounding scores to half first gave ~6x
        assert ours_err <= 1.5 * torch_err, f"{name}: error {ours_err:.2e} vs torch's {torch_err:.2e}"
    assert (got[0][:, :, 3] == 0).all() and (got[1][:, :, 3] == 0).all()  # output and dq of query 3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_softmax_half_precision_fully_masked_row_has_zero_gradient(dtype):
    g = torch.Generator().manual_seed(6)
    x = (4 * torch.randn(3, 7, generator=g)).to(dtype)
    x[1] = float("-inf")
    x[2, :3] = float("-inf")
    x.requires_grad_()
    w = softmax(x)
    assert w.dtype == dtype
    upstream = torch.randn(3, 7, generator=g).to(dtype)
    (w * upstream).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all() and (w[1] == 0).all()
    # the other rows: torch's softmax in float32, rounded once
    x32 = x.detach()[[0, 2]].float().requires_grad_()
    w32 = torch.softmax(x32, dim=-1)
    (w32 * upstream[[0, 2]].float()).sum().backward()
    torch.testing.assert_close(w[[0, 2]], w32.to(dtype), rtol=0, atol=0)
    torch.testing.assert_close(x.grad[[0, 2]], x32.grad.to(dtype))


def test_entropy_matches_torch_categorical_and_gives_no_nan_on_zero_weights():
    from attnkit.attention import entropy

    g = torch.Generator().manual_seed(0)
    w = torch.softmax(torch.randn(3, 4, 7, generator=g), dim=-1)
    want = torch.distributions.Categorical(probs=w).entropy()
    torch.testing.assert_close(entropy(w), want)
    masked = torch.tensor([0.5, 0.5, 0.0, 0.0])  # masked keys: weight exactly 0
    assert entropy(masked).item() == pytest.approx(math.log(2))
    assert entropy(torch.tensor([0.0, 1.0, 0.0])).item() == 0.0
