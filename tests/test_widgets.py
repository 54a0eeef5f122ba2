"""attnkit.widgets without a browser: each explorer redraws its Output when a control moves, and the pure
`*_explorer_data` functions compute what is drawn (checked against torch and brute force)."""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from widget_helpers import assert_redraws, controls, shown

from attnkit import widgets as W


def test_import_is_cheap():
    heavy = "('torch', 'matplotlib', 'ipywidgets')"
    code = f"import sys, attnkit.widgets; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------


def test_temperature_data_matches_torch_softmax():
    scores = torch.tensor([2.0, 0.0, -1.0, 3.0])
    data = W.temperature_explorer_data(d_k=16, temperature=0.5, scaled=True, scores=scores)
    expected = torch.softmax(scores / 4 / 0.5, dim=0)
    torch.testing.assert_close(data["weights"], expected)
    assert data["entropy"] == pytest.approx(-(expected * expected.log()).sum().item())
    assert data["max_entropy"] == pytest.approx(math.log(4))
    # sampled scores: variance grows with d_k, so unscaled weights saturate and scaling undoes it
    low = W.temperature_explorer_data(d_k=512, scaled=False)
    high = W.temperature_explorer_data(d_k=512, scaled=True)
    assert low["entropy"] < 0.5 * high["entropy"]
    assert W.temperature_explorer_data(d_k=4)["scores"].shape == (8,)


def test_temperature_explorer_redraws():
    box = W.temperature_explorer()
    assert {"d_k", "scale by 1/sqrt(d_k)", "temperature"} <= set(controls(box))
    assert_redraws(box, "temperature", 0.3)
    assert_redraws(box, "d_k", 256)
    assert_redraws(box, "scale by 1/sqrt(d_k)", False)
    given = W.temperature_explorer([1.0, 2.0, 3.0], labels=["a", "b", "c"])
    assert set(controls(given)) == {"temperature"}  # d_k means nothing for given scores
    assert_redraws(given, "temperature", 5.0)


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alignment", ["monotonic", "predictive"])
def test_local_attention_data_respects_the_window(alignment):
    D, L, S = 2, 7, 10
    data = W.local_attention_explorer_data(D, alignment, query_index=3, L=L, S=S)
    centers, weights = data["centers"], data["weights"]
    outside = (torch.arange(S)[None, :] - centers[:, None]).abs() > D  # brute force, (L, S)
    assert (weights[outside] == 0).all() and (weights[~outside] > 0).all()
    torch.testing.assert_close(data["row"], weights[3])
    assert data["center"] == centers[3].item()
    x = data["gaussian_positions"]
    torch.testing.assert_close(data["gaussian"], torch.exp(-((x - centers[3]) ** 2) / (2 * (D / 2) ** 2)))
    if alignment == "monotonic":
        assert centers.tolist() == list(range(L))
    else:
        assert ((centers > 0) & (centers < S)).all() and centers.tolist() != list(range(L))


def test_local_attention_explorer_redraws():
    box = W.local_attention_explorer()
    assert set(controls(box)) == {"D", "alignment", "query", "gaussian"}
    assert_redraws(box, "D", 4)
    assert_redraws(box, "alignment", "predictive")
    assert_redraws(box, "query", 2)
    assert_redraws(box, "gaussian", False)


# ------------------------------------------------------------------------------------------------


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 6, generator=g), torch.randn(5, 6, generator=g), torch.randn(5, 3, generator=g)


def test_attention_data_matches_torch_sdpa(qkv):
    q, k, v = qkv
    data = W.attention_explorer_data(q, k, v, index=2)
    torch.testing.assert_close(data["output"], F.scaled_dot_product_attention(q, k, v)[2])
    torch.testing.assert_close(data["scores"], k @ q[2] / math.sqrt(6))
    torch.testing.assert_close(data["contributions"].sum(0), data["output"])
    torch.testing.assert_close(data["weights"].sum(), torch.tensor(1.0))


def test_attention_explorer_redraws(qkv):
    q, k, v = qkv
    box = W.attention_explorer(q, k, v, labels=list("abcde"), query_labels=list("wxyz"))
    picker = controls(box)["query"]
    assert [label for label, _ in picker.options] == list("wxyz")
    assert "'z'" in assert_redraws(box, "query", 3)
    with pytest.raises(ValueError, match="Expected 5 `labels`"):
        W.attention_explorer(q, k, v, labels=["a"])


