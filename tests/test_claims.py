"""Bootstrap CIs, the size trend, the noise-only null model and the pruner comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import make_results

from lth_book.claims import (
    NULL_ABOVE,
    bootstrap_ci,
    compare_pruners,
    null_model,
    null_status,
    size_trend,
)
from lth_book.stats import spearman
from lth_core.analysis.metrics import table2


@pytest.fixture(scope="module")
def two_archs() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return make_results({
        "lenet5": 70 + rng.normal(0, 1, (10, 3)),
        "resnet18": 93 + rng.normal(0, 0.3, (10, 3)),
    })


def test_bootstrap_ci_points_match_table2(two_archs):
    ci = bootstrap_ci(two_archs, n_boot=500, seed=0)
    t = table2(two_archs)
    assert list(ci.index) == ["lenet5", "resnet18"]
    for name, col in [("sr", "sr"), ("a_gain", "best_sparse_a_gain_mean"), ("lts", "lts")]:
        np.testing.assert_allclose(ci[name], t.loc[ci.index, col])
    assert (ci["n_runs"] == 10).all()


def _binom_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_bootstrap_ci_matches_reference_intervals():
    """Intervals checked against what they must be. SR, 12 of 30: exact binomial bounds, by
    their definition. A_gain when all 40 runs win: a percentile bootstrap of a mean, so about
    mean +- 1.96 x std(ddof=0)/sqrt(n) (resampling error ~2 % of that), and the Student-t
    interval with mean_method="t"; LTS = A_gain in every resample then."""
    rng = np.random.default_rng(5)
    dense = np.full((40, 1), 50.0)
    delta = rng.normal(1.0, 0.25, (40, 1))  # all > 0: every run wins; A_gain = 2 x delta %
    mixed = np.hstack([dense[:30], dense[:30] + np.r_[np.ones(12), -np.ones(18)][:, None]])
    df = make_results({"all": np.hstack([dense, dense + delta]), "mixed": mixed})
    ci = bootstrap_ci(df, n_boot=4000, seed=0)

    m = ci.loc["mixed"]
    assert (m["n_success"], m["sr"]) == (12, 40.0)
    assert 1 - _binom_cdf(11, 30, m["sr_lo"] / 100) == pytest.approx(0.025, abs=1e-6)
    assert _binom_cdf(12, 30, m["sr_hi"] / 100) == pytest.approx(0.025, abs=1e-6)

    a, gains = ci.loc["all"], 2 * delta.ravel()
    assert a["sr_lo"] == pytest.approx(100 * 0.025 ** (1 / 40)) and a["sr_hi"] == 100
    half = 1.96 * gains.std() / math.sqrt(40)
    assert a["a_gain"] == pytest.approx(gains.mean())
    assert a["a_gain_lo"] == pytest.approx(gains.mean() - half, abs=0.1 * half)
    assert a["a_gain_hi"] == pytest.approx(gains.mean() + half, abs=0.1 * half)
    assert (a["lts_lo"], a["lts_hi"]) == pytest.approx((a["a_gain_lo"], a["a_gain_hi"]), rel=1e-12)
    t = bootstrap_ci(df, mean_method="t").loc["all"]
    half_t = 2.022691 * gains.std(ddof=1) / math.sqrt(40)  # t quantile 0.975, 39 df
    assert (t["a_gain_lo"], t["a_gain_hi"]) == pytest.approx(
        (gains.mean() - half_t, gains.mean() + half_t), rel=1e-5)


def test_bootstrap_ci_is_deterministic(two_archs):
    a = bootstrap_ci(two_archs, n_boot=300, seed=3)
    pd.testing.assert_frame_equal(a, bootstrap_ci(two_archs, n_boot=300, seed=3))
    assert not a.equals(bootstrap_ci(two_archs, n_boot=300, seed=4))
    # An arch's CI does not depend on the other archs in the table.
    alone = bootstrap_ci(two_archs[two_archs["arch"] == "resnet18"], n_boot=300, seed=3)
    pd.testing.assert_frame_equal(alone, a.loc[["resnet18"]])


def test_spearman_matches_ranks_and_handles_ties():
    x, y = np.array([1, 2, 2, 3, 5.0]), np.array([4, 1, 1, 0, 2.0])
    ref = np.corrcoef(pd.Series(x).rank(), pd.Series(y).rank())[0, 1]
    assert spearman(x, y) == pytest.approx(ref)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [1, 1, 1]))
    np.testing.assert_allclose(spearman(np.array([[1, 2, 3]] * 2), [[1, 2, 3], [3, 2, 1]]),
                               [1.0, -1.0])


def _monotone(n_archs: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every run succeeds; bigger archs gain less, so LTS falls strictly with size."""
    rng = np.random.default_rng(0)
    accs, params = {}, {}
    for i in range(n_archs):
        gain = 4.0 - i  # stage-1 gain in accuracy points
        dense = 70 + rng.normal(0, 0.1, (6, 1))
        accs[f"a{i}"] = np.hstack([dense, dense + gain + rng.normal(0, 0.05, (6, 1))])
        params[f"a{i}"] = 1000 * 10**i
    return make_results(accs), params


