"""The paper's numbers as data, the cell-by-cell comparison and the LTS investigation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lth_book.paper import (
    LTS_CANDIDATES,
    PAPER_PARAMS,
    PAPER_TABLE1,
    compare_table2,
    lts_candidates,
    lts_printed_definition,
    paper_table2,
)
from lth_core.analysis.metrics import table2
from lth_core.models import ARCHITECTURES


def test_table1_as_printed():
    assert list(PAPER_TABLE1) == list(ARCHITECTURES)
    assert PAPER_TABLE1["lenet5"] == "61K"
    assert PAPER_TABLE1["resnet18"] == "11.17M"
    assert PAPER_PARAMS["lenet5"] == 61_000
    assert PAPER_PARAMS["pnasnet_a"] == 130_000
    assert PAPER_PARAMS["efficientnet_b0"] == 3_590_000


@pytest.mark.parametrize(
    "arch, column, printed",
    [
        ("lenet5", "sr", 68),
        ("lenet5", "lts", 1.2895),
        ("lenet5", "dense_test_acc_mean", 67.92),
        ("lenet5", "dense_test_acc_std", 0.96),
        ("lenet5", "best_sparse_a_gain_mean", 1.08),
        ("lenet5", "best_sparse_a_gain_std", 0.81),
        ("lenet5", "best_sparse_tl_gain_mean", 0.003),
        ("lenet5", "sparsest_matching_tl_gain_mean", -0.004),
        ("pnasnet_a", "best_sparse_traj_mean", 321.56),
        ("pnasnet_b", "sparsest_matching_test_acc_mean", 84.87),
        ("pnasnet_b", "lts", 1.2030),
        ("resnet32", "lts", 0.7183),
        ("resnet32", "best_sparse_tl_gain_std", 21.17),
        ("mobilenet_v1", "sr", 94),
        ("mobilenet_v1", "sparsest_matching_tl_gain_mean", -0.39),
        ("efficientnet_b0", "best_sparse_a_gain_std", 0.2),
        ("efficientnet_b0", "sparsest_matching_traj_std", 50.72),
        ("resnet18", "sr", 67),
        ("resnet18", "sparsest_matching_tl_gain_mean", -3.02),
        ("resnet18", "best_sparse_test_acc_std", 0.16),
    ],
)
def test_table2_cells(arch, column, printed):
    assert paper_table2().at[arch, column] == pytest.approx(printed)


def _tiny_results() -> pd.DataFrame:
    rows = []
    for arch in ("lenet5", "resnet18"):
        for run in range(2):
            for stage, acc in enumerate([70.0, 71.0 + run, 69.0]):
                rows.append(dict(arch=arch, run=run, stage=stage, density=0.84**stage,
                                 val_acc=acc, test_acc=acc, traj_len=10.0 + stage,
                                 traj_len_2d=5.0 + stage))
    return pd.DataFrame(rows)


def test_table2_shape_and_columns_match_ours():
    paper = paper_table2()
    assert list(paper.index) == list(ARCHITECTURES)
    ours = table2(_tiny_results())
    assert set(paper.columns) <= set(ours.columns)
    assert "n_runs" not in paper.columns
    # Dense gains are 0 by definition, in the paper too.
    assert (paper["dense_a_gain_mean"] == 0).all() and (paper["dense_tl_gain_mean"] == 0).all()


def test_compare_table2_differences():
    paper = paper_table2()
    ours = paper.loc[["resnet18", "lenet5"]].copy()
    ours.loc["lenet5", "lts"] += 0.5
    ours["extra"] = 1.0
    cmp = compare_table2(ours, paper)
    assert list(cmp.columns) == ["ours", "paper", "diff"]
    assert list(cmp.index.get_level_values("arch").unique()) == ["lenet5", "resnet18"]
    assert "extra" not in cmp.index.get_level_values("metric")
    assert cmp.loc[("lenet5", "lts"), "diff"] == pytest.approx(0.5)
    assert cmp.loc[("lenet5", "lts"), "paper"] == pytest.approx(1.2895)
    assert (cmp.drop(("lenet5", "lts"))["diff"] == 0).all()


def test_compare_table2_on_our_table():
    cmp = compare_table2(table2(_tiny_results()), paper_table2())
    assert set(cmp.index.get_level_values("arch")) == {"lenet5", "resnet18"}
    row = cmp.loc[("lenet5", "sr")]
    assert row["ours"] == 100.0 and row["diff"] == pytest.approx(32.0)


def test_lts_printed_definition():
    assert lts_printed_definition(68, 1.08) == pytest.approx(0.7344)
    np.testing.assert_allclose(lts_printed_definition(np.array([50.0, 100.0]), 2.0), [1.0, 2.0])


def test_lts_candidates_table():
    t = lts_candidates()
    assert len(t) == 1 + len(LTS_CANDIDATES)
    assert list(t.columns) == list(ARCHITECTURES) + [
        "max_abs_err", "rows_within_rounding", "reproduces"]
    np.testing.assert_allclose(t.loc["printed LTS", list(ARCHITECTURES)],
                               paper_table2()["lts"])
    definition = t.loc[[i for i in t.index if "[printed definition]" in i][0]]
    assert definition["lenet5"] == pytest.approx(0.7344)
    assert definition["max_abs_err"] == pytest.approx(1.2030 - 0.69 * 0.90)  # PNASNet-B
    assert definition["rows_within_rounding"] == 0
    # Nothing reproduces the printed column; the best candidate misses one row.
    assert not t.drop("printed LTS")["reproduces"].any()
    best = t.loc["(A_gain(BS) + std) x SR/100"]
    assert best["rows_within_rounding"] == 6
    assert best["max_abs_err"] == pytest.approx(1.2030 - (0.69 + 0.43) * 0.90)
