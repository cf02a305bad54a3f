"""Our own checks of the paper's claims: uncertainty, the size trend, a null model, pruners.

The paper reports SR, A_gain and LTS from one set of runs per architecture, with no
uncertainty, and reads a trend off seven points. These functions say how much of that survives
(`bootstrap_ci`: an exact binomial interval for SR, resampling for A_gain and LTS;
`size_trend`), what pure noise would give (`null_model`), and how LAMP compares with other
pruners (`compare_pruners`); `null_status` applies the null model's rule.
All are deterministic given `seed`; each architecture draws from its own stream (seeded by
seed and its name), so its numbers do not depend on which other architectures are in the
table. Every interval and test goes through `lth_book.stats`
(scipy.stats).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

from lth_core.analysis.metrics import run_summary, table2
from lth_core.models import by_size

from .stats import (
    ALPHA,
    LEVEL,
    MIN_FOR_INTERVAL,
    binom_p,
    bootstrap_distribution,
    mean_ci,
    percentile_ci,
    permutation,
    proportion_ci,
    spearman,
)


def _rng(seed: int, arch: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(arch.encode())])


def _order(archs) -> list[str]:
    """Architectures by parameter count (``lth_core.models.by_size``), each once."""
    return by_size(list(dict.fromkeys(archs)))


def too_few(n_success: int) -> bool:
    """Whether a mean over ``n_success`` successful runs is shown without an interval."""
    return n_success < MIN_FOR_INTERVAL


def _sr_gain_lts(success: np.ndarray, gain: np.ndarray, axis: int = -1) -> np.ndarray:
    """(SR %, mean Best Sparse A_gain over successes, LTS) of runs along ``axis``; A_gain is
    NaN without a success, LTS then 0, as in `metrics.table2`."""
    n_won = success.sum(axis=axis)
    total = (success * gain).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        a_gain = np.where(n_won > 0, total / n_won, np.nan)
    sr = n_won / success.shape[axis] * 100.0
    return np.stack([sr, a_gain, np.where(n_won > 0, a_gain * sr / 100.0, 0.0)])


def _resample(success: np.ndarray, gain: np.ndarray, n_boot: int, rng: np.random.Generator):
    """SR (%), A_gain and LTS of n_boot resamples of runs (`stats.bootstrap_distribution`,
    runs resampled with their success and gain together)."""
    won = np.asarray(success, dtype=float)
    g = np.where(success, np.nan_to_num(gain), 0.0)
    return tuple(bootstrap_distribution((won, g), _sr_gain_lts, n_boot, rng, paired=True))


def _point(success: np.ndarray, gain: np.ndarray) -> tuple[float, float, float]:
    sr = float(success.mean() * 100.0)
    a_gain = float(gain[success].mean()) if success.any() else math.nan
    return sr, a_gain, (a_gain * sr / 100.0 if success.any() else 0.0)


def _runs(summary: pd.DataFrame, arch: str) -> tuple[np.ndarray, np.ndarray]:
    a = summary[summary["arch"] == arch]
    return a["success"].to_numpy(dtype=bool), a["best_sparse_a_gain"].to_numpy(dtype=float)


def bootstrap_ci(
    df: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
    select_on: str = "test",
    sr_method: str = "clopper-pearson",
    mean_method: str = "bootstrap",
) -> pd.DataFrame:
    """Per arch: SR, A_gain (Best Sparse, over successful runs) and LTS with their intervals.

    SR's interval is exact binomial (``sr_method="clopper-pearson"``, or ``"wilson"``): a
    bootstrap of 3 successes in 3 runs only ever draws 100 %, an exact interval says
    [29, 100] %. A_gain and LTS (= mean over runs of success x A_gain) get percentile
    intervals from resampling runs with replacement within each arch (``mean_method=
    "bootstrap"``; A_gain's uses only resamples with a success) or Student-t intervals of their
    means (``"t"``, wider and more honest with a handful of runs, where a bootstrap cannot leave
    the range of the values it resamples; cut at 0 when selecting on test accuracy, where
    neither can be negative).
    A_gain gets no interval (NaN) from fewer than `stats.MIN_FOR_INTERVAL` successes: with 2
    a bootstrap returns their range, which reads as a precise interval (`too_few`).
    Columns: n_runs, n_success, sr, sr_lo, sr_hi, a_gain, a_gain_lo, a_gain_hi, lts, lts_lo,
    lts_hi (SR in percent).
    """
    if mean_method not in ("bootstrap", "t"):
        raise ValueError(f"mean_method must be 'bootstrap' or 't', got {mean_method!r}")
    s = run_summary(df, select_on=select_on)
    rows = {}
    for arch in _order(s["arch"]):
        success, gain = _runs(s, arch)
        k, n = int(success.sum()), len(success)
        row: dict[str, float] = {"n_runs": n, "n_success": k}
        point = dict(zip(("sr", "a_gain", "lts"), _point(success, gain), strict=True))
        if mean_method == "bootstrap":
            boot = _resample(success, gain, n_boot, _rng(seed, arch))
            for name, values in zip(("a_gain", "lts"), boot[1:], strict=True):
                lo, hi = percentile_ci(values, level)
                row.update({f"{name}_lo": lo, f"{name}_hi": hi})
        else:
            for name, values in (("a_gain", gain[success]),
                                 ("lts", np.where(success, np.nan_to_num(gain), 0.0))):
                lo, hi = mean_ci(values, level)
                # selected on test accuracy, a winner's gain is >= 0, so A_gain and LTS are
                row[f"{name}_lo"] = max(0.0, lo) if select_on == "test" else lo
                row[f"{name}_hi"] = hi
        if too_few(k):  # a mean of 1 to 4 gains: no interval worth printing
            row.update(a_gain_lo=math.nan, a_gain_hi=math.nan)
        sr_lo, sr_hi = proportion_ci(k, n, level, sr_method)
        row.update(sr_lo=100.0 * sr_lo, sr_hi=100.0 * sr_hi, **point)
        rows[arch] = row
    cols = ["n_runs", "n_success"] + [f"{m}{e}" for m in ("sr", "a_gain", "lts")
                                      for e in ("", "_lo", "_hi")]
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=cols)
    out.index.name = "arch"
    out[["n_runs", "n_success"]] = out[["n_runs", "n_success"]].astype(int)
    return out


def size_trend(
    df: pd.DataFrame,
    params: dict[str, int],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
    select_on: str = "test",
    n_perm: int = 10_000,
) -> dict:
    """Does LTS fall with model size? Spearman rho between parameter count and LTS over archs.

    - rho_ci: percentile bootstrap CI of rho, resampling runs within each arch.
    - p_value: two-sided permutation p-value of rho over the architecture labels (exact
      enumeration up to 8 archs, else n_perm random permutations; twice the smaller tail,
      `stats.permutation`); p_decreasing is the one-sided one for the paper's claim (rho < 0),
      p_increasing the other tail (a rise with size, the opposite of the claim).
      With n archs the smallest possible two-sided p is 2/n!, e.g. 0.083 for 4 archs: a few
      archs cannot show a trend.
    With fewer than 3 archs every number is NaN and `message` says why.
    """
    s = run_summary(df, select_on=select_on)
    missing = [a for a in s["arch"].unique() if a not in params]
    if missing:
        raise ValueError(f"no parameter count for: {', '.join(missing)}")
    archs = sorted(s["arch"].unique(), key=lambda a: params[a])
    out = {
        "archs": archs,
        "params": [int(params[a]) for a in archs],
        "lts": [_point(*_runs(s, a))[2] for a in archs],
        "n_archs": len(archs),
        "rho": math.nan,
        "rho_ci": (math.nan, math.nan),
        "level": level,
        "p_value": math.nan,
        "p_decreasing": math.nan,
        "p_increasing": math.nan,
        "permutation": None,
        "message": "",
    }
    if len(archs) < 3:
        out["message"] = f"need at least 3 architectures for a rank trend, got {len(archs)}"
        return out
    x = np.array(out["params"], dtype=float)
    lts = np.array(out["lts"])
    rho = spearman(x, lts)
    boot = np.stack([_resample(*_runs(s, a), n_boot, _rng(seed, a))[2] for a in archs], axis=1)
    out["rho_ci"] = percentile_ci(spearman(x, boot), level)
    # every ordering up to 8 architectures (8! = 40320: an exact p), else n_perm random ones
    n = len(archs)
    test = permutation((lts,), lambda y, axis=-1: spearman(x, y), "pairings",
                       math.factorial(n) if n <= 8 else n_perm, seed)
    kind = test["kind"]
    out.update(
        rho=rho,
        p_value=test["p"],
        p_decreasing=test["p_less"],
        p_increasing=test["p_greater"],
        permutation=kind,
        message=f"{len(archs)} architectures, {kind} permutation test",
    )
    return out


_NULL_MODES = ("exchangeable", "dense")


def _null_best(dense_mean: float, sigma: float, stages: int, n_sim: int,
               rng: np.random.Generator, mode: str) -> np.ndarray:
    """Best sparse A_gain (percent) of n_sim simulated runs where pruning does nothing."""
    sparse = dense_mean + sigma * rng.standard_normal((n_sim, stages - 1))
    base = dense_mean
    if mode == "exchangeable":
        base = dense_mean + sigma * rng.standard_normal((n_sim, 1))
    return ((sparse - base) / base * 100.0).max(axis=1)


def null_success(stages: int, mode: str = "exchangeable") -> float:
    """P(success) when pruning does nothing: 1 - 1/K if all K accuracies are exchangeable
    noise, 1 - 2^-(K-1) if the dense one is noise-free."""
    if mode not in _NULL_MODES:
        raise ValueError(f"mode must be 'exchangeable' or 'dense', got {mode!r}")
    return (1 - 1 / stages) if mode == "exchangeable" else (1 - 0.5 ** (stages - 1))


def null_sr(stages: int, mode: str = "exchangeable") -> float:
    """`null_success` in percent, as SR is printed."""
    return 100.0 * null_success(stages, mode)


def _p_a_gain(a_gain: float, sd: float, mu: float, n_runs: int, stages: int, mode: str,
              n_rep: int, rng: np.random.Generator, estimated: bool
               ) -> tuple[float, float]:
    """One-sided p's of a mean Best Sparse A_gain at least ``a_gain`` and at most it (below
    the null: pruning that hurts would show there), from ``n_rep`` whole
    experiments of ``n_runs`` noise-only runs. With sigma ``estimated`` from the same dense
    runs, each experiment's mean gain is divided by its own dense std (the gains scale with
    sigma, so the ratio does not depend on the unknown true sigma), and so is ``a_gain``:
    the estimate's own uncertainty is in the p-value. Undefined (NaN) without spread."""
    if not (np.isfinite(sd) and sd > 0):
        return math.nan, math.nan
    dense = mu + sd * rng.standard_normal((n_rep, n_runs, 1))
    noise = sd * rng.standard_normal((n_rep, n_runs, stages - 1))
    sparse = mu + noise if mode == "exchangeable" else dense + noise
    best = ((sparse - dense) / dense * 100.0).max(axis=2)
    won = best >= 0
    n_won = won.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(won, best, 0.0).sum(axis=1) / n_won
        if estimated:
            mean, a_gain = mean / dense[..., 0].std(axis=1, ddof=1), a_gain / sd
    mean = mean[n_won > 0]
    return (float((1 + (mean >= a_gain).sum()) / (1 + len(mean))),
            float((1 + (mean <= a_gain).sum()) / (1 + len(mean))))


