"""Stage sets: the per-stage test accuracies of every stored search, what pruning itself
does to them, and noise models of them checked out of sample.

- **The sets** (`stored_sets`, `stage_set`): one search's runs with the same K stages.
- **What pruning itself does** (`stage_effects`): per stage k the paired difference
  acc_k - acc_0 over runs, an estimand no selection of the best stage inflates, with its
  Student-t interval; the within-run correlation of the K stage accuracies
  (`stage_correlation`); the trend of the mean effect with size across the width family
  (`effect_trend`, with the power of that design by simulating its own permutation test).
- **A noise model checked on our runs** (`simulate`): stage accuracies drawn jointly, as a
  multivariate normal with the measured means and covariance ("normal"), the same with
  median/MAD spreads and Spearman-based correlations ("robust", for the outlying runs of the
  H200 set), or by resampling the runs' own stage vectors ("empirical"); each has a pure
  null (every stage centred on the dense one). `out_of_sample` checks each on random halves
  of a set: fitted on one half, it predicts the other half's SR and A_gain.

Every test and interval goes through `lth_book.stats` (scipy.stats); `noise` judges the sets
and the paper's numbers against the null.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from lth_core.models import PARAM_COUNTS, WIDTH_FAMILY, WIDTH_PARAM_COUNTS
from lth_core.store import find_searches, load_results

from . import stats as bstats
from .formats import frac
from .formats import name as display_name
from .paper import PAPER_PARAMS, paper_table2
from .profiles import REPO_ROOT, RESULTS_DIR
from .sources import is_synthetic
from .stats import ALPHA, LEVEL

MIN_RUNS = 3  # a set needs this many runs with the same stages to be shown
KINDS = ("normal", "robust", "empirical")


# -- the sets: every stored search with runs enough ------------------------------------------

@dataclass(frozen=True)
class StageSet:
    """One search's runs with the same K stages: ``acc[run, stage]`` test accuracies (%)."""

    label: str  # its folder under the results root, e.g. "width/lenet5-w0.25"
    arch: str
    params: int | None
    pruner: str
    runs: np.ndarray  # run numbers, one per row of acc
    acc: np.ndarray  # (n_runs, K) test accuracy, stage 0 the dense one
    density: np.ndarray  # (K,) weights kept per stage
    left_out: int  # runs with fewer than K stages

    @property
    def k(self) -> int:
        return self.acc.shape[1]

    @property
    def n(self) -> int:
        return self.acc.shape[0]


def stage_set(df: pd.DataFrame, label: str, min_runs: int = MIN_RUNS) -> StageSet | None:
    """The runs of one architecture's records as a `StageSet`: K is the most stages at
    least ``min_runs`` runs all have (stages 0..K-1; a run with fewer is left out, so an
    unfinished run never passes for a failed one); None when no K >= 2 has them."""
    wide = df.pivot_table(index="run", columns="stage", values="test_acc", aggfunc="first")
    held = wide.notna().cumprod(axis=1).sum(axis=1)  # leading stages each run has
    ks = [k for k in range(2, int(held.max()) + 1 if len(held) else 0)
          if (held >= k).sum() >= min_runs]
    if not ks:
        return None
    k = max(ks)
    keep = held[held >= k].index
    acc = wide.loc[keep, list(range(k))].to_numpy(dtype=float)
    dens = df.groupby("stage")["density"].median().reindex(range(k)).to_numpy(dtype=float)
    arch = str(df["arch"].iloc[0])
    params = {**PARAM_COUNTS, **WIDTH_PARAM_COUNTS}.get(arch)
    pruner = str(df["pruner"].iloc[0]) if "pruner" in df.columns else "lamp"
    return StageSet(label, arch, params, pruner, np.asarray(keep), acc, dens,
                    int((held < k).sum()))


def stored_sets(root: str | os.PathLike | None = None, min_runs: int = MIN_RUNS,
                real_only: bool = True) -> list[StageSet]:
    """Every search under ``root`` (default: the repository's results/; a relative path is
    from the repository) with ``min_runs`` runs of at least 2 common stages, on real data
    unless ``real_only`` is False; sorted by pruner, then size."""
    root = RESULTS_DIR if root is None else REPO_ROOT / root
    out = []
    for store, arch in find_searches(root) if root.is_dir() else []:
        df = load_results(store.root)
        df = df[df["arch"] == arch]
        if df.empty or (real_only and is_synthetic(df["data_name"].iloc[0])):
            continue
        label = str((store.root / arch).relative_to(root))
        s = stage_set(df, label, min_runs)
        if s is not None:
            out.append(s)
    return sorted(out, key=lambda s: (s.pruner != "lamp", s.pruner, s.params or 0, s.label))