def test_attention_explorer_starts_at_index(qkv):
    q, k, v = qkv  # 4 queries
    box = W.attention_explorer(q, k, v, query_labels=list("wxyz"), index=2)
    assert controls(box)["query"].value == 2
    assert "query 'y'" in shown(box)[1]  # the first drawing is already query 2
    with pytest.raises(ValueError, match=r"Expected `index` .* in \[0, 4\) but got 4"):
        W.attention_explorer(q, k, v, index=4)


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "padding", "causal", "both"])
def test_mask_data_matches_a_brute_force_mask(mode):
    lengths, S = [4, 2, 0], 4
    data = W.mask_explorer_data(lengths, mode, S)
    expected = torch.tensor([[[(mode in ("none", "causal") or j < n) and (mode in ("none", "padding") or j <= i)
                               for j in range(S)] for i in range(S)] for n in lengths])
    assert torch.equal(data["mask"], expected)
    w = data["weights"]
    assert (w[~expected] == 0).all()
    row_sums = w.sum(-1)
    torch.testing.assert_close(row_sums, expected.any(-1).float())  # 1, or 0 for a fully masked query (SDPA)
    x = torch.randn(3, S, 8, generator=torch.Generator().manual_seed(0))  # the explorer's seeded inputs
    torch.testing.assert_close(w @ x, F.scaled_dot_product_attention(x, x, x, attn_mask=expected).nan_to_num(0))


def test_mask_explorer_redraws():
    box = W.mask_explorer((5, 3))
    assert set(controls(box)) == {"mask", "length 0", "length 1"}
    assert_redraws(box, "mask", "causal")
    assert "lengths [5, 1]" in assert_redraws(box, "length 1", 1)
    assert "lengths [0, 1]" in assert_redraws(box, "length 0", 0)
    assert_redraws(box, "mask", "padding")


# ------------------------------------------------------------------------------------------------


@pytest.fixture
def stack():
    return torch.softmax(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)), dim=-1)


def test_heads_data_picks_layer_and_head(stack):
    data = W.heads_explorer_data(stack, 1, 2)
    torch.testing.assert_close(data["weights"], stack[1, 2])
    torch.testing.assert_close(data["entropy"], -(stack[1, 2] * stack[1, 2].log()).sum(-1))
    torch.testing.assert_close(W.heads_explorer_data(stack[0], 0, 1)["weights"], stack[0, 1])  # (H, L, S)
    with pytest.raises(ValueError, match="`head`"):
        W.heads_explorer_data(stack, 0, 3)


def test_heads_explorer_redraws(stack):
    box = W.heads_explorer(stack, labels=list("abcd"))
    assert set(controls(box)) == {"layer", "head"}
    assert_redraws(box, "head", 2)
    assert "layer 1, head 2" in assert_redraws(box, "layer", 1)
    assert set(controls(W.heads_explorer(stack[0]))) == {"head"}  # one layer: no layer slider to move


# ------------------------------------------------------------------------------------------------


@pytest.fixture
def decoding():
    tokens = "the robot must obey orders".split()
    g = torch.Generator().manual_seed(2)
    steps = [torch.softmax(torch.randn(2, n, generator=g), -1) for n in (2, 3, 4, 5)]  # (H, S_t)
    return tokens, steps


def test_decoding_data_grows_the_cache(decoding):
    tokens, steps = decoding
    data = W.decoding_explorer_data(tokens, steps, step=2)
    assert data["cache_tokens"] == ["the", "robot", "must", "obey"] and data["new_token"] == "obey"
    assert data["cache_length"] == 4 and data["step_tokens"] == ["robot", "must", "obey", "orders"]
    torch.testing.assert_close(data["row"], steps[2])
    history = data["history"]
    assert history.shape == (4, 5)
    for t, n in enumerate((2, 3, 4, 5)):
        if t <= 2:
            torch.testing.assert_close(history[t, :n], steps[t].mean(0))
            assert history[t, n:].isnan().all()
        else:
            assert history[t].isnan().all()  # not decoded yet
    with pytest.raises(ValueError, match=r"weights_per_step\[1\]"):
        W.decoding_explorer_data(tokens, steps, 0, cache_lengths=[2, 4, 4, 5])


def test_decoding_explorer_redraws(decoding):
    tokens, steps = decoding
    box = W.decoding_explorer(tokens, steps)
    assert {"step", "play"} <= set(controls(box))
    assert "'obey'" in assert_redraws(box, "step", 2)
    assert_redraws(W.decoding_explorer(tokens, [s[0] for s in steps]), "step", 3)  # one head: (S_t,) rows


def test_control_labels_are_not_truncated():
    """ipywidgets cuts descriptions at a fixed width ("temperat..."); ours size to their text."""
    from attnkit.widgets import temperature_explorer

    controls = temperature_explorer().children[:-1]
    assert [c.description for c in controls] == ["d_k", "scale by 1/sqrt(d_k)", "temperature"]
    assert all(c.style.description_width == "initial" for c in controls)