def test_size_trend_monotone_and_exact_permutation_p():
    df, params = _monotone(4)
    out = size_trend(df, params, n_boot=200, seed=0)
    assert out["archs"] == ["a0", "a1", "a2", "a3"]
    assert out["rho"] == pytest.approx(-1.0)
    assert out["rho_ci"] == pytest.approx((-1.0, -1.0))
    assert out["permutation"] == "exact"
    assert out["p_decreasing"] == pytest.approx(1 / 24)  # only the observed order of 4! = 24
    assert out["p_value"] == pytest.approx(2 / 24)  # and its mirror image
    assert out == size_trend(df, params, n_boot=200, seed=0)


def test_size_trend_needs_three_archs_and_all_params():
    df, params = _monotone(2)
    out = size_trend(df, params, n_boot=50)
    assert math.isnan(out["rho"]) and math.isnan(out["p_value"])
    assert "at least 3" in out["message"]
    with pytest.raises(ValueError, match="a1"):
        size_trend(df, {"a0": 1})


def test_null_model_matches_noise_only_data():
    rng = np.random.default_rng(7)
    dense = 70 + rng.normal(0, 0.5, (300, 1))
    df = make_results({"lenet5": np.hstack([dense, dense + rng.normal(0, 0.5, (300, 4))])})
    out = null_model(df, n_sim=4000, seed=0, mode="dense")  # sparse = dense + noise here
    row = out.loc["lenet5"]
    assert row["stages"] == 5 and row["n_runs"] == 300
    assert row["sigma"] == pytest.approx(dense.std(ddof=1))
    assert row["sr_null"] == pytest.approx(100 * (1 - 0.5**4), abs=1.5)
    assert abs(row["sr_null"] - row["sr_measured"]) < 5
    assert row["a_gain_null"] == pytest.approx(row["a_gain_measured"], rel=0.15)
    pd.testing.assert_frame_equal(out, null_model(df, n_sim=4000, seed=0, mode="dense"))
    exch = null_model(df, n_sim=4000, seed=0, mode="exchangeable").loc["lenet5"]
    assert exch["sr_null"] == pytest.approx(80.0, abs=2.5)  # 1 - 1/K


def test_null_model_takes_the_spread_from_elsewhere():
    rng = np.random.default_rng(3)
    dense = 70 + rng.normal(0, 0.5, (20, 1))
    df = make_results({"lenet5": np.hstack([dense, dense + rng.normal(0, 0.5, (20, 4))])})
    narrow = null_model(df, n_sim=2000, seed=0).loc["lenet5"]
    wide = null_model(df, n_sim=2000, seed=0, sigma={"lenet5": 2.0}).loc["lenet5"]
    assert wide["sigma"] == 2.0 and wide["sr_measured"] == narrow["sr_measured"]
    # a wider spread lets noise alone produce larger "gains" over the same dense mean
    assert wide["a_gain_null"] > 3 * narrow["a_gain_null"]
    wide_says, = null_status(null_model(df, n_sim=500, sigma={"lenet5": 2.0}))
    # gains far smaller than a spread of 2 would give: the other tail says so
    assert wide_says == "A_gain below the null"
    better = make_results({"lenet5": np.hstack([dense, dense + 3])})  # every stage +3 points
    says, = null_status(null_model(better, n_sim=500))
    assert says == NULL_ABOVE


def test_null_model_rejects_unknown_mode():
    with pytest.raises(ValueError):
        null_model(make_results({"x": np.ones((2, 2))}), mode="other")


def test_compare_pruners(two_archs):
    worse = two_archs.copy()
    worse.loc[worse["stage"] > 0, "test_acc"] -= 5
    worse["val_acc"] = worse["test_acc"]
    out = compare_pruners({"lamp": two_archs, "random": worse})
    assert list(out.index) == [("lenet5", "lamp"), ("lenet5", "random"),
                               ("resnet18", "lamp"), ("resnet18", "random")]
    assert list(out.columns) == ["n_runs", "sr", "a_gain_mean", "a_gain_std", "lts",
                                 "dense_test_acc_mean"]
    assert out.loc[("lenet5", "lamp"), "lts"] == pytest.approx(table2(two_archs).at["lenet5",
                                                                                    "lts"])
    assert (out.xs("random", level="pruner")["sr"] == 0).all()
