"""Chapter 3's diagrams: the mask goes in before the softmax, and the robot prefixes are the causal rows;
the numbers drawn are the chapter's, as torch computes them, and masks use the course's colours."""

from __future__ import annotations

import ast
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from attnkit import diagrams  # noqa: E402

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "03_masking.ipynb"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def chapter_literal(name: str):
    """The literal assigned to `name` in the chapter (the argument of `torch.tensor(...)`)."""
    nb = nbformat.read(CHAPTER, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or "%" in cell.source.split("\n")[0]:
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets)
                    and isinstance(node.value, ast.Call) and node.value.args):
                return ast.literal_eval(node.value.args[0])
    raise AssertionError(f"the chapter assigns no torch.tensor literal to {name}")


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def fills(fig) -> list[str]:
    return [to_hex(p.get_facecolor()) for ax in fig.axes for p in ax.patches]


def test_the_chapter_uses_the_diagram_numbers():
    assert chapter_literal("scores") == diagrams.MASK_EXAMPLE["scores"]
    assert chapter_literal("keep") == diagrams.MASK_EXAMPLE["keep"]
    assert chapter_literal("target_scores") == diagrams.ROBOT_SCORES


def test_mask_before_softmax_draws_torchs_weights_and_blocked_cells():
    scores = torch.tensor(diagrams.MASK_EXAMPLE["scores"])  # (S,)
    keep = torch.tensor(diagrams.MASK_EXAMPLE["keep"])  # (S,)
    # PyTorch's own masked softmax: SDPA with identity keys and values returns its weights
    eye = torch.eye(len(scores))
    weights = F.scaled_dot_product_attention(scores[None], eye, eye, attn_mask=keep[None], scale=1.0)[0]
    fig = diagrams.mask_before_softmax()
    drawn = texts(fig)
    for w in weights.tolist():
        assert f"{w:.2f}" in drawn
    assert weights[~keep].eq(0).all() and "\u2212\u221e" in drawn and "sum = 1" in drawn
    wrong_sum = (torch.softmax(scores, dim=-1) * keep).sum().item()
    assert any(t.startswith(f"sum = {wrong_sum:.2f}") for t in drawn)
    blocked = fills(fig).count(diagrams.COLORS["blocked"])
    assert blocked == 4 * int((~keep).sum())  # mask, masked scores, weights, and the wrong order's zero
    assert fills(fig).count(diagrams.COLORS["allowed"]) == int(keep.sum())


def test_robot_prefixes_draws_the_causal_rows():
    scores = torch.tensor(diagrams.ROBOT_SCORES)  # (L, S)
    L = len(scores)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    eye = torch.eye(L)
    weights = F.scaled_dot_product_attention(scores, eye, eye, attn_mask=causal, scale=1.0)  # (L, S)
    fig = diagrams.robot_prefixes()
    drawn = texts(fig)
    for i in range(L):
        for j in range(i + 1):
            assert drawn.count(f"{weights[i, j].item():.2f}") >= 2  # in its prefix and in the causal matrix
    assert fills(fig).count(diagrams.COLORS["blocked"]) == L * (L - 1) // 2 + 1  # the future, and the legend
    assert "0.48" in drawn and "0.52" in drawn  # "robot must": 48% / 52%, as the chapter says


@pytest.mark.parametrize("name", ["03_mask_before_softmax", "03_robot_prefixes"])
def test_figures_are_registered_and_documented(name):
    fn = diagrams.FIGURES[name]
    assert fn.__name__ in diagrams.__all__
    assert "Shapes:" in fn.__doc__ and "See chapters/03_masking.ipynb." in fn.__doc__
