"""Every interval and test the book prints, as thin calls into `scipy.stats`.

One place for the conventions, so that a reader checks them once:
- a success rate's interval is exact (Clopper-Pearson) or Wilson, from `binomtest`;
- a mean's interval is Student's t; a bootstrap interval is the percentile one, from
  `bootstrap`'s resamples, dropping resamples where the statistic is undefined (an A_gain
  resample without a success);
- permutation tests are `permutation_test`: exact when all relabellings are at most
  ``n_resamples``, else Monte Carlo with p = (1 + hits) / (1 + n_resamples); a two-sided p is
  scipy's, twice the smaller one-sided p (capped at 1), so it equals the sum of both tails
  only where the null distribution is symmetric;
- statistics are rounded to `DIGITS` decimals before they are compared, so that relabellings
  that give the same value in exact arithmetic tie whatever the summation order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as st

DIGITS = 9  # statistics are compared at this many decimals (equal in theory: a tie)
# Fewer successes than this: a mean over successes gets no interval ("too few"); with 2
# values a percentile bootstrap returns their range, with 4 it still cannot leave it.
MIN_FOR_INTERVAL = 5
ALPHA = 0.05  # the level of every test the book reports (its verdicts' rules say which tail)
LEVEL = 0.95  # the confidence level of every interval the book prints
ALTERNATIVES = ("two-sided", "less", "greater")
_METHODS = {"exact": "exact", "clopper-pearson": "exact", "wilson": "wilson"}


def proportion_ci(k: int, n: int, level: float = LEVEL,
                  method: str = "exact") -> tuple[float, float]:
    """Interval of a success rate k/n (fractions), from `scipy.stats.binomtest`.

    ``method``: "exact" (Clopper-Pearson: each tail at most (1 - level)/2, so it covers at
    least ``level`` for every true p; alias "clopper-pearson") or "wilson". n = 0: NaNs.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    ci = st.binomtest(int(k), int(n)).proportion_ci(level, _METHODS[method])
    return float(min(max(ci.low, 0.0), 1.0)), float(min(max(ci.high, 0.0), 1.0))


def binom_p(k: int, n: int, p: float, alternative: str = "greater") -> float:
    """Exact binomial p of k successes in n at success probability p (`binomtest`);
    "greater": P(X >= k), "less": P(X <= k). n = 0: NaN."""
    if n <= 0:
        return math.nan
    return float(st.binomtest(int(k), int(n), p, alternative=alternative).pvalue)


def mean_ci(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of a mean of the finite values (NaN with fewer than 2).

    Honest with a handful of runs, where a percentile bootstrap cannot leave their range.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return math.nan, math.nan
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    lo, hi = st.t.interval(level, len(v) - 1, loc=v.mean(), scale=st.sem(v))
    return float(lo), float(hi)


def spearman(x, y) -> np.ndarray | float:
    """Spearman rank correlation along the last axis (`scipy.stats.spearmanr` on 1-D input,
    vectorised for permutation and bootstrap distributions); NaN where either side is
    constant, since then no order exists to correlate."""
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    if x.ndim == 1:
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            return math.nan
        return float(st.spearmanr(x, y).statistic)
    rx = st.rankdata(x, axis=-1)
    ry = st.rankdata(y, axis=-1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=-1) * (ry**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=-1) / den, np.nan)


def _rounded(statistic: Callable) -> Callable:
    def f(*args, axis=-1):
        return np.round(statistic(*args, axis=axis), DIGITS)
    return f


