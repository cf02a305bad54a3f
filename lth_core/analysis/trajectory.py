"""Trajectory length (Raghu et al., 2017): the length of a network's image of a closed arc.

A circle x(t) = cos(t) x0 + sin(t) x1 through two inputs is fed to the network as one batch;
the length of the output curve (logits, optionally projected to 2D by PCA) measures how much
the network stretches the input space, which the paper uses as a proxy for expressive power.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

CHUNK = 4096  # forward at most this many arc points at once


def arc(x0: Tensor, x1: Tensor, n_points: int) -> Tensor:
    """Points cos(t) x0 + sin(t) x1 at t = 2 pi i / n, i < n (the loop is closed later)."""
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 differ in shape: {tuple(x0.shape)} vs {tuple(x1.shape)}")
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    t = torch.arange(n_points, dtype=torch.float64, device=x0.device) * (2 * math.pi / n_points)
    shape = (n_points,) + (1,) * x0.dim()
    cos, sin = torch.cos(t).view(shape), torch.sin(t).view(shape)
    return (cos * x0.double() + sin * x1.double()).to(x0.dtype)


def curve_length(points: Tensor, closed: bool = True) -> float:
    """Sum of distances between consecutive rows (trailing dims flattened), in float64."""
    p = points.reshape(points.shape[0], -1).double()
    if p.shape[0] < 2:
        return 0.0
    length = torch.linalg.vector_norm(p[1:] - p[:-1], dim=1).sum()
    if closed:
        length = length + torch.linalg.vector_norm(p[0] - p[-1])
    return float(length)


def project_2d(points: Tensor) -> Tensor:
    """Centre the (n, d) rows and project onto the first two principal components (float64).

    Exact SVD keeps it deterministic; each component's sign is fixed so that its largest-magnitude
    score is positive. Missing components (d == 1, or rank < 2) come back as zero columns.
    """
    p = points.reshape(points.shape[0], -1).double()
    p = p - p.mean(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(p, full_matrices=False)
    scores = u[:, :2] * s[:2]
    if scores.shape[1] > 0:
        idx = scores.abs().argmax(dim=0)
        signs = torch.sign(scores[idx, torch.arange(scores.shape[1], device=scores.device)])
        scores = scores * torch.where(signs == 0, torch.ones_like(signs), signs)
    if scores.shape[1] < 2:
        pad = scores.new_zeros(scores.shape[0], 2 - scores.shape[1])
        scores = torch.cat([scores, pad], dim=1)
    return scores


_project = project_2d  # trajectory_length's parameter `project_2d` shadows the function


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), None
    return param.device, param.dtype if param.is_floating_point() else None


@contextmanager
def _measuring(model: nn.Module) -> Iterator[None]:
    """Eval mode, no_grad and full fp32; restores every submodule's own train flag afterwards.

    Neighbouring arc points are only ~2 pi / n_points apart, so TF32 or autocast rounding
    (~1e-3 relative) is as large as the steps being summed and inflates the length (seen on an
    H100: +3% for an untrained ResNet-32); hence TF32 and autocast are off while measuring.
    """
    modes = [(m, m.training) for m in model.modules()]
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    tf32 = cudnn.allow_tf32, matmul.allow_tf32
    device, _ = _device_dtype(model)
    model.eval()
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = tf32
        for m, training in modes:
            m.training = training


def _arc_on_model(model: nn.Module, x0: Tensor, x1: Tensor, n_points: int) -> Tensor:
    device, dtype = _device_dtype(model)
    x0, x1 = x0.to(device=device, dtype=dtype), x1.to(device=device, dtype=dtype)
    return arc(x0, x1, n_points)


def output_arc(model: nn.Module, x0: Tensor, x1: Tensor, n_points: int = 1000) -> Tensor:
    """The model's outputs (logits) on the arc through x0 and x1, (n_points, ...), measured
    as every length here is (eval mode, no_grad, fp32), on the CPU (logits are small, and
    CPU SVD is deterministic)."""
    with _measuring(model):
        batch = _arc_on_model(model, x0, x1, n_points)
        return torch.cat([model(chunk) for chunk in batch.split(CHUNK)]).cpu()


def trajectory_length(
    model: nn.Module, x0: Tensor, x1: Tensor, n_points: int = 1000, project_2d: bool = False
) -> float:
    """Length of the closed output curve (logits) of the arc through single inputs x0, x1."""
    out = output_arc(model, x0, x1, n_points)
    points = _project(out) if project_2d else out
    return curve_length(points, closed=True)


def mean_trajectory_lengths(
    model: nn.Module, pairs: Tensor, n_points: int = 1000
) -> dict[str, float]:
    """Mean full and 2D-projected lengths over (P, 2, C, H, W) pairs, one forward per pair."""
    if pairs.dim() < 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (P, 2, ...), got {tuple(pairs.shape)}")
    full, flat = [], []
    for pair in pairs:
        out = output_arc(model, pair[0], pair[1], n_points)
        full.append(curve_length(out))
        flat.append(curve_length(_project(out)))
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
    return {"traj_len": mean(full), "traj_len_2d": mean(flat)}


def arc_pairs(images: Tensor, n_pairs: int, seed: int) -> Tensor:
    """P pairs of two different images from (N, C, H, W), drawn by a generator seeded by `seed`."""
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 images to form pairs, got {n}")
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(n, (n_pairs,), generator=g)
    j = torch.randint(n - 1, (n_pairs,), generator=g)
    j = j + (j >= i).long()  # skip i, so j is uniform over the other images
    idx = torch.stack([i, j], dim=1).to(images.device)
    return images[idx]


def hidden_trajectories(
    model: nn.Module, x0: Tensor, x1: Tensor, n_points: int = 200
) -> list[tuple[str, np.ndarray]]:
    """2D projections of the arc after each block (Figure 1 of the paper), input first, logits last.

    Blocks come from `model.blocks()` (a list of (name, module) applied in sequence) when the
    model has it, else from forward hooks on the top-level children, in call order.
    """
    to_np = lambda t: project_2d(t).float().cpu().numpy()
    with _measuring(model):
        batch = _arc_on_model(model, x0, x1, n_points)
        result = [("input", to_np(batch))]
        if callable(getattr(model, "blocks", None)):
            h = batch
            for name, block in model.blocks():
                h = block(h)
                result.append((name, to_np(h)))
            return result

        last: list[Tensor] = []

        def hook(name: str):
            def record(_module: nn.Module, _inputs: object, output: object) -> None:
                if isinstance(output, Tensor):
                    result.append((name, to_np(output)))
                    last[:] = [output]

            return record

        handles = [
            child.register_forward_hook(hook(name)) for name, child in model.named_children()
        ]
        try:
            out = model(batch)
        finally:
            for handle in handles:
                handle.remove()
        if not last or last[0] is not out:  # forward did more after its last child
            result.append(("output", to_np(out)))
    return result
