"""attnkit.diagrams: every registered picture draws, and chapters/figures/ holds its current SVG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from attnkit import diagrams  # noqa: E402


def test_committed_figures_are_current():
    stale = diagrams.write_figures(check=True)
    assert stale == [], f"stale or missing: {stale} (run `python -m attnkit.diagrams`)"


def test_a_figure_name_is_registered_once():
    name = next(iter(diagrams.FIGURES), None)
    if name is None:
        pytest.skip("no figure registered yet")
    with pytest.raises(ValueError, match="registered twice"):
        diagrams.figure(name)(lambda: None)


def test_svg_output_is_reproducible():
    fig, ax = diagrams.canvas(4, 2)
    diagrams.box(ax, 0.5, 0.5, 1, 1, "q", color=diagrams.COLORS["query"])
    diagrams.arrow(ax, (1.5, 1), (3, 1), "scores")
    diagrams.grid(ax, 3, 0.2, [[1, 2], [3, 4]])
    assert diagrams.svg(fig) == diagrams.svg(fig)
    assert "<svg" in diagrams.svg(fig)