def null_model(
    df: pd.DataFrame, n_sim: int = 2000, seed: int = 0, mode: str = "exchangeable",
    sigma: dict[str, float] | None = None, n_rep: int = 2000,
) -> pd.DataFrame:
    """SR and A_gain if pruning changed nothing and sparse accuracies were only noise.

    Noise: sigma = sample std (ddof=1) of the dense (stage 0) test accuracies across the
    arch's runs, i.e. the run-to-run spread of one trained network's accuracy. Stage count K
    is the largest number of stages any run of the arch has. Both modes are reported:
    - "exchangeable" (default): the dense accuracy is as noisy as the sparse ones, all K
      ~ N(mean, sigma) iid; P(success) = 1 - 1/K, 80 % for K = 5. The fair null, since the
      dense network is one noisy training run like every other stage.
    - "dense": the K-1 sparse accuracies ~ N(mean, sigma) around a noise-free dense accuracy
      (the measured mean); P(success) = 1 - 2^-(K-1), 94 % for K = 5.
    Columns sr_null, a_gain_null, lts_null, p_sr, p_a_gain are those of ``mode``;
    {sr,a_gain,lts}_null_{exchangeable,dense} those of each mode. p_sr: exact one-sided
    binomial p of at least the measured successes at the null's P(success) (`null_sr`);
    p_a_gain: share of n_rep simulated noise-only experiments of as many runs whose mean
    A_gain over successes, relative to their own dense std, is at least the measured one
    relative to sigma (so a sigma estimated from few runs does not make p too small; with
    ``sigma`` given, plain mean gains are compared). p_sr_below and p_a_gain_below are the
    other tails (at most the measured successes; at most the measured mean gain): a search
    that does worse than noise, e.g. pruning that costs accuracy, shows there.
    ``sigma`` overrides the spread per architecture, e.g. with the std of many more dense runs
    than the ticket search has (a handful of runs estimates a spread poorly).
    Selection is on test accuracy, as in the paper; the measured columns use every stored run
    (an unfinished run counts with the stages it has).
    """
    if mode not in _NULL_MODES:
        raise ValueError(f"mode must be 'exchangeable' or 'dense', got {mode!r}")
    s = run_summary(df, select_on="test")
    rows = {}
    for arch in _order(s["arch"]):
        a = df[df["arch"] == arch]
        dense = a.loc[a["stage"] == 0, "test_acc"].to_numpy(dtype=float)
        k = int(a.groupby("run")["stage"].nunique().max())
        sd = float(dense.std(ddof=1)) if len(dense) >= 2 else math.nan
        sd = float((sigma or {}).get(arch, sd))
        mu = float(dense.mean())
        success, gain = _runs(s, arch)
        sr, a_gain, lts = _point(success, gain)
        row = {"n_runs": len(success), "n_success": int(success.sum()), "stages": k,
               "sigma": sd, "dense_mean": mu, "sr_measured": sr, "a_gain_measured": a_gain,
               "lts_measured": lts, "mode": mode, "sr_null": math.nan,
               "a_gain_null": math.nan, "lts_null": math.nan, "p_sr": math.nan,
               "p_a_gain": math.nan, "p_sr_below": math.nan, "p_a_gain_below": math.nan}
        for m in _NULL_MODES:
            row.update({f"{c}_null_{m}": math.nan for c in ("sr", "a_gain", "lts")})
        if k >= 2 and math.isfinite(sd):
            for m in _NULL_MODES:
                best = _null_best(mu, sd, k, n_sim, _rng(seed, arch), m)
                won = best[best >= 0]
                n_sr = float(len(won) / n_sim * 100.0)
                n_gain = float(won.mean()) if len(won) else math.nan
                row.update({f"sr_null_{m}": n_sr, f"a_gain_null_{m}": n_gain,
                            f"lts_null_{m}": n_gain * n_sr / 100.0 if len(won) else 0.0})
                if m != mode:
                    continue
                row.update(sr_null=n_sr, a_gain_null=row[f"a_gain_null_{m}"],
                           lts_null=row[f"lts_null_{m}"],
                           p_sr=binom_p(row["n_success"], row["n_runs"], null_sr(k, m) / 100),
                           p_sr_below=binom_p(row["n_success"], row["n_runs"],
                                              null_sr(k, m) / 100, "less"))
                estimated = arch not in (sigma or {})
                if row["n_success"] and (len(dense) >= 2 or not estimated):
                    row["p_a_gain"], row["p_a_gain_below"] = _p_a_gain(
                        a_gain, sd, mu, len(success), k, m, n_rep, _rng(seed + 1, arch),
                        estimated)
        rows[arch] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "arch"
    return out


