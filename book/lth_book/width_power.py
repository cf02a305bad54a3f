"""What trend could the width study see? The power of `width.width_trend`'s permutation test
against the paper's own trend (`paper_slope`), by simulating the study (`width_power`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lth_core.models import WIDTH_PARAM_COUNTS

from .paper import PAPER_PARAMS, PAPER_PROTOCOL, paper_table2
from .stats import ALPHA, permutation
from .stats import slope as fit_slope
from .width import MIN_RUNS, MIN_WIDTHS, WIDTHS, _values, per_run


def paper_slope(stat: str = "lts") -> float:
    """The paper's own trend across its seven architectures, per tenfold increase in
    parameters, in our units: LTS as SR × mean Best Sparse A_gain (our definition; the printed
    column adds the std), A_gain as its printed Best Sparse mean, SR in points."""
    t = paper_table2()
    values = {"lts": t["sr"] / 100 * t["best_sparse_a_gain_mean"],
              "a_gain": t["best_sparse_a_gain_mean"], "sr": t["sr"]}
    if stat not in values:
        raise ValueError(f"the paper gives no {stat!r}; choose from {', '.join(values)}")
    x = np.log10(np.array([PAPER_PARAMS[a] for a in t.index], dtype=float))
    return float(fit_slope(x, values[stat].to_numpy(dtype=float)))


def _simulated_power(x: tuple[float, ...], resid: tuple[tuple[float, ...], ...],
                     counts: tuple[int, ...], b: float, alpha: float, n_sim: int, n_perm: int,
                     seed: int) -> float:
    """Share of ``n_sim`` simulated studies in which `width_trend`'s permutation test of the
    slope finds a true slope ``b`` (two-sided p < ``alpha``, the right sign): at width w,
    ``counts[w]`` values drawn from its measured residuals around its mean, plus b x_w."""
    rng = np.random.default_rng(seed)
    xs = np.repeat(np.asarray(x), counts)
    found = 0
    for _ in range(n_sim):
        y = np.concatenate([rng.choice(np.asarray(r), size=c) + b * xw
                            for r, c, xw in zip(resid, counts, x, strict=True)])
        t = permutation((y,), lambda v, axis=-1: fit_slope(xs, v), "pairings", n_perm, rng)
        found += t["p"] < alpha and np.sign(t["statistic"]) == np.sign(b)
    return found / n_sim


_POWER_CACHE: dict[tuple, float] = {}


def _power(*key) -> float:
    """`_simulated_power`, remembered (the chapter, the findings and the README ask alike)."""
    if key not in _POWER_CACHE:
        _POWER_CACHE[key] = _simulated_power(*key)
    return _POWER_CACHE[key]


MAX_RUNS = 1024  # the search for the runs needed stops here (reported as "more than")


def width_power(df: pd.DataFrame, stat: str = "lts", slope: float | None = None,
                min_runs: int = MIN_RUNS, alpha: float = ALPHA, target: float = 0.8,
                runs: int | None = None, select_on: str = "test", n_sim: int = 2000,
                n_sim_search: int = 300, n_perm: int = 199, seed: int = 0) -> dict:
    """Could this study see a trend of ``slope`` per tenfold increase in parameters (default:
    the paper's own, `paper_slope`)? By simulating the permutation test `width_trend`
    reports (`_simulated_power`: each width's measured values around its own mean, resampled,
    plus the trend), ``n_sim`` studies for the power at this design and at the paper's runs,
    ``n_sim_search`` per step of the searches for runs_needed and detectable (their precision
    is that of a few hundred studies), ``n_perm`` shuffles each; a normal
    approximation of the slope's standard error overstates the power of this test with a
    handful of skewed values per width.

    Returns stat, slope, widths, n (values per width), power, detectable (the smallest slope
    found with probability ``target``, to about 5 %) for the stored runs or, given ``runs``,
    for that many complete runs at every width; runs_needed (the same number of complete runs
    at every width that reaches ``target``, inf beyond `MAX_RUNS`; for A_gain, successes in
    each width's measured proportion), power_paper (at the paper's `PAPER_PROTOCOL.runs`
    per width) and n_sim; NaN where fewer than 3 widths have ``min_runs`` complete runs.
    """
    slope = paper_slope(stat) if slope is None else slope
    pr = per_run(df, select_on)
    complete = pr.groupby("arch").size().to_dict() if len(pr) else {}
    v = _values(pr, stat) if len(pr) else pd.DataFrame(columns=["arch", "params", "y"])
    widths = [w for w in WIDTHS if complete.get(w, 0) >= min_runs
              and (v["arch"] == w).sum() >= 2]
    out = {"stat": stat, "slope": slope, "widths": widths, "n": [], "power": math.nan,
           "detectable": math.nan, "runs_needed": math.nan, "power_paper": math.nan,
           "alpha": alpha, "target": target, "n_sim": n_sim}
    if len(widths) < MIN_WIDTHS:
        return out
    x = tuple(float(a) for a in np.log10([WIDTH_PARAM_COUNTS[w] for w in widths]))
    ys = [v.loc[v["arch"] == w, "y"].to_numpy(dtype=float) for w in widths]
    resid = tuple(tuple(float(a) for a in np.round(y - y.mean(), 12)) for y in ys)
    share = np.array([len(y) / complete[w] for y, w in zip(ys, widths, strict=True)])

    def counts(n_runs: int) -> tuple[int, ...]:
        return tuple(max(1, round(n_runs * s)) for s in share)

    now = tuple(len(y) for y in ys) if runs is None else counts(runs)

    def power(n: tuple[int, ...], b: float = slope, sims: int = n_sim_search) -> float:
        return _power(x, resid, n, float(b), alpha, sims, n_perm, seed)

    def first(ok, lo: int, hi: int) -> int:  # smallest integer in (lo, hi] with ok, ok(hi)
        while hi - lo > max(1, lo // 20):
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid, hi)
        return hi

    reach = lambda n_runs: power(counts(n_runs)) >= target  # noqa: E731
    needed, lo = math.inf, 1
    if slope:
        hi = 8
        while hi <= MAX_RUNS and not reach(hi):
            lo, hi = hi, 2 * hi
        needed = first(reach, lo, hi) if hi <= MAX_RUNS else math.inf
    # the smallest slope found with probability target: multiples of 1/20 of a unit slope
    unit = abs(slope) if slope else 1.0
    sign = -1.0 if slope < 0 else 1.0
    seen = lambda k: power(now, sign * unit * k / 20) >= target  # noqa: E731
    lo_k, hi_k = 0, 20
    while hi_k <= 20 * 64 and not seen(hi_k):
        lo_k, hi_k = hi_k, 2 * hi_k
    detectable = unit * first(seen, lo_k, hi_k) / 20 if hi_k <= 20 * 64 else math.inf
    out.update(n=list(now), power=power(now, sims=n_sim), detectable=detectable,
               runs_needed=needed,
               power_paper=power(counts(PAPER_PROTOCOL.runs), sims=n_sim))
    return out
