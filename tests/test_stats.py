"""lth_book.stats against known values: exact and Wilson intervals (R's binom.test), binomial
tails, Student-t intervals, Spearman, permutation tests (exact, Monte Carlo, the two-sided
convention) and the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lth_book.stats import (
    MIN_FOR_INTERVAL,
    binom_p,
    bootstrap_distribution,
    bootstrap_mean_ci,
    mean_ci,
    percentile_ci,
    permutation,
    proportion_ci,
    slope,
    spearman,
)


def test_exact_interval_known_values():
    lo, hi = proportion_ci(3, 3)
    assert lo == pytest.approx(0.025 ** (1 / 3), abs=1e-9) and hi == 1.0  # 29.24 %
    assert proportion_ci(3, 3, level=0.99)[0] == pytest.approx(0.005 ** (1 / 3), abs=1e-9)
    for n in (1, 5, 10, 50):
        assert proportion_ci(0, n) == pytest.approx((0.0, 1 - 0.025 ** (1 / n)), abs=1e-9)
        assert proportion_ci(n, n) == pytest.approx((0.025 ** (1 / n), 1.0), abs=1e-9)
    # R: binom.test(1, 10)$conf.int, binom.test(5, 10)$conf.int
    assert proportion_ci(1, 10) == pytest.approx((0.002528579, 0.4450161), abs=1e-7)
    assert proportion_ci(5, 10) == pytest.approx((0.1870860, 0.8129140), abs=1e-7)
    assert proportion_ci(5, 10, method="clopper-pearson") == proportion_ci(5, 10)
    assert all(math.isnan(v) for v in proportion_ci(0, 0))
    with pytest.raises(ValueError):
        proportion_ci(4, 3)
    with pytest.raises(ValueError):
        proportion_ci(1, 2, method="bootstrap")


@pytest.mark.parametrize("k, n", [(1, 4), (5, 7), (36, 53), (17, 20)])
def test_exact_interval_bounds_cut_tails_of_alpha_over_2(k, n):
    lo, hi = proportion_ci(k, n)
    assert binom_p(k, n, lo, "greater") == pytest.approx(0.025, abs=1e-9)
    assert binom_p(k, n, hi, "less") == pytest.approx(0.025, abs=1e-9)


def test_wilson_known_values():
    z2 = 1.959963984540054**2
    assert proportion_ci(0, 10, method="wilson") == pytest.approx((0.0, z2 / (10 + z2)),
                                                                  abs=1e-9)
    assert proportion_ci(5, 10, method="wilson") == pytest.approx((0.2365931, 0.7634069),
                                                                  abs=1e-6)
    lo, hi = proportion_ci(3, 3, method="wilson")
    assert hi == 1.0 and lo == pytest.approx(0.4385030, abs=1e-6)


@pytest.mark.parametrize("n", [1, 3, 10, 57])
@pytest.mark.parametrize("p", [0.05, 0.5, 0.8])
def test_binom_p_matches_direct_sums(n, p):
    for k in range(n + 1):
        upper = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))
        lower = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(0, k + 1))
        assert binom_p(k, n, p) == pytest.approx(upper, abs=1e-12)
        assert binom_p(k, n, p, "less") == pytest.approx(lower, abs=1e-12)


def test_mean_ci_is_student_t():
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2) = 4.302653
    assert mean_ci([1.0, 2.0, 3.0]) == pytest.approx((2 - half, 2 + half))
    assert mean_ci([1.0, 2.0, 3.0, np.nan]) == pytest.approx((2 - half, 2 + half))
    assert all(math.isnan(v) for v in mean_ci([1.0]))
    assert mean_ci([2.0, 2.0]) == (2.0, 2.0)


def test_spearman_vectorised_equals_scipy_and_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, (20, 6)).astype(float)  # many ties
    x = np.arange(6.0)
    ok = np.ptp(y, axis=1) > 0
    want = [spearmanr(x, row).statistic for row in y[ok]]
    np.testing.assert_allclose(spearman(x, y)[ok], want)
    assert np.isnan(spearman(x, y)[~ok]).all()
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [1, 1, 1]))


def _diff(a, b, axis=-1):
    return a.mean(axis=axis) - b.mean(axis=axis)


def test_permutation_exact_counts_every_relabelling():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    out = permutation((x, y), _diff, "independent", 10_000)
    assert out["kind"] == "exact" and len(out["null"]) == 20  # C(6, 3)
    assert out["statistic"] == pytest.approx(-3.0)
    assert out["p_less"] == pytest.approx(1 / 20) and out["p_greater"] == 1.0
    assert out["p"] == pytest.approx(2 / 20)


def test_permutation_two_sided_is_twice_the_smaller_tail():
    """scipy's convention: on an asymmetric null, twice the smaller tail is not the share of
    relabellings at least as far from 0 as the observed one."""
    x, y = np.array([0.0, 0.0, 10.0]), np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    out = permutation((x, y), _diff, "independent", 10_000)
    null = np.round(out["null"], 9)
    obs = round(out["statistic"], 9)
    abs_share = float(np.mean(np.abs(null) >= abs(obs)))
    assert out["p"] == pytest.approx(min(1.0, 2 * min(out["p_less"], out["p_greater"])))
    assert out["p_greater"] == pytest.approx(float(np.mean(null >= obs)))
    assert out["p"] != pytest.approx(abs_share)


def test_permutation_pairings_exact_and_monte_carlo():
    x = np.arange(5.0)
    y = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    exact = permutation((y,), lambda v, axis=-1: spearman(x, v), "pairings", 120)
    assert exact["kind"] == "exact" and exact["p_less"] == pytest.approx(1 / 120)
    # Monte Carlo: each tail (1 + hits) / (1 + n)
    mc = permutation((y,), lambda v, axis=-1: spearman(x, v), "pairings", 99, seed=1)
    assert mc["kind"] == "monte carlo" and mc["p_less"] >= 1 / 100
    rng = np.random.default_rng(3)
    z = rng.normal(size=12)
    a = permutation((z,), lambda v, axis=-1: slope(np.arange(12.0), v), "pairings", 2000, 5)
    b = permutation((z,), lambda v, axis=-1: slope(np.arange(12.0), v), "pairings", 2000, 5)
    assert a["p"] == b["p"]  # same seed, same relabellings
    with pytest.raises(ValueError):
        permutation((z,), _diff, alternative="both")


def test_bootstrap_is_runs_resampled_with_replacement():
    v = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    dist = bootstrap_distribution((v,), np.mean, 500, seed=4)
    idx = np.random.default_rng(4).integers(0, 5, (500, 5))
    np.testing.assert_allclose(dist, v[idx].mean(axis=1))
    assert bootstrap_mean_ci(v, n_boot=500, seed=4) == pytest.approx(percentile_ci(dist))
    assert percentile_ci(np.array([np.nan, 1.0, 2.0, 3.0])) == pytest.approx((1.05, 2.95))


def test_bootstrap_mean_ci_too_few_values_is_no_interval():
    """From 2 values a percentile bootstrap returns their range, which looks precise: fewer
    than MIN_FOR_INTERVAL give none."""
    assert MIN_FOR_INTERVAL == 5
    two = np.array([0.48, 0.52])
    assert all(math.isnan(v) for v in bootstrap_mean_ci(two))
    four = np.array([0.1, 0.5, 0.2, 0.9])
    assert all(math.isnan(v) for v in bootstrap_mean_ci(four))
    lo, hi = bootstrap_mean_ci(np.append(four, 0.3))
    assert 0.1 <= lo < hi <= 0.9
    assert bootstrap_mean_ci(two, min_n=2) == pytest.approx((0.48, 0.52), abs=0.002)


def test_slope_is_least_squares():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.vstack([2 * x + 1, -x, np.ones(4)])
    np.testing.assert_allclose(slope(x, y), [2.0, -1.0, 0.0], atol=1e-12)
    assert slope(x, np.polyval([0.7, 3.0], x)) == pytest.approx(np.polyfit(x, 0.7 * x + 3, 1)[0])


def test_bootstrap_of_several_samples_draws_each_in_turn():
    """Samples resampled independently, in order, from one generator; a one-value sample
    (which scipy refuses) is drawn the same way, so the others' resamples do not change."""
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0])

    def means(*g, axis=-1):
        return np.stack([v.mean(axis=axis) for v in g], axis=-1).sum(axis=-1)

    dist = bootstrap_distribution((a, b), means, 300, seed=2)
    rng = np.random.default_rng(2)
    i, j = rng.integers(0, 3, (300, 3)), rng.integers(0, 2, (300, 2))
    np.testing.assert_allclose(dist, a[i].mean(axis=1) + b[j].mean(axis=1))
    one = bootstrap_distribution((a, np.array([5.0])), means, 300, seed=2)
    np.testing.assert_allclose(one, a[i].mean(axis=1) + 5.0)
