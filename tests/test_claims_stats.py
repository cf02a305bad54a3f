"""The claims chapter's statistics: SR's exact interval in the bootstrap table, the null
model's two modes, permutation tests and the plain-language statements (the intervals and
tests themselves: tests/test_stats.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import make_results

from lth_book.claims import (
    NULL_ABOVE,
    NULL_NOT_BEYOND,
    bootstrap_ci,
    null_model,
    null_sr,
    null_status,
    size_trend,
)
from lth_book.stats import mean_ci, proportion_ci, two_sample_test

# -- bootstrap_ci: SR is exact ---------------------------------------------------------------


def test_bootstrap_ci_sr_is_exact_binomial_not_bootstrap():
    # 3 runs, all successful: a bootstrap gives [100, 100]; the exact interval does not
    df = make_results({"lenet5": np.array([[70.0, 71.0], [70.0, 72.0], [70.0, 70.5]])})
    ci = bootstrap_ci(df, n_boot=200)
    row = ci.loc["lenet5"]
    assert row["n_runs"] == 3 and row["n_success"] == 3 and row["sr"] == 100.0
    assert row["sr_lo"] == pytest.approx(29.24, abs=0.01) and row["sr_hi"] == 100.0
    # 0 of 4
    none = make_results({"lenet5": np.array([[70.0, 69.0]] * 4)})
    r0 = bootstrap_ci(none, n_boot=50).loc["lenet5"]
    assert r0["sr_lo"] == 0 and r0["sr_hi"] == pytest.approx(100 * (1 - 0.025 ** 0.25))
    wil = bootstrap_ci(df, n_boot=50, sr_method="wilson").loc["lenet5"]
    assert wil["sr_lo"] == pytest.approx(100 * proportion_ci(3, 3, method="wilson")[0])


def test_bootstrap_ci_t_method_is_wider_than_the_bootstrap_with_five_runs():
    # five successes, the fewest that get an A_gain interval (three used to: `too_few`)
    pts = [0.1, 3.0, 0.2, 0.1, 2.5]
    df = make_results({"lenet5": np.array([[70.0, 70.0 + g] for g in pts])})
    boot = bootstrap_ci(df, n_boot=500).loc["lenet5"]
    t = bootstrap_ci(df, mean_method="t").loc["lenet5"]
    gains = np.array(pts) / 70 * 100
    lo, hi = mean_ci(gains)
    assert lo < 0  # cut at 0: selected on test accuracy, no winner loses accuracy
    assert (t["a_gain_lo"], t["a_gain_hi"]) == pytest.approx((0.0, hi))
    assert (t["lts_lo"], t["lts_hi"]) == pytest.approx((0.0, hi))  # all succeed
    assert boot["a_gain_lo"] >= gains.min() - 1e-9 and boot["a_gain_hi"] <= gains.max() + 1e-9
    assert t["a_gain_lo"] < boot["a_gain_lo"] and t["a_gain_hi"] > boot["a_gain_hi"]
    val = bootstrap_ci(df, mean_method="t", select_on="val").loc["lenet5"]
    assert val["a_gain_lo"] == pytest.approx(lo)  # on validation, a test loss is possible
    with pytest.raises(ValueError):
        bootstrap_ci(df, mean_method="other")


# -- null model ------------------------------------------------------------------------------


def _exchangeable(n_runs: int, k: int, seed: int = 7) -> pd.DataFrame:
    """Every stage's accuracy iid noise: dense and sparse alike."""
    rng = np.random.default_rng(seed)
    return make_results({"lenet5": 70 + rng.normal(0, 0.5, (n_runs, k))})


def test_null_model_default_is_exchangeable_and_reports_both_modes():
    df = _exchangeable(400, 5)
    row = null_model(df, n_sim=4000, seed=0, n_rep=500).loc["lenet5"]
    assert row["mode"] == "exchangeable"
    assert null_sr(5) == 80.0 and null_sr(5, "dense") == pytest.approx(93.75)
    assert row["sr_null"] == row["sr_null_exchangeable"]
    assert row["sr_null_exchangeable"] == pytest.approx(80.0, abs=2)
    assert row["sr_null_dense"] == pytest.approx(93.75, abs=1.5)
    # data made of noise only: measured close to the exchangeable null, not to the dense one
    assert abs(row["sr_measured"] - row["sr_null_exchangeable"]) < 5
    assert row["sr_null_dense"] - row["sr_measured"] > 8
    assert row["a_gain_measured"] == pytest.approx(row["a_gain_null"], rel=0.15)
    assert row["p_sr"] > 0.05 and row["p_a_gain"] > 0.01
    dense = null_model(df, n_sim=4000, seed=0, mode="dense", n_rep=100).loc["lenet5"]
    assert dense["mode"] == "dense" and dense["sr_null"] == dense["sr_null_dense"]
    assert dense["sr_null_dense"] == row["sr_null_dense"]  # same draws, whichever mode leads
    null = null_model(df, n_sim=1000, n_rep=100)
    says, = null_status(null)
    assert says == NULL_NOT_BEYOND and math.isfinite(null.iloc[0]["sr_null_dense"])


