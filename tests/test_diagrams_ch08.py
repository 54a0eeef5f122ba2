"""attnkit.diagrams, chapter 8: the block-table picture draws the example's tables, pool and reference counts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from attnkit import diagrams  # noqa: E402
from attnkit.paged_cache import blocks_needed  # noqa: E402


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_registered_with_docstring_shapes_and_backlink():
    fn = diagrams.FIGURES["08_block_table"]
    assert fn is diagrams.block_table and "block_table" in diagrams.__all__
    assert "Shapes:" in fn.__doc__ and "See chapters/08_serving.ipynb." in fn.__doc__


def test_the_example_is_consistent_and_drawn():
    ex = diagrams.BLOCK_TABLE_EXAMPLE
    P = ex["block_size"]
    for tokens, table in ex["sequences"].values():
        assert len(table) == blocks_needed(len(tokens), P)
    fig = diagrams.block_table()
    shown = texts(fig)
    assert sum(s.startswith("block ") and s[6:].isdigit() for s in shown) == ex["num_blocks"]
    assert "ref 2: shared" in shown and shown.count("free") == ex["num_blocks"] - 4
    assert "sequence A: 9 tokens" in shown and "slept" in shown
    plt.close(fig)
