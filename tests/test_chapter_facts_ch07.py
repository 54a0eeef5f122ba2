"""The numbers that chapter 7's text quotes are the numbers its code produces (timings excepted)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from test_chapter_facts import run_chapter  # noqa: E402

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "07_efficient_attention.ipynb"

MB = 2**20


@pytest.fixture(scope="module")
def ch7() -> dict[str, dict]:
    """{cell id: the namespace right after that cell}, except the flex_attention cell: its eager path runs
    torch._dynamo, which needs the cells' module to be importable (tests/test_sparse_attention.py and nbval
    run that code)."""
    return run_chapter(CHAPTER.name, skip="flex_attention")


def test_naive_memory_is_five_l_by_l_matrices_and_the_fused_kernel_linear(ch7):
    rows = ch7["ch07-003"]["rows"]  # (L, t_naive, t_fused, naive bytes, fused bytes)
    for L, _, _, naive_bytes, fused_bytes in rows:
        assert 5 * 4 * L * L <= naive_bytes < 5 * 4 * L * L + 64 * L * 4 * 2  # five (L, L) float32 + the output
        assert fused_bytes < 0.3 * MB * L / 1024  # O(L): the output and one number per row
    assert round(rows[-1][3] / MB) == 80 and rows[-1][0] == 2048  # "the table's 80 MB at L = 2048"


def test_block_summaries_combine_to_the_whole_row(ch7):
    ns = ch7["ch07-006"]
    assert [len(b) for b in ns["blocks"]] == [4, 4, 4]
    assert float(ns["m"]) == float(ns["scores"].max())
    assert torch.allclose(ns["from_summaries"], torch.softmax(ns["scores"], -1))


def test_the_tiles_example_has_three_and_a_half_tiles_of_padding(ch7):
    ns = ch7["ch07-012"]
    assert int((~ns["real"][1]).sum()) == 28  # 28 padding keys = 3.5 tiles of 8 ("28 padding keys, 3 tiles and a half")
    assert (ns["out"][0, 0, 3] == 0).all() and torch.isneginf(ns["lse"][0, 0, 3])


def test_tiled_memory_and_output(ch7):
    ns = ch7["ch07-014"]
    assert ns["naive_bytes"] / ns["tiled_bytes"] > 20
    assert all(a < b for a, b in zip(ns["peaks"], ns["peaks"][1:], strict=False))  # "grows with the tile"
    beyond_output = [p - n * 64 * 4 for p, n in zip(ns["by_length"], ns["lengths"], strict=True)]
    assert max(beyond_output) < 1.2 * min(beyond_output)  # "with L only as the output does"


def test_the_naive_memory_figures_quoted_later_agree(ch7):
    rows = ch7["ch07-003"]["rows"]
    per_entry = rows[-1][3] / (rows[-1][0] ** 2)  # bytes per (L x L) entry: five float32 matrices
    assert round(per_entry * 8192**2 / 2**30, 2) == 1.25  # "at L = 8192 ... would need 1.25 GB"


def test_recall_softmax_perfect_linear_degrades(ch7):
    ns = ch7["ch07-023"]
    assert all(a == 1.0 for a in ns["softmax_recall"])  # "at every size tried here"
    linear = ns["linear_recall"]
    assert round(linear[0], 2) == 0.8 and round(linear[1], 2) == 0.17 and max(linear[2:]) < 0.05


def test_reach_of_the_windows(ch7):
    ns = ch7["ch07-027"]
    L = ns["L"]
    window = [int(ns["receptive_field"](ns["stacks"]["sliding window w=4"], n)[-1].sum()) for n in (1, 2, 3)]
    assert window == [4, 7, 10]  # "gains w - 1 = 3 tokens per layer"
    dilated = ns["receptive_field"](ns["stacks"]["dilated w=4, d=4"], 2)[-1]
    plain = ns["receptive_field"](ns["stacks"]["sliding window w=4"], 2)[-1]
    assert int(dilated.sum()) == int(plain.sum())  # "as many tokens"
    assert L - 1 - int(dilated.nonzero()[0]) == 4 * (L - 1 - int(plain.nonzero()[0]))  # "four times as far"
    strided = ns["stacks"]["strided, s=16"]
    assert ns["receptive_field"](strided, 2)[-1].all() and not ns["receptive_field"](strided, 1)[-1].all()


def test_lsh_rounds_keep_more_weight(ch7):
    ns = ch7["ch07-029"]
    assert ns["kept"] > 0.9 and ns["same_bucket"].float().mean() < 0.3
