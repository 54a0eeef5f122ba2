"""attnkit.diagrams, chapter 7: the tiles picture uses the chapter's tiling and FlashAttention's update."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from attnkit import diagrams  # noqa: E402


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_registered_with_docstring_shapes_and_backlink():
    fn = diagrams.FIGURES["07_flash_tiles"]
    assert fn is diagrams.flash_tiles and "flash_tiles" in diagrams.__all__
    assert "Shapes:" in fn.__doc__ and "See chapters/07_efficient_attention.ipynb." in fn.__doc__


def test_the_tiling_and_the_update_rule_are_shown():
    fig = diagrams.flash_tiles()
    shown = texts(fig)
    t = diagrams.TILES
    assert any(f"({t['L']}, {t['S']})" in s for s in shown)
    assert any(f"{t['block_q']} queries x {t['block_k']} keys" in s for s in shown)
    n_keys = t["S"] // t["block_k"]
    assert sum(s.startswith("keys\n") for s in shown) == n_keys
    for idea in ("new running max", "brought to the new one", "added to l", "lse = m + log l"):
        assert any(idea in s for s in shown), idea
    # the idea, not exercise 7.1's update lines: no correction factor written out
    assert not any("e^(m" in s or "exp(m" in s for s in shown), shown
    assert sum(s.startswith("queries\n") for s in shown) == t["L"] // t["block_q"]
    plt.close(fig)
