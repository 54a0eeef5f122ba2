"""Stochastic hard attention: look at exactly one position, drawn from the attention weights.

Soft attention returns the expectation sum_j alpha_j v_j. Hard attention (Xu et al., 2015, "Show,
Attend and Tell") treats alpha as a categorical ("multinoulli") distribution, samples one position
s ~ alpha and returns v_s. Sampling has no gradient, so training uses a Monte-Carlo estimate:
the score-function (REINFORCE) estimator, whose variance a moving-average baseline reduces.

Shape legend (PyTorch's): B... any leading batch dims, L query length, S key length, Ev value width,
N number of Monte-Carlo samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from attnkit._validate import expect_ndim, expect_size, expect_tensor, shape_str
from attnkit.attention import softmax

__all__ = [
    "sample_hard_attention",
    "argmax_hard_attention",
    "reinforce_gradient",
    "MovingAverageBaseline",
]


def _expect_weights_value(weights: torch.Tensor, value: torch.Tensor) -> None:
    expect_tensor("weights", weights)
    expect_tensor("value", value)
    expect_ndim("weights", weights, 2, "(..., L, S)")
    expect_ndim("value", value, 2, "(..., S, Ev)")
    expect_size("value", value, -2, weights.shape[-1], "the key length S of the weights")
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError("Expected `weights` to be finite and non-negative (attention weights)")


def _sample_index(probs: torch.Tensor, num_samples: int, generator: torch.Generator | None) -> torch.Tensor:
    """Draw `num_samples` positions from each row of `probs`; -1 for a row of zeros (fully masked)."""
    S = probs.shape[-1]
    rows = probs.reshape(-1, S)  # (R, S), R = prod of the leading dims
    empty = rows.sum(dim=-1) == 0  # (R,): nothing to attend to
    safe = torch.where(empty[:, None], torch.ones_like(rows), rows)  # multinomial rejects zero rows
    index = torch.multinomial(safe, num_samples, replacement=True, generator=generator)  # (R, N)
    index = index.masked_fill(empty[:, None], -1)
    return index.T.reshape(num_samples, *probs.shape[:-1])  # (N, R) -> (N, ...)


def _gather_one_hot(index: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot rows for `index` (all zero where it is -1) and the value rows they pick."""
    S = value.shape[-2]
    one_hot = F.one_hot(index.clamp_min(0), S).to(value.dtype)  # (..., L, S)
    one_hot = one_hot * (index >= 0).unsqueeze(-1)  # a fully masked query picks nothing
    output = one_hot @ value  # (..., L, S) x (B..., S, Ev) -> (..., L, Ev)
    return output, one_hot


def sample_hard_attention(
    weights: torch.Tensor, value: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stochastic hard attention: each query samples one key position s ~ Categorical(alpha), returns v_s.

    Averaged over many samples this is soft attention, weights @ value. A fully masked query (a
    row of zeros) samples nothing: index -1, a zero one-hot row and a zero output, like SDPA.

    Shapes: weights (B..., L, S), value (B..., S, Ev)
        -> output (B..., L, Ev), index (B..., L) int64, one_hot (B..., L, S) in value's dtype.

    See chapters/01b_classic_attention.ipynb.
    """
    _expect_weights_value(weights, value)
    index = _sample_index(weights.detach(), 1, generator)[0]  # (1, B..., L) -> (B..., L)
    output, one_hot = _gather_one_hot(index, value)  # (B..., L, Ev), (B..., L, S)
    return output, index, one_hot


def argmax_hard_attention(
    weights: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic hard attention: each query takes the value at its largest weight.

    The mode of the distribution that `sample_hard_attention` samples from, e.g. at test time.
    Ties go to the first position; a fully masked query gets index -1 and a zero output.

    Shapes: weights (B..., L, S), value (B..., S, Ev)
        -> output (B..., L, Ev), index (B..., L) int64, one_hot (B..., L, S) in value's dtype.

    See chapters/01b_classic_attention.ipynb.
    """
    _expect_weights_value(weights, value)
    index = weights.detach().argmax(dim=-1)  # (B..., L)
    index = index.masked_fill(weights.detach().sum(dim=-1) == 0, -1)
    output, one_hot = _gather_one_hot(index, value)  # (B..., L, Ev), (B..., L, S)
    return output, index, one_hot


@dataclass
class MovingAverageBaseline:
    """A running mean of past rewards, b <- decay * b + (1 - decay) * mean(rewards), to subtract from them.

    Centring the rewards leaves the REINFORCE estimate unbiased (b does not depend on the current
    samples) and shrinks its variance when rewards sit far from zero. The first update sets b to the
    batch mean instead of decaying from zero; `value` is None before that and is then read as 0.

    Shapes: `update(rewards (N, B...))` -> value (B...), one baseline per distribution.

    See chapters/01b_classic_attention.ipynb.
    """

    decay: float = 0.9  # weight of the past; Xu et al. use 0.9
    value: torch.Tensor | None = None  # (B...), None until the first update

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"Expected `decay` in [0, 1) but got {self.decay}")

    def update(self, rewards: torch.Tensor) -> torch.Tensor:
        """Fold the mean of a batch of rewards (sample dim first) into the baseline and return it.

        Shapes: rewards (N, B...) -> value (B...).

        See chapters/01b_classic_attention.ipynb.
        """
        expect_tensor("rewards", rewards)
        rewards = rewards.detach() if rewards.is_floating_point() else rewards.float()
        batch_mean = rewards.mean(dim=0)  # (N, B...) -> (B...)
        if self.value is None:
            self.value = batch_mean
        else:
            self.value = self.decay * self.value + (1.0 - self.decay) * batch_mean
        return self.value


