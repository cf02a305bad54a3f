import math

import pytest
import torch
from torch import nn

from lth_core.models import build
from lth_core.pruning import (
    PRUNERS,
    apply_masks,
    density,
    full_masks,
    lamp_masks,
    lamp_scores,
    prunable_weights,
)


def test_lamp_scores_hand_computed():
    # squares sorted ascending: 1, 4, 9, 16 (sum 30); tails: 30, 29, 25, 16
    w = torch.tensor([[3.0, -1.0], [4.0, 2.0]])
    expected = torch.tensor([[9 / 25, 1 / 30], [16 / 16, 4 / 29]], dtype=torch.float64)
    torch.testing.assert_close(lamp_scores(w), expected)


def test_lamp_scores_zero_weights_score_zero_and_max_scores_one():
    w = torch.tensor([0.0, 0.0, 0.5, -2.0, 1.0])
    s = lamp_scores(w)
    assert s[0] == 0 and s[1] == 0
    assert s[3] == 1.0
    assert torch.all(s <= 1.0)


def test_prunable_weights_are_conv_and_linear_only():
    model = build("resnet32")
    names = prunable_weights(model)
    assert all(n.endswith("weight") for n in names)
    kinds = {type(m) for m in model.modules() if hasattr(m, "weight") and any(
        p is m.weight for p in names.values())}
    assert kinds == {nn.Conv2d, nn.Linear}
    bn_modules = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn_modules and not any(f"{b}.weight" in names for b in bn_modules)


@pytest.mark.parametrize("pruner", sorted(PRUNERS))
def test_density_after_k_stages(pruner):
    torch.manual_seed(0)
    model = build("lenet5")
    total = sum(w.numel() for w in prunable_weights(model).values())
    masks = full_masks(model)
    for k in range(1, 6):
        masks = PRUNERS[pruner](model, 0.16, masks, seed=k)
        apply_masks(model, masks)
        assert abs(density(masks) - 0.84**k) < k / total + 1e-9


def test_pruned_weights_stay_pruned_and_no_layer_emptied():
    torch.manual_seed(0)
    model = build("lenet5")
    masks = lamp_masks(model, 0.5)
    with torch.no_grad():  # pretend training moved every weight, pruned ones included
        for w in prunable_weights(model).values():
            w.add_(torch.randn_like(w))
    masks2 = lamp_masks(model, 0.5, masks)
    for n in masks:
        assert not (masks2[n] & ~masks[n]).any(), "a pruned weight was revived"
    for _ in range(8):  # 0.5**9 of 62k weights: ~120 left, still some in every layer
        masks2 = lamp_masks(model, 0.5, masks2)
    assert all(m.any() for m in masks2.values()), "LAMP emptied a layer"


def test_lamp_matches_reference_computation():
    """Global LAMP = keep the largest scores across layers, scores normalised per layer."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    masks = lamp_masks(model, 0.4)
    w = [model[0].weight.detach().flatten(), model[2].weight.detach().flatten()]
    scores = []
    for layer in w:
        sq = layer.double() ** 2
        s = torch.tensor([float(v / sq[sq >= v].sum()) for v in sq], dtype=torch.float64)
        scores.append(s)
    allscores = torch.cat(scores)
    n_remove = round(0.4 * allscores.numel())
    threshold = torch.sort(allscores).values[n_remove - 1]
    kept = torch.cat([masks["0.weight"].flatten(), masks["2.weight"].flatten()])
    assert int((~kept).sum()) == n_remove
    assert torch.all(allscores[~kept] <= threshold) and torch.all(allscores[kept] >= threshold)


def test_lamp_differs_from_magnitude_per_layer_allocation():
    torch.manual_seed(0)
    model = build("lenet5")
    lamp = lamp_masks(model, 0.5)
    mag = PRUNERS["magnitude"](model, 0.5)
    assert any(not torch.equal(lamp[n], mag[n]) for n in lamp)
    assert math.isclose(density(lamp), density(mag), abs_tol=1e-4)
