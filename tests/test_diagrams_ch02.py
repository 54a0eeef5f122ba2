"""Chapter 2's diagrams: the "Thinking Machines" picture draws the chapter's own numbers, as torch computes them."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnkit import diagrams  # noqa: E402

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "02_self_attention.ipynb"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def chapter_cell_defining(name: str) -> dict:
    """Run the chapter's code cell that assigns `name` and return its variables."""
    nb = nbformat.read(CHAPTER, as_version=4)
    (source,) = [c.source for c in nb.cells if c.cell_type == "code" and f"\n{name} = " in f"\n{c.source}"]
    namespace = {"torch": torch, "math": math}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(source, namespace)  # noqa: S102 - our own notebook's cell
    return namespace


def drawn_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_the_chapter_uses_the_diagram_numbers():
    cell = chapter_cell_defining("Wq")
    tm = diagrams.THINKING_MACHINES
    assert torch.equal(torch.stack([cell["x1"], cell["x2"]]), torch.tensor(tm["x"]))
    for ours, theirs in (("W_q", "Wq"), ("W_k", "Wk"), ("W_v", "Wv")):
        assert torch.equal(cell[theirs], torch.tensor(tm[ours])), theirs
    assert cell["tokens"] == tm["tokens"]


@pytest.mark.parametrize("index", [0, 1])
def test_qkv_figure_draws_torchs_numbers(index):
    tm = diagrams.THINKING_MACHINES
    X = torch.tensor(tm["x"])  # (2, 6)
    Wq, Wk, Wv = (torch.tensor(tm[w]) for w in ("W_q", "W_k", "W_v"))  # (4, 6) each
    q, k, v = torch.nn.functional.linear(X, Wq), torch.nn.functional.linear(X, Wk), X @ Wv.T  # (2, 4) each
    scores = q[index] @ k.T  # (2,)
    weights = torch.softmax(scores / math.sqrt(k.shape[-1]), dim=0)  # (2,)
    texts = drawn_texts(diagrams.qkv_thinking_machines(index))
    for vector in (X[index], q[index], k[0], k[1], v[index]):
        for value in vector.tolist():
            assert f"{value:g}" in texts
    for j in range(2):
        assert f"{scores[j].item():g}" in texts
        assert f"{scores[j].item() / 2:g}" in texts
        assert f"{weights[j].item():.3f}" in texts
    if index == 0:  # the chapter's published numbers
        assert {"12", "8", "6", "4", "0.881", "0.119"} <= set(texts)


def test_qkv_figure_is_registered_and_documented():
    assert diagrams.FIGURES["02_qkv_thinking_machines"] is diagrams.qkv_thinking_machines
    doc = diagrams.qkv_thinking_machines.__doc__
    assert "Shapes:" in doc and "See chapters/02_self_attention.ipynb." in doc
    assert "qkv_thinking_machines" in diagrams.__all__
