import math

import numpy as np
import pytest
import torch
from torch import nn

from lth_core.analysis import trajectory
from lth_core.analysis.trajectory import (
    arc,
    arc_pairs,
    curve_length,
    hidden_trajectories,
    mean_trajectory_lengths,
    project_2d,
    trajectory_length,
)

SHAPE = (2, 3, 4)  # (C, H, W); d = 24
D = 24


def orthonormal_pair(seed: int = 0, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, 2, generator=g, dtype=torch.float64))
    x0, x1 = (scale * q[:, 0]).reshape(SHAPE), (scale * q[:, 1]).reshape(SHAPE)
    return x0.float(), x1.float()


def linear_model(weight: torch.Tensor) -> nn.Module:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(weight)
    return nn.Sequential(nn.Flatten(), lin)


def ellipse_perimeter(a: float, b: float, n: int = 2_000_000) -> float:
    """Perimeter by a very fine polygon (relative error ~ (2 pi / n)^2 / 24 ~ 4e-13)."""
    t = np.linspace(0.0, 2 * np.pi, n + 1)
    x, y = a * np.cos(t), b * np.sin(t)
    return float(np.hypot(np.diff(x), np.diff(y)).sum())


def ellipse_perimeter_agm(a: float, b: float) -> float:
    """Exact perimeter 4 a E(e) via the arithmetic-geometric mean (Gauss-Kummer / AGM form)."""
    a, b = max(a, b), min(a, b)
    an, bn, total, n = a, b, 0.5 * (a * a - b * b), 0
    while an - bn > 1e-15 * an:
        c = (an - bn) / 2
        an, bn, n = (an + bn) / 2, math.sqrt(an * bn), n + 1
        total += 2 ** (n - 1) * c * c
    return 2 * math.pi / ((an + bn) / 2) * (a * a - total)


def ramanujan_ii(a: float, b: float) -> float:
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def test_curve_length_unit_square():
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert curve_length(square) == pytest.approx(4.0)
    assert curve_length(square, closed=False) == pytest.approx(3.0)
    assert curve_length(square[:1]) == 0.0
    # trailing dims are flattened
    assert curve_length(square.reshape(4, 1, 2)) == pytest.approx(4.0)


def test_arc_endpoints_and_shape():
    x0, x1 = orthonormal_pair()
    pts = arc(x0, x1, 8)
    assert pts.shape == (8, *SHAPE)
    assert torch.allclose(pts[0], x0)
    assert torch.allclose(pts[2], x1, atol=1e-7)  # t = pi/2
    assert torch.allclose(pts[4], -x0, atol=1e-7)  # t = pi
    # every point of the arc of an orthonormal pair has unit norm
    assert torch.allclose(pts.flatten(1).norm(dim=1), torch.ones(8), atol=1e-6)


def test_arc_of_orthonormal_pair_is_unit_circle():
    x0, x1 = orthonormal_pair()
    assert curve_length(arc(x0, x1, 1000)) == pytest.approx(2 * math.pi, rel=1e-5)


def test_ellipse_reference_formulas_agree():
    for a, b in [(3.0, 1.0), (1.0, 1.0), (5.0, 0.1), (0.7, 2.0)]:
        exact = ellipse_perimeter_agm(a, b)
        assert ellipse_perimeter(a, b) == pytest.approx(exact, rel=1e-10)
        if max(a, b) / min(a, b) <= 3:  # Ramanujan II is ~3e-8 off at 3:1, worse when flatter
            assert ramanujan_ii(a, b) == pytest.approx(exact, rel=1e-7)
    assert ellipse_perimeter_agm(1.0, 1.0) == pytest.approx(2 * math.pi, rel=1e-14)


