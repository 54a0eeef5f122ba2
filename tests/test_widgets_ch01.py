"""attnkit.widgets.training_explorer (moved out of chapters/01b_classic_attention.ipynb): data and redraws."""

import pytest
import torch
from widget_helpers import controls, shown

from attnkit import widgets as W


@pytest.fixture
def probe():
    g = torch.Generator().manual_seed(0)
    N, S = 3, 5
    snapshots = {0: torch.full((N, S), 1 / S), 50: torch.softmax(4 * torch.randn(N, S, generator=g), -1)}
    return snapshots, torch.tensor([7, 8, 9]), torch.randint(32, (N, S), generator=g), torch.tensor([4, 0, 2])


def test_data_picks_the_step_and_example(probe):
    snapshots, _, _, where = probe
    data = W.training_explorer_data(snapshots, 50, 1, where)
    torch.testing.assert_close(data["weights"], snapshots[50][1])
    assert data["match"] == 0 and data["on_match"] == pytest.approx(snapshots[50][1, 0].item())
    uniform = W.training_explorer_data(snapshots, 0, 2, where)
    assert uniform["entropy"] == pytest.approx(torch.log(torch.tensor(5.0)).item())


def test_data_names_a_bad_step_or_example(probe):
    snapshots, _, _, where = probe
    with pytest.raises(ValueError, match="`step`"):
        W.training_explorer_data(snapshots, 7, 0, where)
    with pytest.raises(ValueError, match="`example`"):
        W.training_explorer_data(snapshots, 0, 3, where)


def test_every_control_redraws(probe):
    box = W.training_explorer(*probe)
    for description, value in (("step", 50), ("example", 2)):
        before = shown(box)
        controls(box)[description].value = value
        after = shown(box)
        assert after[0] != before[0] and after[1] != before[1], f"moving {description!r} did not redraw"


# ---------------------------------------------------------------------------------------------------
# attnkit.widgets.temperature_explorer (chapters/01_attention.ipynb, section 5)


def test_temperature_data_keeps_the_same_keys_at_every_width():
    """Only the spread of the sampled scores changes with d_k: the same key wins, and scaling undoes d_k exactly."""
    widths = [2**i for i in range(10)]
    unscaled = [W.temperature_explorer_data(d_k=d, scaled=False) for d in widths]
    scaled = [W.temperature_explorer_data(d_k=d, scaled=True) for d in widths]
    assert len({data["weights"].argmax().item() for data in unscaled + scaled}) == 1
    for d_k, data in zip(widths, unscaled, strict=True):  # scores = sqrt(d_k) x the d_k = 1 pattern
        torch.testing.assert_close(data["scores"], d_k**0.5 * unscaled[0]["scores"], rtol=1e-4, atol=1e-4)
    for data in scaled:
        torch.testing.assert_close(data["logits"], scaled[0]["logits"], rtol=1e-4, atol=1e-4)
    entropies = [data["entropy"] for data in unscaled]
    assert all(a > b for a, b in zip(entropies, entropies[1:-2], strict=False))  # unscaled: sharper with d_k
    assert entropies[-1] < 0.01 < 1 < scaled[-1]["entropy"]


def test_temperature_explorer_every_control_redraws():
    box = W.temperature_explorer()
    for description, value in (("d_k", 256), ("scale by 1/sqrt(d_k)", False), ("temperature", 0.3),
                               ("d_k", 4), ("scale by 1/sqrt(d_k)", True)):
        before = shown(box)
        controls(box)[description].value = value
        after = shown(box)
        assert after[0] != before[0] and after[1] != before[1], f"moving {description!r} did not redraw"
