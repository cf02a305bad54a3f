import math

import numpy as np
import pandas as pd
import pytest

from lth_core.analysis.metrics import (
    complete_runs,
    format_table2,
    run_summary,
    search_stages,
    table2,
    tl_gain_by_stage,
)

D = [1.0, 0.84, 0.7056]  # density after 0, 1, 2 stages of pruning 16%

# (arch, run, stage, val_acc, test_acc, traj_len_2d)
ROWS = [
    # A run 0. test: winners {1, 2}; best = 1 (63), sparsest = 2.
    #   best A_gain = 3/60 = 5.0 %, TL_gain = (12-10)/10 = 20 %
    #   sparsest A_gain = 1.5/60 = 2.5 %, TL_gain = (9-10)/10 = -10 %
    #   val: winners {1 (62>=61), 2 (63>=61)}; best = 2 (val 63) -> test 61.5, A_gain 2.5 %
    ("A", 0, 0, 61.0, 60.0, 10.0),
    ("A", 0, 1, 62.0, 63.0, 12.0),
    ("A", 0, 2, 63.0, 61.5, 9.0),
    # A run 1. test: winners {1} (50 >= 50, equality wins); A_gain 0 %, TL_gain 25 %
    #   val: winners {2} (52 >= 50; 49 < 50) -> test 49, A_gain -2.0 %, TL_gain -10 %
    ("A", 1, 0, 50.0, 50.0, 20.0),
    ("A", 1, 1, 49.0, 50.0, 25.0),
    ("A", 1, 2, 52.0, 49.0, 18.0),
    # A run 2. no winner under either selection.
    ("A", 2, 0, 80.0, 80.0, 5.0),
    ("A", 2, 1, 79.0, 79.0, 6.0),
    ("A", 2, 2, 78.0, 78.0, 4.0),
    # B run 0. test: winners {1, 2}; best = 1 (A_gain 0.9/90 = 1 %, TL 10 %),
    #   sparsest = 2 (A_gain 0.45/90 = 0.5 %, TL -5 %). val: winners {1} -> stage 1.
    ("B", 0, 0, 90.0, 90.0, 100.0),
    ("B", 0, 1, 90.5, 90.9, 110.0),
    ("B", 0, 2, 89.0, 90.45, 95.0),
    # B run 1. test: winners {1} (A_gain 0.8/80 = 1 %, TL 10 %).
    #   val: winners {2} (80.5 >= 80; 79 < 80) -> test 79.5, A_gain -0.625 %, TL -20 %
    ("B", 1, 0, 80.0, 80.0, 50.0),
    ("B", 1, 1, 79.0, 80.8, 55.0),
    ("B", 1, 2, 80.5, 79.5, 40.0),
    # B run 2. test: winners {1, 2} tie at 70.7 -> Best Sparse = the sparser, stage 2
    #   (A_gain 1 %, TL (27-30)/30 = -10 %); sparsest = 2. val: winners {1} -> stage 1.
    ("B", 2, 0, 70.0, 70.0, 30.0),
    ("B", 2, 1, 70.0, 70.7, 33.0),
    ("B", 2, 2, 69.0, 70.7, 27.0),
]


def results() -> pd.DataFrame:
    df = pd.DataFrame(ROWS, columns=["arch", "run", "stage", "val_acc", "test_acc", "traj_len_2d"])
    df["density"] = [D[s] for s in df["stage"]]
    df["traj_len"] = 3.0 * df["traj_len_2d"] + 1.0  # a second trajectory column
    return df


def std(*xs: float) -> float:
    return float(np.std(xs, ddof=1))


def summary_row(s: pd.DataFrame, arch: str, run: int) -> pd.Series:
    return s[(s["arch"] == arch) & (s["run"] == run)].iloc[0]


