"""The findings' verdicts pinned down (issue 22, item 4): synthetic records whose quality falls,
is flat or rises with size, and whose expressivity rises or falls with pruning, go through
`findings.findings`; each claim's verdict must be the one its rule gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lth_book.findings as findings_module
from lth_book.findings import findings
from lth_book.formats import NOT_COMPUTED, NOT_REPRODUCED, REPRODUCED

ARCHS = ["lenet5", "resnet32", "mobilenet_v1", "resnet18"]  # smallest first
RUNS = 12


def _records(successes: list[int], gains: list[float], tl: tuple[float, float] = (5.0, -5.0),
             archs: list[str] = ARCHS, seed: int = 0) -> pd.DataFrame:
    """Per arch (by size): ``successes[i]`` of `RUNS` runs whose stage-1 accuracy beats the
    dense one by ``gains[i]`` points (the others lose 1 point); 3 stages. Trajectory length:
    stage 1 ``tl[0]`` % above the dense one, stage 2 (the sparsest) ``tl[1]`` %; a run's
    stage 2 matches the dense accuracy when it succeeds, so it is the Sparsest Matching one."""
    rng = np.random.default_rng(seed)
    rows = []
    for arch, k, g in zip(archs, successes, gains, strict=True):
        for run in range(RUNS):
            dense = 70.0 + rng.normal(0, 0.05)
            won = run < k
            accs = [dense, dense + (g if won else -1.0), dense + (0.01 if won else -2.0)]
            noise = rng.normal(0, 0.3, 3)
            trajs = [100.0, 100.0 * (1 + tl[0] / 100) + noise[1],
                     100.0 * (1 + tl[1] / 100) + noise[2]]
            for stage, (acc, traj) in enumerate(zip(accs, trajs, strict=True)):
                rows.append(dict(arch=arch, run=run, stage=stage, density=0.84**stage,
                                 val_acc=acc, test_acc=acc, traj_len=traj, traj_len_2d=traj))
    return pd.DataFrame(rows)


FALLS = dict(successes=[12, 9, 6, 3], gains=[4.0, 3.0, 2.0, 1.0])
FLAT = dict(successes=[6, 6, 6, 6], gains=[2.0, 2.0, 2.0, 2.0])
RISES = dict(successes=[3, 6, 9, 12], gains=[1.0, 2.0, 3.0, 4.0])


@pytest.fixture(autouse=True)
def _no_width_study(monkeypatch):
    """The width row reads the stored study: here it is one the test sets."""
    monkeypatch.setattr(findings_module, "width_finding", lambda results=None, seed=0, **k: {
        "ours": "stub", "detail": [], "status": "not enough runs"})
    monkeypatch.setattr(findings_module, "noise_finding", lambda results=None, seed=0, **k: {
        "ours": "stub", "detail": [], "status": NOT_COMPUTED})


def _verdicts(df: pd.DataFrame) -> dict[str, str]:
    f = findings(df)
    return dict(zip(f["id"], f["verdict"], strict=True))


@pytest.mark.parametrize("trend, expected", [
    (FALLS, REPRODUCED),      # SR, A_gain and LTS all fall with size: the paper's claims
    (FLAT, NOT_REPRODUCED),   # no order at all
    (RISES, NOT_REPRODUCED),  # the opposite direction is not the claim
])
def test_size_claims_follow_the_trend(trend, expected):
    v = _verdicts(_records(**trend))
    assert v["difficulty"] == expected
    assert v["a"] == expected
    assert v["lts"] == expected
    assert v["width"] == NOT_COMPUTED


def test_a_needs_the_smallest_beyond_noise_too():
    """A_gain falling with size is not enough for (a): the smallest model's gain must be
    beyond the null model. Gains of 0.01 to 0.04 points sit inside noise of sigma 0.05."""
    df = _records(successes=[12, 9, 6, 3], gains=[0.04, 0.03, 0.02, 0.01])
    v = _verdicts(df)
    assert v["a"] == NOT_REPRODUCED
    assert v["difficulty"] == REPRODUCED  # SR still falls


def test_size_claims_need_three_architectures():
    df = _records(successes=[12, 3], gains=[4.0, 1.0], archs=ARCHS[:2])
    v = _verdicts(df)
    assert v["difficulty"] == v["a"] == v["lts"] == NOT_COMPUTED


@pytest.mark.parametrize("tl, b, c, fig5", [
    ((5.0, -5.0), REPRODUCED, REPRODUCED, REPRODUCED),          # mild up, excessive down
    ((-5.0, -5.0), NOT_REPRODUCED, REPRODUCED, NOT_REPRODUCED),  # pruning only lowers it
    ((5.0, 2.0), REPRODUCED, NOT_REPRODUCED, REPRODUCED),        # sparsest above dense, below best
    ((5.0, 10.0), REPRODUCED, NOT_REPRODUCED, NOT_REPRODUCED),   # sparsest above best
])
def test_expressivity_claims_follow_the_trajectory_lengths(tl, b, c, fig5):
    v = _verdicts(_records(**FALLS, tl=tl))
    assert (v["b"], v["c"], v["fig5"]) == (b, c, fig5)


@pytest.mark.parametrize("status, expected", [
    ("supported", REPRODUCED), ("not shown", NOT_REPRODUCED),
    ("contradicted", NOT_REPRODUCED), ("not enough runs", NOT_COMPUTED)])
def test_width_row_follows_the_width_trend(monkeypatch, status, expected):
    monkeypatch.setattr(findings_module, "width_finding", lambda results=None, seed=0, **k: {
        "ours": "stub", "detail": [], "status": status})
    assert _verdicts(_records(**FLAT))["width"] == expected


@pytest.mark.parametrize("status", [REPRODUCED, NOT_REPRODUCED, NOT_COMPUTED])
def test_noise_row_follows_claim_a_in_units_of_noise(monkeypatch, status):
    monkeypatch.setattr(findings_module, "noise_finding", lambda results=None, seed=0, **k: {
        "ours": "stub", "detail": [], "status": status})
    assert _verdicts(_records(**FLAT))["noise"] == status
