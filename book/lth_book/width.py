"""The width study: LeNet-5 at widths 1/8 to 2 (`WIDTHS`), trained and searched alike.

Does ticket search favour small models when size is all that changes? The paper compares seven
architectures that differ in depth, blocks and normalization as much as in size; scaling the
channels and hidden units of one network changes only the parameter count.

Records: ``<results>/width/<name>/`` for every width but 1, ``<results>/lenet5/`` for width 1
(`width_roots`, `load_width`). Only complete runs (all K stages recorded) count: an unfinished
run would pass for a failed search. `width_summary` gives per width SR (exact binomial
interval), Best Sparse A_gain mean ± std (bootstrap interval of the mean), LTS (Student-t
interval of its per-run mean) and TL_gain; `width_trend` tests the trend with size;
`width_null` asks what noise alone gives; `width_power` (its own module) what trend the
study could see; `width_report` puts them in tables, a figure and sentences.
``python -m lth_book.width --runs N`` (or ``make width``) computes missing runs, resumably.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lth_core.analysis.metrics import complete_runs, run_summary, table2
from lth_core.config import RESULTS
from lth_core.models import WIDTH_FAMILY, WIDTH_PARAM_COUNTS
from lth_core.store import RECORD_KEYS, load_results

from .claims import null_model
from .profiles import PROFILES, REPO_ROOT, RESULTS_DIR, ensure_results, get_profile
from .stats import (
    ALPHA,
    LEVEL,
    bootstrap_distribution,
    bootstrap_mean_ci,
    mean_ci,
    percentile_ci,
    permutation,
    proportion_ci,
    spearman,
)
from .stats import slope as fit_slope

# The study's widths, smallest first.
WIDTHS: list[str] = sorted(WIDTH_FAMILY, key=WIDTH_PARAM_COUNTS.get)
# The study's statistics: their names in sentences and axes, and the unit of a change per
# tenfold increase in parameters ("points" of SR, % of A_gain).
STAT_NAMES: dict[str, str] = {
    "sr": "SR", "a_gain": "Best Sparse A_gain", "lts": "LTS", "tl_gain": "Best Sparse TL_gain",
    "a_gain_sigma": "Best Sparse A_gain in units of the width's own dense spread"}
STAT_UNITS: dict[str, str] = {"sr": " points", "a_gain": " %", "lts": "", "tl_gain": " %",
                              "a_gain_sigma": ""}
MIN_RUNS = 3  # complete runs a width needs to count in a trend
MIN_WIDTHS = 3  # widths that count a trend test needs
# The CPU study's target: complete runs per width (the issue's minimum; `make width`'s default).
CPU_RUNS = 8


def _root(results: str | os.PathLike | None) -> Path:
    return RESULTS_DIR if results is None else Path(results)


def width_roots(results: str | os.PathLike | None = None) -> dict[str, Path]:
    """Where each width's records live: ``<results>/lenet5`` for width 1, else
    ``<results>/width/<name>``."""
    root = _root(results)
    return {n: root / "lenet5" if n == "lenet5" else root / "width" / n for n in WIDTHS}


def load_width(results: str | os.PathLike | None = None) -> pd.DataFrame:
    """The width study's per-stage records (default results folder: the repository's), with
    columns width and params added. Empty (with the record columns) when nothing is stored."""
    root = _root(results)
    parts = []
    if (root / "width").is_dir():
        d = load_results(root / "width")
        parts.append(d[d["arch"].isin([n for n in WIDTHS if n != "lenet5"])])
    if (root / "lenet5").is_dir():
        d = load_results(root)
        parts.append(d[d["arch"] == "lenet5"])
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=[*RECORD_KEYS, "width", "params"])
    df = pd.concat(parts, ignore_index=True)
    df["width"] = df["arch"].map(WIDTH_FAMILY)
    df["params"] = df["arch"].map(WIDTH_PARAM_COUNTS)
    return df.sort_values(["params", "run", "stage"], kind="stable").reset_index(drop=True)


def per_run(df: pd.DataFrame, select_on: str = "test") -> pd.DataFrame:
    """One row per complete run: arch, run, params, success, a_gain and tl_gain (Best Sparse,
    NaN without a winner), sr (100 x success), lts (a_gain if success else 0: LTS is the
    mean of this over runs) and a_gain_sigma (a_gain over the width's dense test-accuracy std
    in accuracy points relative to its mean, i.e. the gain in units of run-to-run noise)."""
    cols = ["arch", "run", "params", "success", "a_gain", "tl_gain", "sr", "lts",
            "a_gain_sigma"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    done, _ = complete_runs(df)
    if done.empty:
        return pd.DataFrame(columns=cols)
    s = run_summary(done, select_on=select_on)
    out = pd.DataFrame({
        "arch": s["arch"], "run": s["run"], "params": s["arch"].map(WIDTH_PARAM_COUNTS),
        "success": s["success"].astype(bool), "a_gain": s["best_sparse_a_gain"],
        "tl_gain": s["best_sparse_tl_gain"]})
    out["sr"] = 100.0 * out["success"]
    out["lts"] = np.where(out["success"], out["a_gain"].fillna(0.0), 0.0)
    dense = done[done["stage"] == 0].groupby("arch")["test_acc"]
    noise = 100.0 * dense.std(ddof=1) / dense.mean()  # the spread, in A_gain's units (%)
    out["a_gain_sigma"] = out["a_gain"] / out["arch"].map(noise)
    return out[cols].reset_index(drop=True)


def width_summary(df: pd.DataFrame, level: float = LEVEL, select_on: str = "test",
                  min_runs: int = MIN_RUNS) -> pd.DataFrame:
    """One row per width (all four, smallest first), from complete runs only.

    Columns: width, params, runs (with any record), complete_runs, incomplete_runs,
    n_success, sr with sr_lo/sr_hi (Clopper-Pearson, percent), a_gain_mean/a_gain_std
    (Best Sparse, over successful runs) with a_gain_lo/a_gain_hi (percentile bootstrap of
    its mean, `stats.bootstrap_mean_ci`; NaN from fewer than `stats.MIN_FOR_INTERVAL`
    successes, shown as too few), lts with lts_lo/lts_hi (Student-t interval of the
    mean over runs of success x A_gain, cut at 0 where it cannot be negative: selection on
    test accuracy), tl_gain_mean/tl_gain_std (Best Sparse),
    dense_test_acc_mean/std, status: "ok", "not enough runs" (fewer than ``min_runs``
    complete runs) or "not computed yet" (none).
    """
    pr = per_run(df, select_on)
    done = complete_runs(df)[0] if len(df) else df
    t2 = table2(done, select_on=select_on) if len(done) else pd.DataFrame()
    rows = {}
    for name in WIDTHS:
        runs = int(df.loc[df["arch"] == name, "run"].nunique()) if len(df) else 0
        r = pr[pr["arch"] == name]
        n, k = len(r), int(r["success"].sum())
        lo, hi = proportion_ci(k, n, level)
        row = {"width": WIDTH_FAMILY[name], "params": WIDTH_PARAM_COUNTS[name], "runs": runs,
               "complete_runs": n, "incomplete_runs": runs - n, "n_success": k,
               "sr": 100.0 * k / n if n else math.nan, "sr_lo": 100.0 * lo,
               "sr_hi": 100.0 * hi}
        t = t2.loc[name] if name in t2.index else None
        for col, src in (("a_gain_mean", "best_sparse_a_gain_mean"),
                         ("a_gain_std", "best_sparse_a_gain_std"), ("lts", "lts"),
                         ("tl_gain_mean", "best_sparse_tl_gain_mean"),
                         ("tl_gain_std", "best_sparse_tl_gain_std"),
                         ("dense_test_acc_mean", "dense_test_acc_mean"),
                         ("dense_test_acc_std", "dense_test_acc_std")):
            row[col] = float(t[src]) if t is not None else math.nan
        gains = r.loc[r["success"], "a_gain"].to_numpy(dtype=float)
        row["a_gain_lo"], row["a_gain_hi"] = bootstrap_mean_ci(gains, level)
        lo, hi = mean_ci(r["lts"].to_numpy(dtype=float), level)
        # selected on test accuracy, a winner's gain is >= 0, so LTS is too
        row["lts_lo"], row["lts_hi"] = (max(0.0, lo) if select_on == "test" else lo), hi
        row["status"] = ("not computed yet" if n == 0 else
                         "not enough runs" if n < min_runs else "ok")
        rows[name] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "arch"
    first = ["width", "params", "runs", "complete_runs", "incomplete_runs", "n_success", "sr",
             "sr_lo", "sr_hi", "a_gain_mean", "a_gain_std", "a_gain_lo", "a_gain_hi", "lts",
             "lts_lo", "lts_hi"]
    return out[first + [c for c in out.columns if c not in first]]


def _values(pr: pd.DataFrame, stat: str) -> pd.DataFrame:
    """Per-run values whose mean per width is the statistic (A_gain, TL_gain: successes)."""
    if stat in ("a_gain", "tl_gain", "a_gain_sigma"):
        pr = pr[pr["success"]]
    return pr[["arch", "params", stat]].rename(columns={stat: "y"}).dropna()


def width_trend(
    df: pd.DataFrame,
    stat: str = "lts",
    min_runs: int = MIN_RUNS,
    n_perm: int = 10_000,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = LEVEL,
    alpha: float = ALPHA,
    select_on: str = "test",
) -> dict:
    """Does ``stat`` (sr, a_gain, lts or tl_gain) change with log parameter count?

    Widths with at least ``min_runs`` complete runs take part; the test needs `MIN_WIDTHS`.
    - rho: Spearman correlation of the per-width statistic with log parameter count (over 3
      or 4 widths it can only order them), rho_ci: percentile bootstrap, runs resampled
      within each width.
    - slope: least-squares slope of the per-run values (success x 100 for SR, success x
      A_gain for LTS, the successful runs' gains for A_gain and TL_gain) on log10 parameter
      count, i.e. the change per tenfold increase in size; p_value: two-sided permutation p
      of the slope (`stats.permutation`: twice the smaller tail), runs' values shuffled
      across widths (``n_perm`` times; each tail (1 + hits) / (1 + n_perm)); p_decreasing:
      one-sided, for a fall with size; p_increasing: the other tail, a rise; p_rho: the same
      shuffles' two-sided p of rho.
    - status: "supported" (a fall with two-sided p < ``alpha``), "contradicted" (a rise
      with such a p), "not shown", or "not enough runs" (fewer than `MIN_WIDTHS` widths);
      `width_report.trend_rule` states the rule, `width_report.trend_verdict` the result.
    """
    if stat not in STAT_NAMES:
        raise ValueError(f"stat must be one of {', '.join(STAT_NAMES)}, got {stat!r}")
    pr = per_run(df, select_on)
    complete = pr.groupby("arch").size().to_dict() if len(pr) else {}
    v = _values(pr, stat) if len(pr) else pd.DataFrame(columns=["arch", "params", "y"])
    have = v.groupby("arch").size().to_dict() if len(v) else {}
    widths = [w for w in WIDTHS if complete.get(w, 0) >= min_runs and have.get(w, 0) >= 1]
    out = {"stat": stat, "widths": widths, "params": [WIDTH_PARAM_COUNTS[w] for w in widths],
           "values": [], "n": [have.get(w, 0) for w in widths],
           "left_out": {w: complete.get(w, 0) for w in WIDTHS if w not in widths},
           "rho": math.nan, "rho_ci": (math.nan, math.nan), "slope": math.nan,
           "p_value": math.nan, "p_decreasing": math.nan, "p_increasing": math.nan,
           "p_rho": math.nan,
           "n_perm": n_perm, "level": level, "alpha": alpha, "min_runs": min_runs,
           "n_runs": 0, "status": "not enough runs"}
    if len(widths) < MIN_WIDTHS:
        return out
    v = v[v["arch"].isin(widths)]
    groups = [v.loc[v["arch"] == w, "y"].to_numpy(dtype=float) for w in widths]
    logp = np.log10(np.array(out["params"], dtype=float))
    y = np.concatenate(groups)
    x = np.repeat(logp, [len(g) for g in groups])
    label = np.repeat(np.arange(len(widths)), [len(g) for g in groups])
    onehot = (label[:, None] == np.arange(len(widths))[None, :]) / np.bincount(label)
    values = np.round(y @ onehot, 9)  # equal means must tie, whatever the summation order
    # the same seed gives both tests the same shuffles of runs across widths
    by_slope = permutation((y,), lambda yy, axis=-1: fit_slope(x, yy), "pairings", n_perm, seed)
    rho = spearman(logp, values)
    by_rho = permutation((y,), lambda yy, axis=-1: spearman(logp, np.round(yy @ onehot, 9)),
                         "pairings", n_perm, seed)
    rho_boot = bootstrap_distribution(
        tuple(groups), lambda *g, axis=-1: spearman(logp, np.round(np.stack(
            [v.mean(axis=axis) for v in g], axis=-1), 9)), n_boot, seed + 1)
    out.update(
        values=[float(a) for a in values], rho=float(rho), slope=by_slope["statistic"],
        rho_ci=percentile_ci(rho_boot, level),
        p_value=by_slope["p"], p_decreasing=by_slope["p_less"],
        p_increasing=by_slope["p_greater"],
        p_rho=by_rho["p"] if math.isfinite(rho) else math.nan)
    b, p = out["slope"], out["p_value"]
    out["n_runs"] = len(y)
    out["status"] = ("supported" if p < alpha and b < 0 else
                     "contradicted" if p < alpha and b > 0 else "not shown")
    return out


def study(results_dir: str | os.PathLike = RESULTS, stored_results: str | os.PathLike =
          RESULTS, level: float = LEVEL, min_runs: int = MIN_RUNS, profile: str = "quick",
          data: str | None = None, device: str = "auto"
          ) -> tuple[pd.DataFrame, pd.DataFrame, Path, Path | None]:
    """The chapter's data: (records, per-width summary, folder read, folder it fell back from).

    First computes what ``profile`` asks of the study (`ensure_width`: the paper profile's 50
    runs per width; nothing for quick and smoke). Relative paths are from the repository.
    When ``results_dir`` holds no width records (a smoke build's folder), ``stored_results``
    is read instead and named as the fallback.
    """
    def absolute(p: str | os.PathLike) -> Path:
        return Path(p) if Path(p).is_absolute() else REPO_ROOT / p

    ensure_width(profile, absolute(results_dir), data=data, device=device)

    def has_width(root: Path) -> bool:
        return any(any(r.glob("run-*/stage-*.json"))
                   for n, r in width_roots(root).items() if n != "lenet5")

    root, fallback = absolute(results_dir), None
    if not has_width(root) and absolute(stored_results) != root:
        fallback, root = root, absolute(stored_results)
    df = load_width(root)
    return df, width_summary(df, level=level, min_runs=min_runs), root, fallback


def width_null(df: pd.DataFrame, n_sim: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Per width (complete runs only): what pure run-to-run noise at that width's own dense
    spread gives (`claims.null_model`, both modes; the exchangeable one by default), beside the
    measured SR and A_gain, with their one-sided p-values."""
    done = complete_runs(df)[0] if len(df) else df
    varied = [w for w in WIDTHS if (done["arch"] == w).any() and
              done.loc[(done["arch"] == w) & (done["stage"] == 0), "test_acc"].std() > 0]
    if not varied:
        return pd.DataFrame()
    null = null_model(done[done["arch"].isin(varied)], n_sim=n_sim, seed=seed)
    null["params"] = null.index.map(WIDTH_PARAM_COUNTS)
    null["noise_pct"] = 100.0 * null["sigma"] / null["dense_mean"]
    return null.loc[[w for w in WIDTHS if w in null.index]]


def ensure_width(profile: str = "quick", results: str | os.PathLike | None = None,
                 runs: int | None = None, widths: list[str] | None = None,
                 data: str | None = None, device: str = "auto",
                 workers: int | None = None, progress: bool = False) -> None:
    """Compute (resumably) whatever the study lacks: ``runs`` complete runs (default: the
    profile's ``width_runs``; 0 computes nothing) of each width, in `width_roots` (read them
    with `load_width`). Stored runs are reused, never retrained."""
    prof = get_profile(profile)
    runs = prof.width_runs if runs is None else runs
    roots = width_roots(results)
    for name in widths or WIDTHS:
        if name not in roots:
            raise ValueError(f"{name!r} is not a width of the study; choose from "
                             f"{', '.join(WIDTHS)}")
        if runs > 0:
            ensure_results(prof, results=roots[name].parent, data=data, archs=[name],
                           runs=runs, device=device, workers=workers, progress=progress)


def main(argv: list[str] | None = None) -> int:
    """``python -m lth_book.width``: compute the width study's missing runs."""
    parser = argparse.ArgumentParser(prog="python -m lth_book.width",
                                     description="Compute (resumably) the width study.")
    parser.add_argument("--runs", type=int, default=CPU_RUNS, help="complete runs per width")
    parser.add_argument("--width", action="append", dest="widths", metavar="NAME",
                        help=f"one width (repeatable; default all: {', '.join(WIDTHS)})")
    parser.add_argument("--profile", default="quick", choices=list(PROFILES),
                        help="recipe and data of this book profile")
    parser.add_argument("--results", default=None, help="results folder (default: results/)")
    parser.add_argument("--data", default=None, help="data spec (default: the profile's)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--workers", type=int, default=None, help="CPU processes")
    args = parser.parse_args(argv)
    if args.runs < 1:  # one line, exit 2, as every bad input
        print("error: --runs must be >= 1", file=sys.stderr)
        return 2
    try:
        ensure_width(args.profile, args.results, args.runs, args.widths, args.data,
                     args.device, args.workers, progress=sys.stderr.isatty())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
