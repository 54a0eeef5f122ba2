"""attnkit.diagrams, chapter 4: the split-and-merge picture uses the chapter's sizes and says so."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from attnkit import diagrams  # noqa: E402


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_registered_with_docstring_shapes_and_backlink():
    fn = diagrams.FIGURES["04_heads_split_merge"]
    assert fn is diagrams.heads_split_merge and "heads_split_merge" in diagrams.__all__
    assert "Shapes:" in fn.__doc__ and "See chapters/04_multi_head_attention.ipynb." in fn.__doc__


@pytest.mark.parametrize("E, H", [(8, 2), (12, 3)])
def test_one_cell_per_feature_and_one_box_per_head(E, H):
    fig = diagrams.heads_split_merge(E, H)
    shown = texts(fig)
    D = E // H
    # q's cells carry the feature numbers, each once; head h owns features hD .. (h+1)D - 1
    for h in range(H):
        assert any(s.startswith(f"head {h}:") and f"features {h * D}..{(h + 1) * D - 1}" in s for s in shown)
    assert not any(s.startswith(f"head {H}:") for s in shown)
    assert any(f"H = {H} heads of D = E / H = {D}" in s for s in shown)
    assert shown.count(str(E - 1)) >= 3  # the token, q and the concatenation each show feature E - 1
    plt.close(fig)


def test_the_registered_figure_uses_the_chapters_sizes():
    fig = diagrams.FIGURES["04_heads_split_merge"]()
    assert any("E = 8 features, H = 2 heads of D = E / H = 4" in s for s in texts(fig))
    plt.close(fig)
