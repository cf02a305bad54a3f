"""Global pruning criteria: LAMP (Lee et al., 2020), plus magnitude and random baselines.

Every criterion has the same interface, ``f(model, amount, masks=None, seed=0) -> masks``:
it removes ``amount`` of the weights still alive across every Conv2d and Linear weight of the
model, and never revives a pruned one. Masks are plain ``dict[name, bool Tensor]``, keyed by
parameter name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

Masks = dict[str, Tensor]


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights that ticket search prunes: every Conv2d and Linear weight, by parameter name.

    Biases and BatchNorm parameters are never pruned (as in LAMP's reference code). A tensor
    shared by several modules (tied weights) is one weight, under the name
    ``named_parameters`` gives it, with one mask. A weight computed from others (a
    parametrisation such as ``weight_norm``) cannot be held at zero: ValueError, one line.
    """
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            name = f"{mod_name}.weight" if mod_name else "weight"
            w = mod.weight
            if not isinstance(w, nn.Parameter):
                raise ValueError(f"{name} is computed from other tensors (a parametrisation "
                                 "such as weight_norm), so pruning cannot hold it at zero; "
                                 "remove the parametrisation to search this model")
            if id(w) not in seen:
                seen.add(id(w))
                out[name] = w
    return out


def full_masks(model: nn.Module) -> Masks:
    """All-True masks: the dense model."""
    return {n: torch.ones_like(w, dtype=torch.bool) for n, w in prunable_weights(model).items()}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks | None, grad: bool = False) -> None:
    """Zero the pruned weights in place; with ``grad``, their gradients instead (so that
    momentum never moves them)."""
    if not masks:
        return
    params = dict(model.named_parameters())
    for name, m in masks.items():
        t = params[name].grad if grad else params[name]
        if t is not None:
            t.mul_(m.to(t.device, t.dtype))


def density(masks: Masks) -> float:
    """Fraction of prunable weights still alive."""
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / max(total, 1)


def lamp_scores(weight: Tensor) -> Tensor:
    """LAMP score of every weight of one layer (same shape as ``weight``, float64).

    Sort the squared weights ascending; a weight's score is its square over the sum of the
    squares of itself and every weight after it. The largest weight scores 1, so LAMP never
    empties a layer; zero (pruned) weights score 0.
    """
    sq = weight.detach().flatten().double() ** 2
    sorted_sq, order = torch.sort(sq, stable=True)
    tail = torch.flip(torch.cumsum(torch.flip(sorted_sq, [0]), 0), [0])
    sorted_scores = torch.where(tail > 0, sorted_sq / tail.clamp_min(1e-300), 0.0)
    scores = torch.empty_like(sq)
    scores[order] = sorted_scores
    return scores.view_as(weight)


def _prune_by_score(
    model: nn.Module, amount: float, masks: Masks | None, score: Callable[[Tensor], Tensor]
) -> Masks:
    """Remove the ``amount`` fraction of alive weights with the lowest scores, globally."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    weights = prunable_weights(model)
    masks = masks if masks is not None else full_masks(model)
    missing = set(weights) - set(masks)
    if missing:
        raise ValueError(f"masks lack prunable weights: {sorted(missing)[:3]}")
    names = list(weights)
    flat_scores, flat_alive = [], []
    for n in names:
        m = masks[n].to(weights[n].device)
        w = weights[n].detach() * m
        flat_scores.append(score(w).flatten().double().cpu())
        flat_alive.append(m.flatten().cpu())
    scores = torch.cat(flat_scores)
    alive = torch.cat(flat_alive)
    n_remove = int(round(amount * int(alive.sum())))
    new_alive = alive.clone()
    if n_remove > 0:
        alive_idx = alive.nonzero().squeeze(1)
        order = torch.argsort(scores[alive_idx], stable=True)
        new_alive[alive_idx[order[:n_remove]]] = False
    out, start = {}, 0
    for n in names:
        size = weights[n].numel()
        out[n] = new_alive[start : start + size].view(weights[n].shape).to(masks[n].device)
        start += size
    return out


def lamp_masks(
    model: nn.Module, amount: float, masks: Masks | None = None, seed: int = 0
) -> Masks:
    """Global LAMP pruning: scores are computed on the weights with ``masks`` applied.

    ``seed`` is unused; it keeps the interface of every pruner the same.
    """
    return _prune_by_score(model, amount, masks, lamp_scores)


def magnitude_masks(
    model: nn.Module, amount: float, masks: Masks | None = None, seed: int = 0
) -> Masks:
    """Global magnitude pruning (one threshold over all layers); a baseline for LAMP."""
    return _prune_by_score(model, amount, masks, lambda w: w.abs())


def random_masks(
    model: nn.Module, amount: float, masks: Masks | None = None, seed: int = 0
) -> Masks:
    """Random pruning of alive weights (seeded, no global RNG); the null baseline."""
    gen = torch.Generator().manual_seed(seed)

    def score(w: Tensor) -> Tensor:
        return torch.rand(w.shape, generator=gen, dtype=torch.float64)

    return _prune_by_score(model, amount, masks, score)


PRUNERS: dict[str, Callable[..., Masks]] = {
    "lamp": lamp_masks,
    "magnitude": magnitude_masks,
    "random": random_masks,
}