def reinforce_gradient(
    logits: torch.Tensor,
    reward_fn: Callable[[torch.Tensor], torch.Tensor],
    num_samples: int,
    generator: torch.Generator | None = None,
    baseline: MovingAverageBaseline | float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Monte-Carlo (REINFORCE, score-function) estimate of d E_{s ~ softmax(logits)}[reward(s)] / d logits.

    Uses grad E[r] = E[(r(s) - b) grad log p(s)], with grad_logits log p(s) = one_hot(s) - softmax(logits),
    averaged over `num_samples` draws; any b that does not depend on s keeps it unbiased.

    Shapes: logits (B..., S) -> gradient (B..., S). `reward_fn(index)` gets the sampled positions
        (N, B...) int64 and returns rewards (N, B...). A MovingAverageBaseline is read (before this
        call's rewards) and then updated with them; on its first call, with no history, each sample
        is baselined by the mean of the other samples' rewards. A float or (B...) tensor is used as is.

    See chapters/01b_classic_attention.ipynb.
    """
    expect_tensor("logits", logits)
    expect_ndim("logits", logits, 1, "(..., S)")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"Expected `num_samples` to be a positive int but got {num_samples!r}")
    S = logits.shape[-1]
    probs = softmax(logits.detach(), dim=-1)  # (B..., S)
    if (probs.sum(dim=-1) == 0).any():
        raise ValueError("Expected every row of `logits` to have a finite entry but one is all -inf")

    index = _sample_index(probs, num_samples, generator)  # (N, B...)
    rewards = reward_fn(index)  # (N, B...)
    expect_tensor("reward_fn(index)", rewards)
    if rewards.shape != index.shape:
        raise ValueError(
            f"Expected `reward_fn(index)` shape to be {shape_str(index.shape)} (one reward per sample) "
            f"but got {shape_str(rewards.shape)}"
        )
    rewards = rewards.detach().to(probs.dtype)

    if isinstance(baseline, MovingAverageBaseline) and baseline.value is None and num_samples > 1:
        # No history yet: each sample's baseline is the mean reward of the *other* samples
        # (leave-one-out), which does not depend on its own draw, so the estimate stays unbiased.
        b = (rewards.sum(dim=0, keepdim=True) - rewards) / (num_samples - 1)  # (N, B...)
    elif isinstance(baseline, MovingAverageBaseline):
        b = 0.0 if baseline.value is None else baseline.value  # (B...) or scalar
    else:
        b = 0.0 if baseline is None else baseline
    score = F.one_hot(index, S).to(probs.dtype) - probs  # (N, B..., S): grad of log p(s) w.r.t. logits
    gradient = ((rewards - b).unsqueeze(-1) * score).mean(dim=0)  # (N, B..., S) -> (B..., S)
    if isinstance(baseline, MovingAverageBaseline):
        baseline.update(rewards)  # after use: b must not depend on this call's samples
    return gradient