def permutation(data: tuple, statistic: Callable, permutation_type: str = "independent",
                n_resamples: int = 9999, seed: int | np.random.Generator = 0,
                alternative: str = "two-sided") -> dict:
    """`scipy.stats.permutation_test` of a vectorised ``statistic(*data, axis=-1)``.

    Returns statistic, p (of ``alternative``), p_less and p_greater (both one-sided tails,
    so a test of one direction can say what the other shows), null (the distribution) and
    kind ("exact" when every relabelling was enumerated, else "monte carlo").
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {', '.join(ALTERNATIVES)}")
    f = _rounded(statistic)
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    res = st.permutation_test(data, f, permutation_type=permutation_type, vectorized=True,
                              n_resamples=n_resamples, alternative="less", axis=-1, rng=rng)
    null, obs = res.null_distribution, float(res.statistic)
    exact = _is_exact(data, permutation_type, n_resamples)
    adj = 0 if exact else 1
    gamma = abs(obs) * np.finfo(float).eps * 100  # scipy's own tie tolerance
    p_less = float(res.pvalue)
    p_greater = float(((null >= obs - gamma).sum() + adj) / (len(null) + adj))
    p = {"less": p_less, "greater": p_greater,
         "two-sided": min(1.0, 2 * min(p_less, p_greater))}[alternative]
    return {"statistic": obs, "p": p, "p_less": p_less, "p_greater": p_greater, "null": null,
            "kind": "exact" if exact else "monte carlo"}


def _is_exact(data: tuple, permutation_type: str, n_resamples: float) -> bool:
    """Whether scipy enumerates every relabelling (its own rule: n_resamples >= their count)."""
    sizes = [np.shape(d)[-1] for d in data]
    if permutation_type == "independent":
        n_max, left = 1, sum(sizes)
        for s in sizes:
            n_max *= math.comb(left, s)
            left -= s
    elif permutation_type == "pairings":
        n_max = math.prod(math.factorial(s) for s in sizes)
    else:
        n_max = 2 ** sizes[0]
    return n_resamples >= n_max


def bootstrap_distribution(data: tuple, statistic: Callable, n_resamples: int = 1000,
                           seed: int | np.random.Generator = 0,
                           paired: bool = False) -> np.ndarray:
    """The resampled values of a vectorised ``statistic(*data, axis=-1)`` (`scipy.stats.
    bootstrap`; ``paired``: the samples are columns of one table of runs, resampled
    together). Rows of ``statistic``'s output stay separate (first axis: the statistic)."""
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    if not paired and min(np.shape(d)[-1] for d in data) < 2:
        # scipy refuses a one-value sample; draw as it does (each sample in turn), so the
        # other samples' resamples are the ones it would give
        idx = [rng.integers(0, np.shape(d)[-1], (n_resamples, np.shape(d)[-1])) for d in data]
        return np.asarray(statistic(*(np.asarray(d)[..., i] for d, i in zip(data, idx,
                                                                             strict=True)),
                                    axis=-1), dtype=float)
    with warnings.catch_warnings():  # scipy's own interval is not used: `percentile_ci` is
        warnings.simplefilter("ignore", st.DegenerateDataWarning)
        res = st.bootstrap(data, statistic, n_resamples=n_resamples, vectorized=True,
                           paired=paired, axis=-1, method="percentile", rng=rng)
    return np.asarray(res.bootstrap_distribution, dtype=float)


def percentile_ci(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of a bootstrap distribution, its finite values only (NaN if none)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return math.nan, math.nan
    lo, hi = np.percentile(v, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, level: float = LEVEL,
                      n_boot: int = 4000, seed: int = 0,
                      min_n: int = MIN_FOR_INTERVAL) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean; NaN with fewer than ``min_n`` finite values,
    since then the interval is the values' own range and looks more precise than it is."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < max(2, min_n):
        return math.nan, math.nan
    return percentile_ci(bootstrap_distribution((v,), np.mean, n_boot, seed), level)


def slope(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Least-squares slope of y on x along ``axis`` (x fixed, y possibly relabelled)."""
    xc = np.asarray(x, dtype=float) - np.mean(x)
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    return (y * xc).sum(axis=-1) / (xc**2).sum()


def t_test(values: Sequence[float] | np.ndarray, popmean: float = 0.0) -> float:
    """Two-sided p of a one-sample Student t test of the finite values' mean against
    ``popmean`` (`scipy.stats.ttest_1samp`); NaN with fewer than 2 or no spread."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2 or not np.ptp(v) > 0:
        return math.nan
    return float(st.ttest_1samp(v, popmean).pvalue)


def ks_p(values: Sequence[float] | np.ndarray, cdf: Callable) -> float:
    """Two-sided p of the one-sample Kolmogorov-Smirnov test of ``values`` against ``cdf``
    (`scipy.stats.kstest`); NaN with fewer than 2 values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(st.kstest(v, cdf).pvalue) if len(v) >= 2 else math.nan


def two_sample_test(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                    n_perm: int = 10_000, seed: int = 0) -> dict:
    """Do two samples differ? Permutation tests of the mean difference and of Mann-Whitney U.

    Both p-values are two-sided (`permutation`: twice the smaller tail) and come from
    relabellings of the pooled values: all of them when there are at most ``n_perm`` (exact),
    else ``n_perm`` random ones (Monte Carlo, p = (1 + hits) / (1 + n_perm)).
    auc = U / (n_x n_y) = P(x > y) + P(x = y) / 2. A sample of one value gets no p (NaN).
    Keys: n_x, n_y, diff (mean x - mean y), auc, p_mean, p_mannwhitney, permutation.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n1, n2 = len(x), len(y)
    out = {"n_x": n1, "n_y": n2, "diff": math.nan, "auc": math.nan, "p_mean": math.nan,
           "p_mannwhitney": math.nan, "permutation": None}
    if n1 == 0 or n2 == 0:
        return out

    def diff(a, b, axis=-1):
        return a.mean(axis=axis) - b.mean(axis=axis)

    def u(a, b, axis=-1):  # U of x; the method only sets scipy's own p, unused here
        return st.mannwhitneyu(a, b, axis=axis, method="asymptotic").statistic

    if min(n1, n2) < 2:  # scipy relabels only samples of 2 or more: no p, the effect sizes
        out.update(diff=float(diff(x, y)), auc=float(u(x, y) / (n1 * n2)))
        return out
    mean = permutation((x, y), diff, "independent", n_perm, seed)
    mw = permutation((x, y), u, "independent", n_perm, seed)
    out.update(diff=mean["statistic"], auc=float(mw["statistic"] / (n1 * n2)),
               p_mean=mean["p"], p_mannwhitney=mw["p"], permutation=mean["kind"])
    return out