def test_linear_map_gives_ellipse_perimeter():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(7, D, generator=g)
    x0, x1 = orthonormal_pair(seed=2)
    a = w.double() @ torch.stack([x0.flatten(), x1.flatten()], dim=1).double()
    s = torch.linalg.svdvals(a)  # semi-axes of the output ellipse
    expected = ellipse_perimeter_agm(float(s[0]), float(s[1]))
    got = trajectory_length(linear_model(w), x0, x1, n_points=1000)
    assert got == pytest.approx(expected, rel=1e-4)
    # the image of a linear map lies in a plane: projecting to 2D loses nothing
    got_2d = trajectory_length(linear_model(w), x0, x1, n_points=1000, project_2d=True)
    assert got_2d == pytest.approx(got, rel=1e-6)


def test_scaled_isometry_gives_circle():
    g = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    s, r = 2.5, 3.0  # scale of the map, norm of the inputs
    x0, x1 = orthonormal_pair(seed=4, scale=r)
    got = trajectory_length(linear_model((s * q).float()), x0, x1, n_points=1000)
    assert got == pytest.approx(2 * math.pi * s * r, rel=1e-4)


def test_project_2d_preserves_planar_curve_and_pads():
    x0, x1 = orthonormal_pair()
    pts = arc(x0, x1, 64).flatten(1) + 5.0  # a circle in a plane, off the origin
    proj = project_2d(pts)
    assert proj.shape == (64, 2) and proj.dtype == torch.float64
    assert torch.allclose(proj.mean(dim=0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert curve_length(proj) == pytest.approx(curve_length(pts), rel=1e-6)
    assert torch.equal(project_2d(pts), proj)  # deterministic

    line = torch.arange(5.0).reshape(5, 1)
    proj1 = project_2d(line)
    assert proj1.shape == (5, 2)
    assert torch.all(proj1[:, 1] == 0)
    assert curve_length(proj1, closed=False) == pytest.approx(4.0)


def test_mode_restored_after_measurement():
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 4), nn.Dropout(0.5), nn.Linear(4, 3))
    x0, x1 = orthonormal_pair()
    model.train()
    trajectory_length(model, x0, x1, n_points=16)
    assert all(m.training for m in model.modules())
    model.eval()
    trajectory_length(model, x0, x1, n_points=16)
    assert not any(m.training for m in model.modules())
    model.train()
    model[2].eval()  # mixed modes are restored module by module
    hidden_trajectories(model, x0, x1, n_points=16)
    mean_trajectory_lengths(model, torch.stack([x0, x1]).unsqueeze(0), n_points=16)
    assert [m.training for m in model.modules()] == [True, True, True, False, True]


def test_measurement_is_in_eval_mode():
    # dropout would make the curve jagged (and random) in train mode
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(D, 3))
    x0, x1 = orthonormal_pair()
    model.train()
    a = trajectory_length(model, x0, x1, n_points=100)
    b = trajectory_length(model, x0, x1, n_points=100)
    assert a == b


def test_chunking_gives_same_length(monkeypatch):
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 5), nn.Tanh(), nn.Linear(5, 3))
    x0, x1 = orthonormal_pair()
    whole = trajectory_length(model, x0, x1, n_points=100)
    monkeypatch.setattr(trajectory, "CHUNK", 7)
    assert trajectory_length(model, x0, x1, n_points=100) == pytest.approx(whole, rel=1e-6)


def test_model_without_parameters():
    x0, x1 = orthonormal_pair()
    got = trajectory_length(nn.Flatten(), x0, x1, n_points=1000)
    assert got == pytest.approx(2 * math.pi, rel=1e-5)


def test_mean_trajectory_lengths_matches_single_measurements():
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 6), nn.ReLU(), nn.Linear(6, 4))
    g = torch.Generator().manual_seed(5)
    pairs = torch.randn(3, 2, *SHAPE, generator=g)
    got = mean_trajectory_lengths(model, pairs, n_points=50)
    full = [trajectory_length(model, p[0], p[1], n_points=50) for p in pairs]
    flat = [trajectory_length(model, p[0], p[1], n_points=50, project_2d=True) for p in pairs]
    assert set(got) == {"traj_len", "traj_len_2d"}
    assert got["traj_len"] == pytest.approx(np.mean(full))
    assert got["traj_len_2d"] == pytest.approx(np.mean(flat))
    assert got["traj_len_2d"] <= got["traj_len"] + 1e-9  # projection never lengthens


