"""attnkit.diagrams, chapter 6: the pre-norm / post-norm picture uses the chapter's model sizes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from attnkit import diagrams  # noqa: E402
from attnkit.char_gpt import CHAR_GPT_CONFIG  # noqa: E402


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_registered_with_docstring_shapes_and_backlink():
    fn = diagrams.FIGURES["06_pre_post_norm"]
    assert fn is diagrams.pre_post_norm and "pre_post_norm" in diagrams.__all__
    assert "Shapes:" in fn.__doc__ and "See chapters/06_transformer_block.ipynb." in fn.__doc__


def test_both_blocks_with_the_chapters_sizes_and_order():
    fig = diagrams.pre_post_norm()
    shown = texts(fig)
    E, H = CHAR_GPT_CONFIG["n_embd"], CHAR_GPT_CONFIG["n_head"]
    assert sum(f"H = {H} heads of D = {E // H}" in s for s in shown) == 2
    assert sum(f"4E = {4 * E}" in s for s in shown) == 2
    assert sum(s == "+" for s in shown) == 4  # two residual sums per block
    assert any("x = x + attn(ln_1(x))" in s for s in shown) and any("x = ln_1(x + attn(x))" in s for s in shown)
    plt.close(fig)