def test_run_summary_test_selection():
    s = run_summary(results())
    assert list(zip(s["arch"], s["run"], strict=True)) == [
        ("A", 0), ("A", 1), ("A", 2), ("B", 0), ("B", 1), ("B", 2)
    ]  # fmt: skip
    assert s["success"].tolist() == [True, True, False, True, True, True]
    assert s["n_winning"].tolist() == [2, 1, 0, 2, 1, 2]
    assert s["best_sparse_stage"].tolist()[:2] == [1, 1]
    assert s["sparsest_matching_stage"].tolist()[:2] == [2, 1]
    assert s["best_sparse_stage"].tolist()[3:] == [1, 1, 2]  # B run 2: tie -> sparser
    assert s["sparsest_matching_stage"].tolist()[3:] == [2, 1, 2]

    r = summary_row(s, "A", 0)
    assert r["dense_test_acc"] == 60.0 and r["dense_traj"] == 10.0
    assert r["best_sparse_test_acc"] == 63.0 and r["best_sparse_density"] == D[1]
    assert r["best_sparse_a_gain"] == pytest.approx(5.0)
    assert r["best_sparse_tl_gain"] == pytest.approx(20.0)
    assert r["sparsest_matching_a_gain"] == pytest.approx(2.5)
    assert r["sparsest_matching_tl_gain"] == pytest.approx(-10.0)
    assert r["sparsest_matching_density"] == D[2]

    r = summary_row(s, "A", 1)
    assert r["best_sparse_a_gain"] == 0.0 and r["best_sparse_tl_gain"] == pytest.approx(25.0)

    r = summary_row(s, "A", 2)  # no winner: every winner field is NaN
    for kind in ("best_sparse", "sparsest_matching"):
        for field in ("stage", "density", "test_acc", "traj", "a_gain", "tl_gain"):
            assert math.isnan(r[f"{kind}_{field}"])

    r = summary_row(s, "B", 2)
    assert r["best_sparse_a_gain"] == pytest.approx(1.0)
    assert r["best_sparse_tl_gain"] == pytest.approx(-10.0)


def test_run_summary_val_selection_reports_test_gains():
    s = run_summary(results(), select_on="val")
    assert s["success"].tolist() == [True, True, False, True, True, True]
    assert s["best_sparse_stage"].tolist()[:2] == [2, 2]  # test selection picked [1, 1]
    assert s["best_sparse_stage"].tolist()[3:] == [1, 2, 1]  # test selection picked [1, 1, 2]
    r = summary_row(s, "A", 0)
    assert r["best_sparse_test_acc"] == 61.5
    assert r["best_sparse_a_gain"] == pytest.approx(2.5)  # on test accuracy
    r = summary_row(s, "A", 1)
    assert r["best_sparse_a_gain"] == pytest.approx(-2.0)  # a val-winner can lose on test
    assert r["best_sparse_tl_gain"] == pytest.approx(-10.0)
    r = summary_row(s, "B", 1)
    assert r["sparsest_matching_a_gain"] == pytest.approx(-0.625)
    assert r["sparsest_matching_tl_gain"] == pytest.approx(-20.0)


def test_table2_test_selection():
    t = table2(results())
    assert t.index.tolist() == ["A", "B"]
    assert t.loc["A", "n_runs"] == 3 and t.loc["B", "n_runs"] == 3
    assert t.loc["A", "sr"] == pytest.approx(200 / 3)
    assert t.loc["B", "sr"] == pytest.approx(100.0)

    a = t.loc["A"]
    # dense over all 3 runs; gains are 0
    assert a["dense_test_acc_mean"] == pytest.approx((60 + 50 + 80) / 3)
    assert a["dense_test_acc_std"] == pytest.approx(std(60, 50, 80))  # 15.2753
    assert a["dense_traj_mean"] == pytest.approx((10 + 20 + 5) / 3)
    assert a["dense_traj_std"] == pytest.approx(std(10, 20, 5))  # 7.6376
    assert a["dense_a_gain_mean"] == 0.0 and a["dense_a_gain_std"] == 0.0
    assert a["dense_tl_gain_mean"] == 0.0 and a["dense_tl_gain_std"] == 0.0
    # sparse over the 2 successful runs only (run 2 is in SR's denominator, not here)
    assert a["best_sparse_a_gain_mean"] == pytest.approx(2.5)  # (5 + 0) / 2
    assert a["best_sparse_a_gain_std"] == pytest.approx(std(5, 0))  # 3.5355
    assert a["best_sparse_tl_gain_mean"] == pytest.approx(22.5)  # (20 + 25) / 2
    assert a["best_sparse_tl_gain_std"] == pytest.approx(std(20, 25))
    assert a["best_sparse_test_acc_mean"] == pytest.approx(56.5)  # (63 + 50) / 2
    assert a["best_sparse_traj_mean"] == pytest.approx(18.5)  # (12 + 25) / 2
    assert a["sparsest_matching_a_gain_mean"] == pytest.approx(1.25)  # (2.5 + 0) / 2
    assert a["sparsest_matching_tl_gain_mean"] == pytest.approx(7.5)  # (-10 + 25) / 2
    assert a["sparsest_matching_tl_gain_std"] == pytest.approx(std(-10, 25))  # 24.7487
    assert a["sparsest_matching_traj_mean"] == pytest.approx(17.0)  # (9 + 25) / 2
    # LTS = mean Best Sparse A_gain x SR / 100 = 2.5 x 2/3
    assert a["lts"] == pytest.approx(2.5 * 2 / 3)

    b = t.loc["B"]
    assert b["best_sparse_a_gain_mean"] == pytest.approx(1.0)
    assert b["best_sparse_a_gain_std"] == pytest.approx(0.0, abs=1e-12)
    assert b["best_sparse_tl_gain_mean"] == pytest.approx(10 / 3)  # (10 + 10 - 10) / 3
    assert b["sparsest_matching_a_gain_mean"] == pytest.approx(2.5 / 3)  # (0.5 + 1 + 1) / 3
    assert b["sparsest_matching_tl_gain_mean"] == pytest.approx(-5 / 3)  # (-5 + 10 - 10) / 3
    assert b["lts"] == pytest.approx(1.0)