def test_arc_pairs_deterministic_and_distinct():
    images = torch.arange(10.0).reshape(10, 1, 1, 1).expand(10, *SHAPE).clone()
    a = arc_pairs(images, 20, seed=7)
    b = arc_pairs(images, 20, seed=7)
    assert a.shape == (20, 2, *SHAPE)
    assert torch.equal(a, b)
    assert not torch.equal(a, arc_pairs(images, 20, seed=8))
    assert torch.all(a[:, 0, 0, 0, 0] != a[:, 1, 0, 0, 0])


def test_arc_pairs_leaves_global_rng_alone():
    images = torch.randn(5, *SHAPE)
    state = torch.get_rng_state()
    arc_pairs(images, 4, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError):
        arc_pairs(images[:1], 1, seed=0)


def test_hidden_trajectories_hook_path():
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, 4))
    x0, x1 = orthonormal_pair()
    traj = hidden_trajectories(model, x0, x1, n_points=40)
    assert [name for name, _ in traj] == ["input", "0", "1", "2", "3"]
    for _, pts in traj:
        assert pts.shape == (40, 2) and pts.dtype == np.float32
    with torch.no_grad():
        out = model(arc(x0, x1, 40))
    np.testing.assert_allclose(traj[-1][1], project_2d(out).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        traj[0][1], project_2d(arc(x0, x1, 40)).numpy(), rtol=1e-5, atol=1e-6
    )


class Tail(nn.Module):
    """Does work after its last child, so the hook path must add the real output."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(D, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(x)) * 3.0


def test_hidden_trajectories_hook_path_appends_output():
    model = Tail()
    x0, x1 = orthonormal_pair()
    traj = hidden_trajectories(model, x0, x1, n_points=30)
    assert [name for name, _ in traj] == ["input", "body", "output"]
    with torch.no_grad():
        out = model(arc(x0, x1, 30))
    np.testing.assert_allclose(traj[-1][1], project_2d(out).numpy(), rtol=1e-5, atol=1e-6)


class WithBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(D, 6), nn.ReLU())
        self.mid = nn.Sequential(nn.Linear(6, 6), nn.ReLU())
        self.head = nn.Linear(6, 3)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem), ("mid", self.mid), ("head", self.head)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, block in self.blocks():
            x = block(x)
        return x


def test_hidden_trajectories_blocks_path():
    model = WithBlocks()
    x0, x1 = orthonormal_pair()
    traj = hidden_trajectories(model, x0, x1, n_points=25)
    assert [name for name, _ in traj] == ["input", "stem", "mid", "head"]
    assert all(pts.shape == (25, 2) for _, pts in traj)
    with torch.no_grad():
        out = model(arc(x0, x1, 25))
    np.testing.assert_allclose(traj[-1][1], project_2d(out).numpy(), rtol=1e-5, atol=1e-6)


class Probe(nn.Module):
    """Records the numeric settings its forward runs under."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(D, 3)
        self.seen: list[tuple[bool, bool, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(
            (
                torch.backends.cudnn.allow_tf32,
                torch.backends.cuda.matmul.allow_tf32,
                torch.is_autocast_enabled("cpu"),
                torch.is_grad_enabled(),
            )
        )
        return self.lin(x.flatten(1))


def test_measured_in_full_precision_and_settings_restored():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, matmul.allow_tf32
    model = Probe()
    x0, x1 = orthonormal_pair()
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        with torch.autocast("cpu", dtype=torch.bfloat16):
            trajectory_length(model, x0, x1, n_points=8)
            hidden_trajectories(model, x0, x1, n_points=8)
            assert torch.is_autocast_enabled("cpu")
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (True, True)
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before
    assert model.seen == [(False, False, False, False)] * 2
