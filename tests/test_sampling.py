"""attnkit.sampling against transformers' logits warpers on the same logits."""

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from attnkit import apply_temperature, sample_next, sampling_probs, top_k_filter, top_p_filter


def logits(seed=0, B=4, V=50):
    return torch.randn(B, V, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_temperature_equals_hf(t):
    x = logits()
    torch.testing.assert_close(apply_temperature(x, t), TemperatureLogitsWarper(t)(None, x.clone()))


@pytest.mark.parametrize("k", [1, 5, 50, 80])
def test_top_k_equals_hf(k):
    x = logits(1)
    torch.testing.assert_close(top_k_filter(x, k), TopKLogitsWarper(k)(None, x.clone()))


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999, 1.0])
def test_top_p_equals_hf(p):
    for seed in range(5):
        x = logits(seed)
        torch.testing.assert_close(top_p_filter(x, p), TopPLogitsWarper(p)(None, x.clone()))


def test_top_p_keeps_the_token_that_crosses_p():
    x = torch.tensor([[0.5, 0.3, 0.2]]).log()
    assert torch.isfinite(top_p_filter(x, 0.6)).tolist() == [[True, True, False]]  # 0.5 < 0.6: 0.3 crosses
    assert torch.isfinite(top_p_filter(x, 0.5)).tolist() == [[True, False, False]]


def test_composition_equals_hf_in_hf_order():
    x = logits(3)
    hf = x.clone()
    for warper in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(10), TopPLogitsWarper(0.8)):
        hf = warper(None, hf)
    torch.testing.assert_close(sampling_probs(x, 0.7, 10, 0.8), hf.softmax(-1))
    torch.testing.assert_close(sampling_probs(x).sum(-1), torch.ones(4))


def test_sample_next_is_seeded_greedy_is_argmax_and_stays_in_the_nucleus():
    x = logits(4)
    draw = lambda: sample_next(x, 1.2, top_p=0.6, generator=torch.Generator().manual_seed(7))  # noqa: E731
    assert torch.equal(draw(), draw())
    assert torch.equal(sample_next(x, greedy=True), x.argmax(-1))
    allowed = torch.isfinite(top_p_filter(x / 1.2, 0.6))
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        tokens = sample_next(x, 1.2, top_p=0.6, generator=gen)
        assert allowed[torch.arange(4), tokens].all()


@pytest.mark.parametrize("call, error, name", [
    (lambda: apply_temperature(logits(), 0.0), ValueError, "`temperature`"),
    (lambda: apply_temperature(logits(), "hot"), TypeError, "`temperature`"),
    (lambda: apply_temperature(torch.ones(3, dtype=torch.long), 1.0), TypeError, "`logits`"),
    (lambda: top_k_filter(logits(), 0), ValueError, "`k`"),
    (lambda: top_k_filter(logits(), 2.5), TypeError, "`k`"),
    (lambda: top_p_filter(logits(), 1.5), ValueError, "`p`"),
    (lambda: top_p_filter(logits(), 0.0), ValueError, "`p`"),
    (lambda: top_p_filter([1.0], 0.5), TypeError, "`logits`"),
    (lambda: sample_next(torch.randn(2, 3, 4)), ValueError, "`logits`"),
])
def test_bad_input_names_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
