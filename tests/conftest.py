"""Shared fixtures: tiny synthetic data and a seconds-long search config."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lth_core.config import SearchConfig, TrainConfig
from lth_core.data import load_data

TINY_DATA = "synthetic:600:200"


@pytest.fixture(scope="session")
def tiny_data():
    return load_data(TINY_DATA)


def tiny_config(**overrides) -> SearchConfig:
    train = TrainConfig(lr=0.05, max_epochs=3, patience=3, batch_size=64)
    base = dict(stages=3, arc_pairs=2, arc_points=64, hidden_arc_points=32, train=train)
    base.update(overrides)
    return SearchConfig(**base)


def make_results(accs: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per-stage table from arch -> (runs, stages) test accuracies (val = test)."""
    rows = []
    for arch, a in accs.items():
        for run, per_stage in enumerate(a):
            for stage, acc in enumerate(per_stage):
                rows.append(dict(arch=arch, run=run, stage=stage, density=0.84**stage,
                                 val_acc=acc, test_acc=acc, traj_len=1.0, traj_len_2d=1.0))
    return pd.DataFrame(rows)


def skip_summary(skipped: list) -> str | None:
    """One line for the suite's close: how many tests were skipped, grouped by reason, most
    frequent first (``"3 skipped: needs /usr/bin/chromium ... (2), needs git (1)"``)."""
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = "skipped"
        if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
            reason = str(report.longrepr[2])
        elif report.longrepr is not None:
            reason = str(report.longrepr)
        reason = reason.removeprefix("Skipped: ").strip() or "skipped"
        reasons[reason] = reasons.get(reason, 0) + 1
    if not reasons:
        return None
    groups = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{len(skipped)} skipped: " + ", ".join(f"{r} ({n})" for r, n in groups)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say at the end why tests were skipped (the browser tests without Debian's chromium,
    Ray, ONNX...), also under ``-q`` (the project's addopts), where pytest lists none."""
    line = skip_summary(terminalreporter.stats.get("skipped", []))
    if line:
        terminalreporter.write_line(line)
