"""Chapter 1's diagram (attnkit.diagrams.four_steps): its numbers are attention's, and the chapter's."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from attnkit import diagrams, scaled_dot_product_attention  # noqa: E402

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "01_attention.ipynb"


@pytest.fixture(scope="module")
def numbers():
    return diagrams.four_steps_numbers()


def test_the_numbers_are_scaled_dot_product_attention(numbers):
    q, k, v = numbers["query"][None], numbers["keys"], numbers["values"]  # (1, 3), (4, 3), (4, 1)
    torch.testing.assert_close(numbers["output"], F.scaled_dot_product_attention(q, k, v)[0])
    output, weights = scaled_dot_product_attention(q, k, v)  # (1, 1), (1, 4)
    torch.testing.assert_close(numbers["weights"], weights[0])
    torch.testing.assert_close(numbers["output"], output[0])
    torch.testing.assert_close(numbers["scaled"], numbers["scores"] / 3**0.5)
    torch.testing.assert_close(numbers["products"].sum(0), numbers["output"])


def test_the_example_is_the_chapters_fruit_lookup(numbers):
    """The chapter types the fruit tensors in a cell; run that cell and compare."""
    nb = nbformat.read(CHAPTER, as_version=4)
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "fruits = [" in c.source]
    namespace = {"torch": torch, "plt": plt}
    show, plt.show = plt.show, lambda *a, **k: None
    try:
        exec(cell.source, namespace)
    finally:
        plt.show = show
        plt.close("all")
    assert tuple(namespace["fruits"]) == numbers["fruits"]
    for name in ("keys", "values", "query"):
        torch.testing.assert_close(namespace[name], numbers[name])


def test_the_chapter_shows_the_figure_where_the_four_steps_are_introduced():
    nb = nbformat.read(CHAPTER, as_version=4)
    (cell,) = [c for c in nb.cells if "figures/01_four_steps.svg" in c.source]
    assert cell.cell_type == "markdown" and "four steps" in cell.source.lower()


def test_the_picture_shows_the_numbers(numbers):
    fig = diagrams.four_steps()
    try:
        texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    finally:
        plt.close(fig)
    for name, digits in (("scores", 2), ("scaled", 2), ("weights", 3)):
        for x in numbers[name].tolist():
            assert f"{x:.{digits}f}" in texts, f"{name} {x:.{digits}f} not drawn"
    # a reader adds up the weights as drawn: they must give the sum as drawn
    shown = [round(x, 3) for x in numbers["weights"].tolist()]
    assert f"sum: {sum(shown):.3f}" in texts and round(sum(shown), 3) == 1.0
    assert f"output\n{numbers['output'].item():.2f}" in texts
    assert {"apple", "lemon", "cherry", "banana", "sweet", "sour", "red"} <= texts
    assert {"1. $q \\cdot k_j$", "2. $\\div \\sqrt{3}$", "3. softmax", "4. sum"} <= texts


def test_registered_under_its_file_name():
    assert diagrams.FIGURES["01_four_steps"] is diagrams.four_steps
    assert (CHAPTER.parent / "figures" / "01_four_steps.svg").exists()