def test_null_p_a_gain_is_calibrated_on_noise():
    """On noise-only data, p_a_gain < 0.05 about 5 % of the time (sigma estimated from the
    same few dense runs, which a plug-in null would ignore)."""
    ps = [null_model(_exchangeable(8, 5, seed=100 + i), n_sim=100, n_rep=300).at["lenet5",
                                                                                 "p_a_gain"]
          for i in range(80)]
    assert np.mean(np.array(ps) < 0.05) <= 0.125  # expected 4 of 80; 10 or more: P < 0.01
    assert np.mean(np.array(ps) < 0.5) == pytest.approx(0.5, abs=0.2)


def test_null_p_values():
    rng = np.random.default_rng(1)
    dense = 70 + rng.normal(0, 0.5, (12, 1))
    better = make_results({"lenet5": np.hstack([dense, dense + 3, dense + 2])})  # K = 3
    row = null_model(better, n_sim=2000).loc["lenet5"]
    assert row["n_success"] == 12
    assert row["p_sr"] == pytest.approx((2 / 3) ** 12)  # P(12 of 12 | 1 - 1/K)
    assert row["p_a_gain"] == pytest.approx(1 / 2001)  # no null mean reaches +3 points
    says, = null_status(null_model(better, n_sim=500))
    assert says == NULL_ABOVE


# -- permutation tests -------------------------------------------------------------------------


def test_two_sample_test_exact_small_case():
    out = two_sample_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert out["permutation"] == "exact"  # C(6, 3) = 20 relabellings
    assert out["diff"] == pytest.approx(-3.0) and out["auc"] == 0.0
    assert out["p_mean"] == pytest.approx(2 / 20) and out["p_mannwhitney"] == pytest.approx(2 / 20)
    same = two_sample_test([1.0, 2.0], [1.0, 2.0])
    assert same["p_mean"] == 1.0 and same["auc"] == 0.5
    one = two_sample_test([3.0], [1.0, 2.0, 4.0])  # one value: effect sizes, no p
    assert one["diff"] == pytest.approx(3 - 7 / 3) and one["auc"] == pytest.approx(2 / 3)
    assert np.isnan(one["p_mean"]) and one["permutation"] is None


def test_two_sample_test_monte_carlo_agrees_with_exact():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.5, 1, 6), rng.normal(0, 1, 9)  # C(15, 6) = 5005
    exact = two_sample_test(x, y, n_perm=10_000)
    mc = two_sample_test(x, y, n_perm=4000, seed=1)
    assert exact["permutation"] == "exact" and mc["permutation"] == "monte carlo"
    assert mc["p_mean"] == pytest.approx(exact["p_mean"], abs=0.03)
    assert mc["p_mannwhitney"] == pytest.approx(exact["p_mannwhitney"], abs=0.03)


# -- statements --------------------------------------------------------------------------------


def test_trend_statement():
    rng = np.random.default_rng(0)
    accs, params = {}, {}
    for i in range(4):
        dense = 70 + rng.normal(0, 0.1, (6, 1))
        accs[f"a{i}"] = np.hstack([dense, dense + 4.0 - i])
        params[f"a{i}"] = 1000 * 10**i
    trend = size_trend(make_results(accs), params, n_boot=100)
    # the observed order is 1 of 4! = 24: p = 0.042 < 0.05
    assert trend["rho"] == pytest.approx(-1.0)
    assert trend["p_decreasing"] == pytest.approx(1 / 24) and trend["permutation"] == "exact"
    three = size_trend(make_results({k: accs[k] for k in ("a0", "a1", "a2")}), params,
                       n_boot=100)
    assert three["p_decreasing"] == pytest.approx(1 / 6)  # 3 archs: p = 0.167 at best
    few = size_trend(make_results({k: accs[k] for k in ("a0", "a1")}), params, n_boot=10)
    assert math.isnan(few["rho"]) and few["message"].startswith("need at least 3")
