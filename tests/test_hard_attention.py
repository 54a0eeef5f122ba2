"""attnkit.hard_attention: sampling against the weights, soft attention as the expectation, REINFORCE vs autograd."""

import pytest
import torch

from attnkit import (
    MovingAverageBaseline,
    argmax_hard_attention,
    reinforce_gradient,
    sample_hard_attention,
    scaled_dot_product_attention,
)

B, L, S, Ev = 2, 3, 5, 4  # L != S != Ev so a transposition cannot pass


@pytest.fixture
def weights_value():
    g = torch.Generator().manual_seed(0)
    weights = torch.softmax(torch.randn(B, L, S, generator=g) * 2, dim=-1)
    return weights, torch.randn(B, S, Ev, generator=g)


def test_sample_returns_the_value_row_it_picked(weights_value):
    weights, value = weights_value
    output, index, one_hot = sample_hard_attention(weights, value, torch.Generator().manual_seed(1))
    assert output.shape == (B, L, Ev) and index.shape == (B, L) and one_hot.shape == (B, L, S)
    torch.testing.assert_close(one_hot, torch.nn.functional.one_hot(index, S).float())
    for b in range(B):
        for i in range(L):
            torch.testing.assert_close(output[b, i], value[b, index[b, i]])


def test_sample_frequencies_follow_the_weights(weights_value):
    weights, value = weights_value
    N = 20_000
    _, index, one_hot = sample_hard_attention(weights.expand(N, B, L, S), value,
                                              torch.Generator().manual_seed(2))
    frequencies = one_hot.mean(dim=0)  # (B, L, S)
    torch.testing.assert_close(frequencies, weights, atol=0.02, rtol=0)
    never = torch.zeros(S)
    never[1] = 1.0  # a distribution with one possible position: always that one
    _, index, _ = sample_hard_attention(never.expand(100, S), value[0])
    assert (index == 1).all()


def test_soft_attention_is_the_expectation_of_hard_attention():
    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(B, L, 6, generator=g), torch.randn(B, S, 6, generator=g), torch.randn(B, S, Ev, generator=g)
    soft, weights = scaled_dot_product_attention(q, k, v)
    N = 20_000
    hard, _, _ = sample_hard_attention(weights.expand(N, B, L, S), v, torch.Generator().manual_seed(4))
    torch.testing.assert_close(hard.mean(dim=0), soft, atol=0.05, rtol=0)
    assert (hard[0] - soft).abs().max() > 0.1  # one sample is not the expectation


def test_sampling_is_reproducible_with_a_generator(weights_value):
    weights, value = weights_value
    big = weights.expand(50, B, L, S)
    first = sample_hard_attention(big, value, torch.Generator().manual_seed(7))[1]
    again = sample_hard_attention(big, value, torch.Generator().manual_seed(7))[1]
    other = sample_hard_attention(big, value, torch.Generator().manual_seed(8))[1]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_fully_masked_query_picks_nothing(weights_value):
    weights, value = weights_value
    weights = weights.clone()
    weights[1, 2] = 0.0
    for output, index, one_hot in (sample_hard_attention(weights, value), argmax_hard_attention(weights, value)):
        assert index[1, 2] == -1 and (one_hot[1, 2] == 0).all() and (output[1, 2] == 0).all()
        assert (index[0] >= 0).all()


def test_argmax_matches_torch_argmax_and_gather(weights_value):
    weights, value = weights_value
    output, index, one_hot = argmax_hard_attention(weights, value)
    expected_index = weights.argmax(dim=-1)  # (B, L)
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(output, torch.gather(value, 1, expected_index[..., None].expand(B, L, Ev)))
    assert torch.equal(one_hot.argmax(-1), expected_index) and (one_hot.sum(-1) == 1).all()


def test_invalid_weights_are_rejected(weights_value):
    weights, value = weights_value
    with pytest.raises(ValueError, match="non-negative"):
        sample_hard_attention(weights - 0.5, value)
    with pytest.raises(ValueError, match=r"`value`.*key length S"):
        argmax_hard_attention(weights, value[:, :-1])