def test_table2_val_selection():
    t = table2(results(), select_on="val")
    assert t.loc["A", "sr"] == pytest.approx(200 / 3)
    assert t.loc["A", "best_sparse_a_gain_mean"] == pytest.approx(0.25)  # (2.5 - 2) / 2
    assert t.loc["A", "lts"] == pytest.approx(0.25 * 2 / 3)
    assert t.loc["B", "best_sparse_a_gain_mean"] == pytest.approx((1 - 0.625 + 1) / 3)


def test_table2_trajectory_column_and_order():
    t = table2(results(), traj="traj_len", order=["B", "A"])
    assert t.index.tolist() == ["B", "A"]
    assert t.loc["A", "dense_traj_mean"] == pytest.approx(3 * 35 / 3 + 1)
    # A run 0 best: (37 - 31) / 31; A run 1 best: (76 - 61) / 61
    assert t.loc["A", "best_sparse_tl_gain_mean"] == pytest.approx((600 / 31 + 1500 / 61) / 2)
    with pytest.raises(ValueError, match="C"):
        table2(results(), order=["C"])


def test_table2_no_success_and_single_run():
    df = results()
    t = table2(df[(df["arch"] == "A") & (df["run"] == 2)])
    assert t.loc["A", "sr"] == 0.0
    assert t.loc["A", "lts"] == 0.0  # nothing found: TS brings nothing
    assert math.isnan(t.loc["A", "best_sparse_a_gain_mean"])  # mean of an empty set
    assert math.isnan(t.loc["A", "dense_test_acc_std"])  # one value: no sample std
    assert t.loc["A", "dense_test_acc_mean"] == 80.0


def test_tl_gain_by_stage():
    g = tl_gain_by_stage(results())
    assert list(zip(g["arch"], g["stage"], strict=True)) == [
        ("A", 0), ("A", 1), ("A", 2), ("B", 0), ("B", 1), ("B", 2)
    ]  # fmt: skip
    assert g["n_runs"].tolist() == [3] * 6
    a = g[g["arch"] == "A"].set_index("stage")
    assert a.loc[0, "tl_gain_mean"] == 0.0 and a.loc[0, "tl_gain_std"] == 0.0
    # stage 1: 20, 25, 20 (6 vs 5); stage 2: -10, -10, -20 (4 vs 5), over ALL runs
    assert a.loc[1, "tl_gain_mean"] == pytest.approx(65 / 3)
    assert a.loc[1, "tl_gain_std"] == pytest.approx(std(20, 25, 20))
    assert a.loc[2, "tl_gain_mean"] == pytest.approx(-40 / 3)
    assert a.loc[2, "tl_gain_std"] == pytest.approx(std(-10, -10, -20))
    b = g[g["arch"] == "B"].set_index("stage")
    assert b.loc[1, "tl_gain_mean"] == pytest.approx(10.0)  # 10, 10, 10
    g2 = tl_gain_by_stage(results(), traj="traj_len")
    assert g2.loc[1, "tl_gain_mean"] == pytest.approx((600 / 31 + 1500 / 61 + 300 / 16) / 3)