def set_name(s: StageSet) -> str:
    """A reader's name for a set: the width or architecture, the pruner and the machine."""
    if s.arch in WIDTH_FAMILY and WIDTH_FAMILY[s.arch] != 1:
        base = f"{display_name('lenet5')} width {frac(WIDTH_FAMILY[s.arch])}"
    else:
        base = display_name(s.arch)
    extra = [p for p in Path(s.label).parts[:-1] if p not in ("width",)]
    return base + (f" ({', '.join(extra)})" if extra else "")


# -- 1. what pruning itself does --------------------------------------------------------------

def _t_ci(d: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """(lo, hi, two-sided p) of the mean of ``d`` against 0, Student t."""
    if len(d) < 2 or not np.std(d) > 0:
        return math.nan, math.nan, math.nan
    lo, hi = bstats.mean_ci(d, level)
    return lo, hi, bstats.t_test(d, 0.0)


def stage_effects(s: StageSet, level: float = LEVEL) -> pd.DataFrame:
    """Per pruned stage k: the paired difference acc_k - acc_0 over runs (points and % of the
    dense mean) with its Student-t interval and two-sided p, and the stage's own spread.

    Columns: stage, density, n, diff, lo, hi, p, diff_pct, lo_pct, hi_pct, sd (this stage's
    accuracy spread across runs, ddof=1), sd_dense."""
    dense = s.acc[:, 0]
    mu = float(dense.mean())
    rows = []
    for k in range(1, s.k):
        d = s.acc[:, k] - dense
        lo, hi, p = _t_ci(d, level)
        rows.append({"set": s.label, "stage": k, "density": float(s.density[k]), "n": s.n,
                     "diff": float(d.mean()), "lo": lo, "hi": hi, "p": p,
                     "diff_pct": 100 * float(d.mean()) / mu, "lo_pct": 100 * lo / mu,
                     "hi_pct": 100 * hi / mu, "sd": float(s.acc[:, k].std(ddof=1)),
                     "sd_dense": float(dense.std(ddof=1))})
    return pd.DataFrame(rows)


def stage_correlation(s: StageSet) -> pd.DataFrame:
    """The K x K correlation matrix of the stage accuracies across runs (Pearson)."""
    c = np.corrcoef(s.acc, rowvar=False)
    return pd.DataFrame(c, index=range(s.k), columns=range(s.k))


def _mean_offdiag(acc: np.ndarray) -> float:
    c = np.corrcoef(acc, rowvar=False)
    k = c.shape[0]
    return float((c.sum() - np.trace(c)) / (k * (k - 1)))


def mean_correlation(s: StageSet, level: float = LEVEL, n_boot: int = 2000,
                     seed: int = 0) -> dict:
    """The mean off-diagonal within-run correlation of the stage accuracies, with a
    percentile bootstrap interval over runs (`stats.bootstrap_distribution`)."""
    r = _mean_offdiag(s.acc)
    if s.n < 4:
        return {"rho": r, "lo": math.nan, "hi": math.nan}
    lo, hi = bstats.percentile_ci(_run_bootstrap(s, _mean_offdiag, n_boot, seed), level)
    return {"rho": r, "lo": lo, "hi": hi}


def _run_bootstrap(s: StageSet, f, n_boot: int, seed: int) -> np.ndarray:
    """``f(acc)`` of ``n_boot`` resamples of the set's runs (`stats.bootstrap_distribution`
    over run indices, so each resample keeps a run's stages together)."""
    def statistic(i: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = i.astype(int)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = [f(s.acc[row]) for row in idx.reshape(-1, idx.shape[-1])]
        return np.reshape(out, idx.shape[:-1])

    return bstats.bootstrap_distribution((np.arange(s.n, dtype=float),), statistic, n_boot,
                                         seed)


def pooled_correlation(sets: list[StageSet]) -> float:
    """The within-run correlation over several sets: the mean of Fisher's z of each set's mean
    off-diagonal correlation, weighted by runs - 3, transformed back."""
    z, w = [], []
    for s in sets:
        if s.n > 3:
            z.append(np.arctanh(np.clip(_mean_offdiag(s.acc), -0.999, 0.999)))
            w.append(s.n - 3)
    return float(np.tanh(np.average(z, weights=w))) if z else math.nan


def per_run_effect(s: StageSet) -> np.ndarray:
    """Each run's mean over its pruned stages of acc_k - acc_0, in % of the set's dense mean:
    the selection-free gain of one search."""
    return 100 * (s.acc[:, 1:].mean(axis=1) - s.acc[:, 0]) / s.acc[:, 0].mean()


def effect_trend(sets: list[StageSet], n_perm: int = 9999, n_power: int = 200,
                 power_perm: int = 499, slope_alt: float | None = None,
                 seed: int = 0) -> dict:
    """Claim (a) without selection: the slope of `per_run_effect` on log10 parameters across
    the given sets (per tenfold), its two-sided permutation p (runs' effects shuffled across
    sizes; `stats.permutation`), and the power of this design against ``slope_alt``
    (default: the paper's Best Sparse A_gain trend across its seven architectures) by
    simulating the same permutation test on studies of the same runs and spreads.

    Also the rank form, robust to a run that collapsed: Spearman's rho of the runs' effects
    with size and its permutation p (``rho``, ``p_rank``).

    Returns slope, p, rho, p_rank, n_sets, n_runs, slope_alt, power (NaN with fewer than 3
    sizes)."""
    sets = [s for s in sets if s.params]
    out = {"slope": math.nan, "p": math.nan, "rho": math.nan, "p_rank": math.nan,
           "n_sets": len(sets),
           "n_runs": sum(s.n for s in sets), "slope_alt": math.nan, "power": math.nan}
    if len({s.params for s in sets}) < 3:
        return out
    x = np.concatenate([np.full(s.n, math.log10(s.params)) for s in sets])
    y = np.concatenate([per_run_effect(s) for s in sets])
    rng = np.random.default_rng(seed)
    # the runs' effects relabelled against fixed sizes (one sample, "pairings")
    res = bstats.permutation((y,), lambda b, axis=-1: bstats.slope(x, b, axis), "pairings",
                             n_perm, rng)
    ranked = bstats.permutation((y,), lambda b, axis=-1: bstats.spearman(x, b), "pairings",
                                n_perm, rng)
    alt = paper_gain_slope() if slope_alt is None else slope_alt
    # simulated studies: each set's runs around a line of slope ``alt``, its own spread
    sd = np.concatenate([np.full(s.n, per_run_effect(s).std(ddof=1)) for s in sets])
    hits = 0
    for _ in range(n_power):
        ysim = alt * (x - x.mean()) + sd * rng.standard_normal(len(x))
        r = bstats.permutation((ysim,), lambda b, axis=-1: bstats.slope(x, b, axis),
                               "pairings", power_perm, rng)
        hits += r["p"] < ALPHA and np.sign(r["statistic"]) == np.sign(alt)
    out.update(slope=res["statistic"], p=res["p"], rho=ranked["statistic"],
               p_rank=ranked["p"], slope_alt=alt,
               power=hits / n_power)
    return out


def paper_gain_slope() -> float:
    """The paper's Best Sparse A_gain (printed means) per tenfold increase in parameters,
    least squares across its seven architectures."""
    t = paper_table2()
    x = np.log10(np.array([PAPER_PARAMS[a] for a in t.index], dtype=float))
    return float(bstats.slope(x, t["best_sparse_a_gain_mean"].to_numpy(dtype=float)))


# -- 2. a noise model ---------------------------------------------------------------------------

def search_outcomes(acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(success, Best Sparse A_gain %) of runs ``acc[..., run, stage]``: the best pruned
    stage against the dense one, as `metrics.run_summary` selects on test accuracy; the gain
    is NaN where a run has no winning stage."""
    dense, best = acc[..., 0], acc[..., 1:].max(axis=-1)
    won = best >= dense
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(won, (best - dense) / dense * 100, np.nan)
    return won, gain


def _batched_cov(x: np.ndarray) -> np.ndarray:
    """Sample covariance (ddof=1) of each ``x[i]`` (runs x stages)."""
    xc = x - x.mean(axis=1, keepdims=True)
    return np.einsum("irk,irl->ikl", xc, xc) / (x.shape[1] - 1)


def _draw_normal(mean: np.ndarray, cov: np.ndarray, n_runs: int,
                 rng: np.random.Generator) -> np.ndarray:
    """(n_sim, n_runs, K) normal draws, one mean and covariance per simulated search."""
    w, v = np.linalg.eigh((cov + np.swapaxes(cov, 1, 2)) / 2)
    root = v * np.sqrt(np.clip(w, 0, None))[:, None, :]
    z = rng.standard_normal((len(mean), n_runs, mean.shape[-1]))
    return mean[:, None, :] + np.einsum("irk,ilk->irl", z, root)


def simulate(acc: np.ndarray, kind: str, n_runs: int, n_sim: int,
             rng: np.random.Generator, null: bool = False) -> np.ndarray:
    """(n_sim, n_runs, K) stage accuracies of searches like those of ``acc`` (runs x K).

    ``kind``: "normal" (multivariate normal, the measured means and covariance), "robust"
    (medians, 1.4826 x MAD spreads and the Pearson correlations 2 sin(pi r_s / 6) implied by
    Spearman's: outlying runs weigh little) or "empirical" (whole runs resampled). Each
    simulated search first resamples the runs it is fitted on, so the prediction carries
    the uncertainty of the fit as well as the noise of new runs. ``null``: pruning does
    nothing, every stage centred on the dense stage (by mean, or median for "robust").
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    n = len(acc)
    boot = acc[rng.integers(0, n, (n_sim, n))]  # (n_sim, n, K)
    center = np.median(boot, axis=1) if kind == "robust" else boot.mean(axis=1)
    if null:
        boot = boot + (center[:, :1] - center)[:, None, :]
        center = np.repeat(center[:, :1], acc.shape[1], axis=1)
    if kind == "empirical":
        return boot[np.arange(n_sim)[:, None], rng.integers(0, n, (n_sim, n_runs))]
    if kind == "normal":
        return _draw_normal(center, _batched_cov(boot), n_runs, rng)
    sd = stats.median_abs_deviation(boot, axis=1, scale="normal")
    ranks = stats.rankdata(boot, axis=1)
    rc = _batched_cov(ranks)
    d = np.sqrt(np.clip(np.einsum("ikk->ik", rc), 1e-12, None))
    rs = rc / d[:, :, None] / d[:, None, :]
    corr = 2 * np.sin(np.pi * rs / 6)
    return _draw_normal(center, corr * sd[:, :, None] * sd[:, None, :], n_runs, rng)


def predict(acc: np.ndarray, kind: str, n_runs: int, null: bool = False,
            n_sim: int = 4000, seed: int = 0) -> dict:
    """What a model fitted on ``acc`` predicts for a search of ``n_runs`` runs: SR (%) and
    the mean Best Sparse A_gain (%) over successes, each as mean and central ``LEVEL``
    interval over ``n_sim`` simulated searches (`simulate`)."""
    won, gain = search_outcomes(simulate(acc, kind, n_runs, n_sim,
                                         np.random.default_rng(seed), null))
    sr = 100 * won.mean(axis=1)
    with warnings.catch_warnings():  # a search without any success: its mean is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        a = np.nanmean(gain, axis=1)
    a = a[np.isfinite(a)]
    q = [(1 - LEVEL) / 2, (1 + LEVEL) / 2]
    return {"sr": float(sr.mean()), "sr_lo": float(np.quantile(sr, q[0])),
            "sr_hi": float(np.quantile(sr, q[1])), "sr_sim": sr,
            "a_gain": float(a.mean()) if len(a) else math.nan,
            "a_gain_lo": float(np.quantile(a, q[0])) if len(a) else math.nan,
            "a_gain_hi": float(np.quantile(a, q[1])) if len(a) else math.nan, "a_gain_sim": a}


COVERAGE = 0.85  # a model passes when held-out halves fall in its interval this often
MIN_CHECK_RUNS = 8  # fewer runs: halves too small to check a model on


def out_of_sample(s: StageSet, kinds: tuple[str, ...] = KINDS, n_splits: int = 40,
                  n_sim: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each model kind checked out of sample: fitted on a random half of the runs, it
    predicts SR and the mean Best Sparse A_gain of a search of the other half's size
    (`predict`), and the other half's measured values are placed in that prediction.

    Per kind, over ``n_splits`` random halvings: the mean predicted and measured SR and
    A_gain, the share of splits whose measurement lies in the predicted ``LEVEL`` interval
    (``sr_cover``, ``a_gain_cover``; a calibrated model gives about ``LEVEL``) and the mean
    predictive percentile of the measurement (``sr_pit``, ``a_gain_pit``; about 0.5).
    ``calibrated``: both coverages at least `COVERAGE`. Empty below `MIN_CHECK_RUNS` runs.
    (Leaving one run out would not test the empirical model: a held-out run's rank among the
    others is uniform by construction.)
    """
    if s.n < MIN_CHECK_RUNS:
        return pd.DataFrame()
    rng = np.random.default_rng(seed)
    half = s.n // 2
    splits = [rng.permutation(s.n) for _ in range(n_splits)]
    rows = []
    for kind in kinds:
        got = []
        for j, order in enumerate(splits):
            fit, held = s.acc[order[half:]], s.acc[order[:half]]
            p = predict(fit, kind, len(held), n_sim=n_sim, seed=seed + j)
            w, g = search_outcomes(held)
            sr = 100 * w.mean()
            row = {"sr_pred": p["sr"], "sr": sr, "sr_in": p["sr_lo"] <= sr <= p["sr_hi"],
                   "sr_pit": (p["sr_sim"] < sr).mean() + 0.5 * (p["sr_sim"] == sr).mean()}
            if w.any() and len(p["a_gain_sim"]):
                a = float(np.nanmean(g))
                row.update(a_pred=p["a_gain"], a=a,
                           a_in=p["a_gain_lo"] <= a <= p["a_gain_hi"],
                           a_pit=(p["a_gain_sim"] < a).mean())
            got.append(row)
        g = pd.DataFrame(got)
        has_a = "a_in" in g
        a_cover = float(g["a_in"].dropna().astype(bool).mean()) if has_a else math.nan
        rows.append({"set": s.label, "kind": kind, "n": s.n, "half": half,
                     "splits": n_splits, "sr_pred": g["sr_pred"].mean(), "sr": g["sr"].mean(),
                     "sr_cover": float(g["sr_in"].mean()), "sr_pit": g["sr_pit"].mean(),
                     "a_gain_pred": g["a_pred"].mean() if has_a else math.nan,
                     "a_gain": g["a"].mean() if has_a else math.nan,
                     "a_gain_cover": a_cover,
                     "a_gain_pit": g["a_pit"].mean() if has_a else math.nan,
                     "calibrated": bool(g["sr_in"].mean() >= COVERAGE
                                        and not a_cover < COVERAGE)})
    return pd.DataFrame(rows)


def mode_support(s: StageSet, level: float = LEVEL, seed: int = 0) -> dict:
    """Which of the book's two null modes a set supports. "exchangeable" (all K accuracies
    i.i.d.) needs the within-run correlation's interval to hold 0 and the dense spread to be
    like the pruned ones (the bootstrap interval of sd_dense / mean pruned sd holds 1);
    "noise-free dense" needs that ratio's interval to hold 0; otherwise "neither".
    Returns rho (with lo, hi), ratio (with lo, hi) and mode."""
    corr = mean_correlation(s, level, seed=seed)

    ratio = lambda a: float(a[:, 0].std(ddof=1) / a[:, 1:].std(axis=0, ddof=1).mean())
    r = ratio(s.acc)
    lo = hi = math.nan
    if s.n >= 4:
        lo, hi = bstats.percentile_ci(_run_bootstrap(s, ratio, 2000, seed), level)
    mode = "neither"
    if corr["lo"] <= 0 <= corr["hi"] and lo <= 1 <= hi:
        mode = "exchangeable"
    elif lo <= 0:
        mode = "noise-free dense"
    return {"set": s.label, "rho": corr["rho"], "rho_lo": corr["lo"], "rho_hi": corr["hi"],
            "ratio": r, "ratio_lo": lo, "ratio_hi": hi, "mode": mode}
