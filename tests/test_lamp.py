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
    magnitude_masks,
    prunable_weights,
    random_masks,
)


def test_lamp_scores_hand_computed():
    # squares sorted ascending: 1, 4, 9, 16 (sum 30); tails: 30, 29, 25, 16
    w = torch.tensor([[3.0, -1.0], [4.0, 2.0]])
    expected = torch.tensor([[9 / 25, 1 / 30], [16 / 16, 4 / 29]], dtype=torch.float64)
    torch.testing.assert_close(lamp_scores(w), expected)


def test_lamp_scores_defining_properties():
    """A weight's score is its square over the sum of the squares of the weights at least as
    large (Lee et al., 2020, eq. 2). So scores order a layer as magnitudes do, the largest is
    1, pruned (zero) weights score 0, and scaling the layer leaves every score unchanged."""
    torch.manual_seed(0)
    w = torch.randn(7, 9)
    w[0, :3] = 0.0  # pruned
    s = lamp_scores(w).flatten()
    sq = w.flatten().double() ** 2
    tail = (sq[None, :] * (sq[None, :] >= sq[:, None])).sum(1)  # no ties but the zeros
    torch.testing.assert_close(s, sq / tail)
    by_magnitude = s[w.flatten().abs().argsort()]
    assert torch.all(by_magnitude[:3] == 0) and torch.all(by_magnitude[3:].diff() > 0)
    assert by_magnitude[-1] == 1.0
    # 2^-7 scales squares and sums exactly, so the scores are equal bit for bit
    assert torch.equal(lamp_scores(w * 2.0**-7).flatten(), s)


def test_prunable_weights_are_conv_and_linear_only():
    model = build("resnet32")
    names = prunable_weights(model)
    assert all(n.endswith("weight") for n in names)
    kinds = {type(m) for m in model.modules() if hasattr(m, "weight") and any(
        p is m.weight for p in names.values())}
    assert kinds == {nn.Conv2d, nn.Linear}
    bn_modules = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn_modules and not any(f"{b}.weight" in names for b in bn_modules)


SCORES = {"lamp": lamp_scores, "magnitude": torch.abs}


@pytest.mark.parametrize("pruner", sorted(PRUNERS))
def test_each_stage_prunes_its_fraction_of_the_alive_weights(pruner):
    """Per stage: exactly round(16 %) of the weights still alive go, masks are nested, and
    LAMP and magnitude remove the lowest scores of the whole model (one global threshold)."""
    torch.manual_seed(0)
    model = build("lenet5")
    masks = full_masks(model)
    total = sum(m.numel() for m in masks.values())
    for k in range(1, 6):
        new = PRUNERS[pruner](model, 0.16, masks, seed=k)
        alive = sum(int(m.sum()) for m in masks.values())
        assert sum(int(m.sum()) for m in new.values()) == alive - round(0.16 * alive)
        assert all(not (new[n] & ~masks[n]).any() for n in masks), "a pruned weight revived"
        if pruner in SCORES:
            weights = prunable_weights(model)
            scores = torch.cat([SCORES[pruner](weights[n].detach().double()).flatten()
                                for n in masks])
            kept = torch.cat([new[n].flatten() for n in masks])
            removed = torch.cat([(masks[n] & ~new[n]).flatten() for n in masks])
            assert scores[removed].max() <= scores[kept].min()
        apply_masks(model, new)
        masks = new
    assert abs(density(masks) - 0.84**5) < 5 / total  # rounding, at most 1/2 weight a stage


def test_random_pruning_is_seeded_and_even_across_layers():
    torch.manual_seed(0)
    model = build("lenet5")
    masks = random_masks(model, 0.3, seed=1)
    assert all(torch.equal(m, random_masks(model, 0.3, seed=1)[n]) for n, m in masks.items())
    assert not all(torch.equal(m, random_masks(model, 0.3, seed=2)[n]) for n, m in masks.items())
    for m in masks.values():  # each layer loses ~30 %, within 5 binomial standard deviations
        assert abs(1 - m.double().mean() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / m.numel())


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


def test_lamp_allocation_ignores_a_layer_scale_that_magnitude_follows():
    """LAMP normalises scores per layer: scaling conv2 by 2^-7 (exact in floats) leaves every
    mask bit for bit, while global magnitude pruning then empties conv2."""
    torch.manual_seed(0)
    model = build("lenet5")
    lamp, mag = lamp_masks(model, 0.5), magnitude_masks(model, 0.5)
    with torch.no_grad():
        prunable_weights(model)["conv2.0.weight"].mul_(2.0**-7)
    lamp2, mag2 = lamp_masks(model, 0.5), magnitude_masks(model, 0.5)
    assert all(torch.equal(lamp2[n], m) for n, m in lamp.items())
    assert mag["conv2.0.weight"].any() and not mag2["conv2.0.weight"].any()
    assert density(lamp2) == density(mag2) == density(mag)  # the same number removed