NULL_ABOVE = "above the null on both"
NULL_NONE = "no null model"
NULL_NOT_BEYOND = "not beyond what noise alone produces"


def null_status(null: pd.DataFrame, alpha: float = ALPHA) -> pd.Series:
    """Per architecture of a ``null_model`` table: is the measured ticket quality beyond what
    noise alone gives?

    Rule: `NULL_ABOVE` when the one-sided p of SR and of A_gain against the table's null mode
    are both below ``alpha``; "SR below the null", "A_gain below the null" or "SR and A_gain
    below the null" when the other tail's p is below ``alpha`` (without a success, SR alone is
    judged); otherwise `NULL_NOT_BEYOND` (with a few runs, this says the runs cannot tell
    tickets from noise); `NULL_NONE` without a null (needs K >= 2 and 2 dense runs).
    """
    out = {}
    for arch, r in null.iterrows():
        if not math.isfinite(r["sr_null"]):
            out[arch] = NULL_NONE
            continue
        tests = (("SR", "p_sr"),) if not math.isfinite(r["a_gain_measured"]) else \
            (("SR", "p_sr"), ("A_gain", "p_a_gain"))
        below = [what for what, c in tests if r.get(f"{c}_below", math.nan) < alpha]
        beyond = len(tests) == 2 and all(r.get(c, math.nan) < alpha for _, c in tests)
        out[arch] = (NULL_ABOVE if beyond else f"{' and '.join(below)} below the null" if below
                     else NULL_NOT_BEYOND)
    return pd.Series(out, dtype=object)


def compare_pruners(dfs: dict[str, pd.DataFrame], select_on: str = "test") -> pd.DataFrame:
    """Table-2-like summary per (arch, pruner): n_runs, sr, a_gain mean/std (Best Sparse), lts.

    Also dense_test_acc_mean, to show that the pruners started from comparable dense models.
    Rows are ordered by parameter count, then pruner in the order given.
    """
    cols = {"n_runs": "n_runs", "sr": "sr", "best_sparse_a_gain_mean": "a_gain_mean",
            "best_sparse_a_gain_std": "a_gain_std", "lts": "lts",
            "dense_test_acc_mean": "dense_test_acc_mean"}
    parts = []
    for pruner, d in dfs.items():
        t = table2(d, select_on=select_on)[list(cols)].rename(columns=cols)
        parts.append(t.assign(pruner=pruner).reset_index())
    out = pd.concat(parts, ignore_index=True)
    arch_rank = {a: i for i, a in enumerate(_order(out["arch"]))}
    out = out.assign(_a=out["arch"].map(arch_rank), _p=out["pruner"].map(list(dfs).index))
    out = out.sort_values(["_a", "_p"], kind="stable")
    return out.set_index(["arch", "pruner"])[list(cols.values())]
