"""attnkit.plot on the Agg backend: what is drawn (image data, labels, annotations) is the weights it was given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attnkit import plot_softmax_saturation, show_attention, show_heads, softmax_saturation  # noqa: E402

L, S = 3, 4


@pytest.fixture(autouse=True)
def no_show_and_close(monkeypatch):
    def refuse():
        raise AssertionError("library code must not call plt.show()")

    monkeypatch.setattr(plt, "show", refuse)
    yield
    plt.close("all")


@pytest.fixture
def weights():
    scores = torch.randn(2, 3, L, S, generator=torch.Generator().manual_seed(0))
    scores[..., 0, -1] = float("-inf")  # a masked key: weight exactly 0
    return torch.softmax(scores, dim=-1)


def tick_labels(ax):
    return [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()]


def test_show_attention_draws_the_weights_with_labels(weights):
    w = weights[0, 0]
    ax = show_attention(w, ["a", "b", "c"], ["w", "x", "y", "z"], title="one head")
    np.testing.assert_allclose(ax.images[0].get_array(), w.numpy())
    assert tick_labels(ax) == (["w", "x", "y", "z"], ["a", "b", "c"])
    assert ax.get_title() == "one head"
    assert ax.images[0].get_clim() == (0.0, 1.0)  # weights share one colour scale
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"{v:.2f}" for v in w.flatten().tolist()]  # small: every cell annotated, row by row
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar


def test_show_attention_accepts_numpy_and_an_existing_axes(weights):
    fig, ax = plt.subplots()
    w = weights[1, 2].numpy()
    assert show_attention(w, ax=ax, annotate=False, colorbar=False) is ax
    np.testing.assert_allclose(ax.images[0].get_array(), w)
    assert len(ax.texts) == 0 and len(fig.axes) == 1
    assert tick_labels(ax) == (["0", "1", "2", "3"], ["0", "1", "2"])


def test_big_matrices_are_not_annotated_and_scores_get_their_own_range():
    scores = torch.randn(20, 30, generator=torch.Generator().manual_seed(1))
    ax = show_attention(scores)
    assert len(ax.texts) == 0
    assert ax.images[0].get_clim() == pytest.approx((scores.min().item(), scores.max().item()))


def test_show_attention_rejects_wrong_shapes_and_labels(weights):
    with pytest.raises(ValueError, match=r"\(L, S\).*show_heads"):
        show_attention(weights[0])
    with pytest.raises(ValueError, match="Expected 4 `key_labels`"):
        show_attention(weights[0, 0], key_labels=["a", "b"])
    with pytest.raises(TypeError, match="`weights`"):
        show_attention(object())


def test_show_heads_grid_of_layers_and_heads(weights):
    fig = show_heads(weights, ["a", "b", "c"], ["w", "x", "y", "z"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2 * 3
    for i, ax in enumerate(panels):
        layer, head = divmod(i, 3)
        np.testing.assert_allclose(ax.images[0].get_array(), weights[layer, head].numpy())
        assert ax.get_title() == f"layer {layer}, head {head}"
    xlabels, ylabels = tick_labels(panels[3])  # bottom-left panel keeps both axes' labels
    assert xlabels == ["w", "x", "y", "z"] and ylabels == ["a", "b", "c"]
    assert all(t.get_text() == "" or not t.get_visible() for t in panels[4].get_yticklabels())  # inner


def test_show_heads_one_layer_and_custom_titles(weights):
    fig = show_heads(weights[1].numpy(), titles=["p", "q", "r"])
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["p", "q", "r"]
    np.testing.assert_allclose(panels[2].images[0].get_array(), weights[1, 2].numpy())
    with pytest.raises(ValueError, match="Expected 3 `titles`"):
        show_heads(weights[1], titles=["p"])
    with pytest.raises(ValueError, match=r"\(H, L, S\)"):
        show_heads(weights[0, 0])


def test_plot_softmax_saturation_plots_the_computed_numbers():
    fig = plot_softmax_saturation((2, 32, 512), num_samples=64, generator=torch.Generator().manual_seed(3))
    stats = softmax_saturation((2, 32, 512), num_samples=64, generator=torch.Generator().manual_seed(3))
    ax_max, ax_grad = fig.axes
    np.testing.assert_allclose(ax_max.lines[0].get_ydata(), stats["max_weight_unscaled"].numpy())
    np.testing.assert_allclose(ax_max.lines[1].get_ydata(), stats["max_weight_scaled"].numpy())
    np.testing.assert_allclose(ax_grad.lines[0].get_ydata(), stats["grad_norm_unscaled"].numpy())
    assert ax_max.get_xscale() == "log"


# ------------------------------------------------------------------------------------------------
# Masks: one colour scheme everywhere, the diagrams' "allowed" and "blocked"


def test_show_mask_uses_the_course_mask_colours():
    from matplotlib.colors import to_rgba

    from attnkit import COLORS, show_mask

    mask = torch.ones(L, S, dtype=torch.bool).tril(diagonal=S - L)  # (L, S) bottom-right causal
    ax = show_mask(mask, ["a", "b", "c"], ["w", "x", "y", "z"], title="causal")
    image = ax.images[0]
    np.testing.assert_array_equal(image.get_array(), mask.float().numpy())
    assert image.cmap(image.norm(0.0)) == to_rgba(COLORS["blocked"])
    assert image.cmap(image.norm(1.0)) == to_rgba(COLORS["allowed"])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["may attend (True)", "blocked (False)"]
    assert tick_labels(ax) == (["w", "x", "y", "z"], ["a", "b", "c"])


def test_show_attention_paints_blocked_cells_in_the_blocked_colour(weights):
    from matplotlib.colors import to_rgba

    from attnkit import COLORS

    w = weights[0, 0]  # (L, S)
    mask = torch.ones(L, S, dtype=torch.bool).tril()  # (L, S)
    ax = show_attention(w, mask=mask)
    data = ax.images[0].get_array()
    assert np.ma.getmaskarray(data)[~mask.numpy()].all() and not np.ma.getmaskarray(data)[mask.numpy()].any()
    np.testing.assert_allclose(data[mask.numpy()], w[mask].numpy(), rtol=1e-6)
    assert ax.images[0].cmap.get_bad() == pytest.approx(to_rgba(COLORS["blocked"]))
    assert len(ax.texts) == int(mask.sum())  # only allowed cells carry a number
    with pytest.raises(ValueError, match="mask"):
        show_attention(w, mask=torch.ones(2, 2, dtype=torch.bool))


def test_show_heads_broadcasts_one_mask_over_every_panel(weights):
    from matplotlib.colors import to_rgba

    from attnkit import COLORS

    mask = torch.ones(L, S, dtype=torch.bool).tril()  # (L, S) for every head
    fig = show_heads(weights[0], mask=mask)
    for ax in fig.axes[:-1]:  # the last Axes is the colour bar
        data = ax.images[0].get_array()
        assert np.ma.getmaskarray(data)[~mask.numpy()].all()
        assert ax.images[0].cmap.get_bad() == pytest.approx(to_rgba(COLORS["blocked"]))


def test_show_matrix_annotates_every_value_on_a_shared_scale():
    from attnkit import show_matrix

    m = torch.tensor([[0.0, 2.0, -1.0], [1.5, 0.0, 4.0]])
    ax = show_matrix(m, ["a", "b"], title="X", limit=8.0)
    assert [t.get_text() for t in ax.texts] == ["0", "2", "-1", "1.5", "0", "4"]
    assert ax.images[0].get_clim() == (-8.0, 8.0)
    assert tick_labels(ax)[1] == ["a", "b"] and ax.get_title() == "X"
    with pytest.raises(ValueError, match=r"\(N, M\)"):
        show_matrix(m[0])
