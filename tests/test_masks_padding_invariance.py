"""attnkit.padding_invariance: a correct padding mask gives 0, a missing or misplaced one does not."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnkit import padding_invariance, padding_mask


def setup(B=3, L=5, E=6, D=4, Dv=3, lengths=(5, 2, 3)):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, L, E, generator=g)
    W_q, W_k, W_v = (torch.randn(n, E, generator=g) / math.sqrt(E) for n in (D, D, Dv))
    return x, (W_q, W_k, W_v), torch.tensor(lengths)


def attention(x, weights, mask):
    W_q, W_k, W_v = weights
    return F.scaled_dot_product_attention(F.linear(x, W_q), F.linear(x, W_k), F.linear(x, W_v), attn_mask=mask)


def test_key_padding_mask_is_invariant_and_no_mask_is_not():
    x, w, lengths = setup()
    keys = lambda x, n: attention(x, w, padding_mask(n, x.shape[1])[:, None, :])  # noqa: E731 - (B, 1, S)
    assert padding_invariance(keys, x, lengths) < 1e-5
    assert padding_invariance(lambda x, n: attention(x, w, None), x, lengths) > 1.0


def test_a_mask_on_the_query_axis_is_caught():
    # the classic bug: (B, L, 1) hides pad *queries*, so real queries still read the pad keys
    x, w, lengths = setup()
    queries = lambda x, n: attention(x, w, padding_mask(n, x.shape[1])[:, :, None])  # noqa: E731
    assert padding_invariance(queries, x, lengths) > 1.0


def test_tuple_outputs_and_the_noise_stay_in_the_pad_positions():
    x, w, lengths = setup()
    seen = []

    def fn(inputs, n):
        seen.append(inputs.clone())
        return attention(inputs, w, padding_mask(n, inputs.shape[1])[:, None, :]), "weights"

    assert padding_invariance(fn, x, lengths) < 1e-5
    original, other = seen
    real = padding_mask(lengths, x.shape[1])  # (B, L)
    assert torch.equal(original, x) and torch.equal(other[real], x[real])
    assert (other[~real] - x[~real]).abs().min() > 0  # every pad value changed


def test_nothing_to_compare_and_bad_inputs():
    x, w, _ = setup()
    assert padding_invariance(lambda x, n: attention(x, w, None), x, torch.tensor([0, 0, 0])) == 0.0
    with pytest.raises(ValueError, match="lengths"):
        padding_invariance(lambda x, n: x, x, torch.tensor([5, 2]))
    with pytest.raises(ValueError, match=r"\(B, L, E\)"):
        padding_invariance(lambda x, n: x, x[0], torch.tensor([5]))
    with pytest.raises(ValueError, match="fn"):
        padding_invariance(lambda x, n: x[:, :2], x, torch.tensor([5, 2, 3]))