# ------------------------------------------------------------------------------------------------
# REINFORCE


@pytest.fixture
def bandit():
    """Two categorical distributions over 4 positions, a reward per position, rewards far from zero."""
    g = torch.Generator().manual_seed(10)
    logits = torch.randn(2, 4, generator=g)
    rewards = 5.0 + torch.randn(2, 4, generator=g)

    def reward_fn(index):  # (N, 2) -> (N, 2)
        return rewards[torch.arange(2), index]

    logits_ = logits.clone().requires_grad_()
    (torch.softmax(logits_, -1) * rewards).sum().backward()  # E[reward], summed over the two
    return logits, reward_fn, logits_.grad


@pytest.mark.parametrize("baseline", [None, 4.0, "moving"])
def test_reinforce_estimates_the_exact_gradient(bandit, baseline):
    logits, reward_fn, exact = bandit
    if baseline == "moving":
        baseline = MovingAverageBaseline(0.9)
        reinforce_gradient(logits, reward_fn, 1000, torch.Generator().manual_seed(0), baseline)  # warm up
    estimate = reinforce_gradient(logits, reward_fn, 200_000, torch.Generator().manual_seed(11), baseline)
    assert estimate.shape == logits.shape
    torch.testing.assert_close(estimate, exact, atol=0.03, rtol=0)


def test_moving_average_baseline_reduces_variance(bandit):
    logits, reward_fn, exact = bandit
    g = torch.Generator().manual_seed(12)
    plain = torch.stack([reinforce_gradient(logits, reward_fn, 4, g) for _ in range(400)])
    baseline = MovingAverageBaseline(decay=0.9)
    centred = torch.stack([reinforce_gradient(logits, reward_fn, 4, g, baseline) for _ in range(400)])
    variance_plain, variance_centred = plain.var(dim=0).sum(), centred.var(dim=0).sum()
    assert variance_centred < 0.25 * variance_plain, (variance_centred, variance_plain)
    torch.testing.assert_close(centred[10:].mean(0), exact, atol=0.05, rtol=0)  # still unbiased
    assert baseline.value.shape == (2,)


def test_moving_average_baseline_update():
    baseline = MovingAverageBaseline(decay=0.8)
    assert baseline.value is None
    torch.testing.assert_close(baseline.update(torch.tensor([[1.0], [3.0]])), torch.tensor([2.0]))
    torch.testing.assert_close(baseline.update(torch.tensor([[7.0]])), torch.tensor([0.8 * 2.0 + 0.2 * 7.0]))
    with pytest.raises(ValueError, match="`decay`"):
        MovingAverageBaseline(decay=1.0)


def test_reinforce_rejects_bad_rewards_and_rows(bandit):
    logits, reward_fn, _ = bandit
    with pytest.raises(ValueError, match=r"`reward_fn\(index\)` shape to be \(8, 2\)"):
        reinforce_gradient(logits, lambda index: reward_fn(index)[:, 0], 8)
    with pytest.raises(ValueError, match="all -inf"):
        reinforce_gradient(torch.full((2, 4), float("-inf")), reward_fn, 8)
    with pytest.raises(ValueError, match="`num_samples`"):
        reinforce_gradient(logits, reward_fn, 0)


def test_first_call_with_a_fresh_baseline_is_centred_and_unbiased(bandit):
    """With no history the baseline must not be 0 (a huge first step), nor this sample's own reward."""
    logits, reward_fn, exact = bandit
    g = torch.Generator().manual_seed(13)
    plain = torch.stack([reinforce_gradient(logits, reward_fn, 8, g) for _ in range(2000)])
    first = torch.stack([reinforce_gradient(logits, reward_fn, 8, g, MovingAverageBaseline(0.9))
                         for _ in range(2000)])
    assert first.var(dim=0).sum() < 0.25 * plain.var(dim=0).sum()
    torch.testing.assert_close(first.mean(0), exact, atol=0.05, rtol=0)