def test_format_table2():
    text = format_table2(table2(results()))
    lines = text.splitlines()
    assert len(lines) == 1 + 2 * 3
    assert "Success Rate" in lines[0] and "LTS Score" in lines[0]
    assert lines[1].startswith("A") and "Dense" in lines[1]
    assert "67%" in lines[1] and "1.6667" in lines[1]
    assert "Best Sparse" in lines[2] and "2.50 ± 3.54" in lines[2]  # A_gain
    assert "22.50 ± 3.54" in lines[2]  # TL_gain
    assert "Sparsest Matching" in lines[3]
    assert "0.00 ± 0.00" in lines[1]
    assert "100%" in lines[4] and "1.0000" in lines[4]
    assert "%" not in lines[2] and "%" not in lines[3]  # SR only on the dense row
    single = format_table2(table2(results().query("run == 0")))
    assert "n/a" in single  # std of one run


def test_missing_column_and_missing_dense():
    df = results()
    with pytest.raises(ValueError, match="val_acc"):
        run_summary(df.drop(columns="val_acc"))
    with pytest.raises(ValueError, match="traj_len_2d"):
        table2(df.drop(columns="traj_len_2d"))
    with pytest.raises(ValueError, match="traj_len_2d"):
        tl_gain_by_stage(df.drop(columns="traj_len_2d"))
    no_dense = df[~((df["arch"] == "B") & (df["run"] == 1) & (df["stage"] == 0))]
    with pytest.raises(ValueError, match="stage 0"):
        run_summary(no_dense)
    with pytest.raises(ValueError, match="stage 0"):
        tl_gain_by_stage(no_dense)
    with pytest.raises(ValueError, match="duplicate"):
        run_summary(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(ValueError, match="select_on"):
        run_summary(df, select_on="train")


def test_dense_only_results_have_no_success_rate():
    """Stage-0-only records (K = 1) cannot succeed or fail: SR and LTS are NaN, not 0."""
    import math

    df = pd.DataFrame({"arch": ["a", "a"], "run": [0, 1], "stage": [0, 0],
                       "density": [1.0, 1.0], "val_acc": [50.0, 51.0],
                       "test_acc": [50.0, 52.0], "traj_len": [1.0, 1.0],
                       "traj_len_2d": [1.0, 1.0]})
    t = table2(df)
    assert math.isnan(t.loc["a", "sr"]) and math.isnan(t.loc["a", "lts"])
    assert t.loc["a", "dense_test_acc_mean"] == 51.0


def test_complete_runs_leave_out_unfinished_ones():
    """A run without a record of every stage of K is unfinished, not failed: it is left out
    of SR, A_gain and LTS, and counted."""
    df = results()
    gone = (((df["arch"] == "A") & (df["run"] == 2) & (df["stage"] == 2))
            | ((df["arch"] == "B") & (df["run"] == 1) & (df["stage"] >= 1)))
    partial = df[~gone]
    assert table2(partial).loc["B", "sr"] == pytest.approx(200 / 3)  # B run 1 counted failed
    kept, left_out = complete_runs(partial)
    assert left_out == {"A": 1, "B": 1}
    unfinished = ((df["arch"] == "A") & (df["run"] == 2)) | ((df["arch"] == "B") & (df["run"] == 1))
    pd.testing.assert_frame_equal(kept, df[~unfinished].reset_index(drop=True))
    assert table2(kept)["sr"].tolist() == [100.0, 100.0]
    assert complete_runs(df)[1] == {} and len(complete_runs(df)[0]) == len(df)


def test_search_stages_come_from_the_config_when_recorded():
    """K is what the search asked for: runs of a K = 4 search that reached stage 2 are all
    incomplete, even if no run has stage 3 yet."""
    df = results()
    df["config"] = ['{"stages": 4}' if a == "A" else '{"stages": 3}' for a in df["arch"]]
    assert search_stages(df) == {"A": 4, "B": 3}
    kept, left_out = complete_runs(df)
    assert left_out == {"A": 3} and set(kept["arch"]) == {"B"}
    assert search_stages(df.drop(columns="config")) == {"A": 3, "B": 3}
