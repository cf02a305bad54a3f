"""The width study: LeNet-5 at widths 1/8 to 2 (`WIDTHS`), trained and searched alike.

Does ticket search favour small models when size is all that changes? The paper compares seven
architectures that differ in depth, blocks and normalization as much as in size; scaling the
channels and hidden units of one network changes only the parameter count.

Records: ``<results>/width/<name>/`` for every width but 1, ``<results>/lenet5/`` for width 1
(`width_roots`, `load_width`). Only complete runs (all K stages recorded) count: an unfinished
run would pass for a failed search. `width_summary` gives per width SR (exact binomial
interval), Best Sparse A_gain mean ± std (bootstrap interval of the mean), LTS (Student-t
interval of its per-run mean) and TL_gain; `width_trend` tests the trend with size;
`width_null` and `noise_statement` ask whether noise alone explains it; `fig_width` draws it.
``python -m lth_book.width --runs N`` (or ``make width``) computes missing runs, resumably.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lth_core.analysis.metrics import complete_runs, run_summary, table2
from lth_core.models import WIDTH_FAMILY, WIDTH_PARAM_COUNTS
from lth_core.store import RECORD_KEYS, load_results

from .claims import sr_statement, too_few
from .profiles import REPO_ROOT
from .stats import (
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
STATS: dict[str, str] = {"sr": "SR (%)", "a_gain": "Best Sparse A_gain (%)", "lts": "LTS",
                         "tl_gain": "Best Sparse TL_gain (%)",
                         "a_gain_sigma": "Best Sparse A_gain / dense std"}
_NAMES = {"sr": "SR", "a_gain": "Best Sparse A_gain", "lts": "LTS",
          "tl_gain": "Best Sparse TL_gain",
          "a_gain_sigma": "Best Sparse A_gain in units of the width's own dense spread"}
MIN_RUNS = 3
# The CPU study's target: complete runs per width (the issue's minimum; `make width`'s default).
CPU_RUNS = 8
_UNITS = {"lts": "", "sr": " points", "a_gain": " %", "a_gain_sigma": ""}


def _root(results: str | os.PathLike | None) -> Path:
    return REPO_ROOT / "results" if results is None else Path(results)


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


def _setup(g: pd.DataFrame) -> list[tuple[str, str]]:
    """The distinct (config, data checksum) pairs of some records, config without the fields
    that may differ between runs of one study (stages asked for, CUDA graphs)."""
    out = []
    for cfg, data in g[["config", "data_checksum"]].drop_duplicates().itertuples(index=False):
        c = json.loads(cfg) if isinstance(cfg, str) else {}
        c.pop("stages", None)
        c.get("train", {}).pop("cuda_graphs", None)
        out.append((json.dumps(c, sort_keys=True), str(data)))
    return sorted(set(out))


def _diff(a: dict, b: dict, prefix: str = "") -> str:
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                return _diff(a[k], b[k], f"{prefix}{k}.")
            return f"{prefix}{k}: {b.get(k)!r} instead of {a.get(k)!r}"
    return ""


def setup_notes(df: pd.DataFrame) -> list[str]:
    """Sentences naming every width whose records depart from the study's setup (the recipe
    and data of most records), and the hardware when it differs between widths; empty when
    all widths share one setup and machine type."""
    if df.empty or "config" not in df.columns:
        return []
    setups = {a: _setup(g) for a, g in df.groupby("arch", sort=False)}
    counts: dict[tuple[str, str], int] = {}
    for a, g in df.groupby("arch", sort=False):
        for s in setups[a]:
            counts[s] = counts.get(s, 0) + len(g)
    ref = max(counts, key=counts.get)
    notes = []
    for a in [w for w in WIDTHS if w in setups]:
        for cfg, data in setups[a]:
            if (cfg, data) == ref:
                continue
            why = "other data" if data != ref[1] else _diff(json.loads(ref[0]), json.loads(cfg))
            notes.append(f"{a}: records of another setup than the rest of the study ({why}).")
    if "device" in df.columns:
        hw = {a: "; ".join(sorted(g["device"].astype(str).unique()))
              for a, g in df.groupby("arch", sort=False)}
        if len(set(hw.values())) > 1:
            notes.append("Hardware differs between widths (" + "; ".join(
                f"{a}: {hw[a]}" for a in WIDTHS if a in hw) + "): same recipe and data, but "
                "CPUs may round differently, so single runs are not bit-identical across them.")
    return notes


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


def width_summary(df: pd.DataFrame, level: float = 0.95, select_on: str = "test",
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


def width_statements(summary: pd.DataFrame, level: float = 0.95) -> list[str]:
    """One plain sentence per width of a `width_summary` table."""
    out = []
    for name, r in summary.iterrows():
        head = f"Width {_frac(r['width'])} ({name}, {int(r['params']):,} parameters): "
        if r["complete_runs"] == 0:
            extra = (f" ({int(r['incomplete_runs'])} run(s) in progress)"
                     if r["incomplete_runs"] else "")
            out.append(head + f"not computed yet{extra}.")
            continue
        text = head + sr_statement(int(r["n_success"]), int(r["complete_runs"]), level)
        if r["n_success"]:
            std = "" if math.isnan(r["a_gain_std"]) else f" ± {r['a_gain_std']:.2f}"
            boot = (f" (mean's {100 * level:.0f} % bootstrap interval {r['a_gain_lo']:.2f} to "
                    f"{r['a_gain_hi']:.2f})" if math.isfinite(r["a_gain_lo"]) else
                    " (too few successes for an interval of the mean)"
                    if too_few(int(r["n_success"])) else "")
            text += (f" Best Sparse A_gain {r['a_gain_mean']:.2f}{std} %{boot}, "
                     f"LTS {r['lts']:.2f}"
                     + (f" ({100 * level:.0f} % CI {r['lts_lo']:.2f} to {r['lts_hi']:.2f})"
                        if math.isfinite(r["lts_lo"]) else "") + ".")
        if r["status"] == "not enough runs":
            text += " Not enough runs to count in the trend."
        out.append(text)
    return out


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
    level: float = 0.95,
    alpha: float = 0.05,
    select_on: str = "test",
) -> dict:
    """Does ``stat`` (sr, a_gain, lts or tl_gain) change with log parameter count?

    Widths with at least ``min_runs`` complete runs take part; the test needs 3 of them.
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
    - status and verdict, by the rule in ``rule``.
    """
    if stat not in STATS:
        raise ValueError(f"stat must be one of {', '.join(STATS)}, got {stat!r}")
    pr = per_run(df, select_on)
    complete = pr.groupby("arch").size().to_dict() if len(pr) else {}
    v = _values(pr, stat) if len(pr) else pd.DataFrame(columns=["arch", "params", "y"])
    have = v.groupby("arch").size().to_dict() if len(v) else {}
    widths = [w for w in WIDTHS if complete.get(w, 0) >= min_runs and have.get(w, 0) >= 1]
    rule = (f"A width counts when it has at least {min_runs} complete runs, the test when at "
            f"least 3 widths count. \"Smaller models benefit more\" is supported when the "
            f"per-run {_NAMES[stat]} falls with log parameter count with a two-sided "
            f"permutation p below {alpha:g}, contradicted when it rises with such a p, and "
            "not shown otherwise.")
    out = {"stat": stat, "widths": widths, "params": [WIDTH_PARAM_COUNTS[w] for w in widths],
           "values": [], "n": [have.get(w, 0) for w in widths],
           "left_out": {w: complete.get(w, 0) for w in WIDTHS if w not in widths},
           "rho": math.nan, "rho_ci": (math.nan, math.nan), "slope": math.nan,
           "p_value": math.nan, "p_decreasing": math.nan, "p_increasing": math.nan,
           "p_rho": math.nan,
           "n_perm": n_perm, "level": level, "alpha": alpha, "rule": rule,
           "status": "not enough runs", "verdict": ""}
    left = ", ".join(f"{w} ({c} complete)" for w, c in out["left_out"].items())
    if len(widths) < 3:
        out["verdict"] = (f"Not enough runs: the trend of {_NAMES[stat]} needs at least 3 widths "
                          f"with {min_runs} or more complete runs; "
                          + (f"only {' and '.join(widths)} {'has' if len(widths) == 1 else 'have'}"
                             " them" if widths else "none has them")
                          + (f" (short: {left})." if left else "."))
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
    slope_ = out["slope"]
    p = out["p_value"]
    if p < alpha and slope_ < 0:
        status, head = "supported", f"Supported: {_NAMES[stat]} falls with model size"
    elif p < alpha and slope_ > 0:
        status, head = "contradicted", f"Contradicted: {_NAMES[stat]} rises with model size"
    else:
        status = "not shown"
        head = (f"Not shown: {_NAMES[stat]} does not change with size beyond run-to-run noise")
    rho_txt = "undefined (no order)" if not math.isfinite(rho) else f"{rho:.2f}"
    out["status"] = status
    out["verdict"] = (
        f"{head} ({slope_:+.3g} per tenfold increase in parameters, two-sided permutation "
        f"p = {p:.3g} over {len(y)} runs of {len(widths)} widths; Spearman rho of the "
        f"per-width values with log size {rho_txt})."
        + (f" Left out, fewer than {min_runs} complete runs: {left}." if left else ""))
    return out


def paper_slope(stat: str = "lts") -> float:
    """The paper's own trend across its seven architectures, per tenfold increase in
    parameters, in our units: LTS as SR × mean Best Sparse A_gain (our definition; the printed
    column adds the std), A_gain as its printed Best Sparse mean, SR in points."""
    from .paper import PAPER_PARAMS, paper_table2

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
                min_runs: int = MIN_RUNS, alpha: float = 0.05, target: float = 0.8,
                runs: int | None = None, select_on: str = "test", n_sim: int = 2000,
                n_sim_search: int = 300, n_perm: int = 199, seed: int = 0) -> dict:
    """Could this study see a trend of ``slope`` per tenfold increase in parameters (default:
    the paper's own, `paper_slope`)? By simulating the permutation test `width_trend`
    reports (`_simulated_power`: each width's measured values around its own mean, resampled,
    plus the trend), ``n_sim`` studies for the power at this design and at 50 runs,
    ``n_sim_search`` per step of the searches for runs_needed and detectable (their precision
    is that of a few hundred studies), ``n_perm`` shuffles each; a normal
    approximation of the slope's standard error overstates the power of this test with a
    handful of skewed values per width.

    Returns stat, slope, widths, n (values per width), power, detectable (the smallest slope
    found with probability ``target``, to about 5 %) for the stored runs or, given ``runs``,
    for that many complete runs at every width; runs_needed (the same number of complete runs
    at every width that reaches ``target``, inf beyond `MAX_RUNS`; for A_gain, successes in
    each width's measured proportion), power_50 (at the paper's 50 runs per width) and
    n_sim; NaN where fewer than 3 widths have ``min_runs`` complete runs.
    """
    slope = paper_slope(stat) if slope is None else slope
    pr = per_run(df, select_on)
    complete = pr.groupby("arch").size().to_dict() if len(pr) else {}
    v = _values(pr, stat) if len(pr) else pd.DataFrame(columns=["arch", "params", "y"])
    widths = [w for w in WIDTHS if complete.get(w, 0) >= min_runs
              and (v["arch"] == w).sum() >= 2]
    out = {"stat": stat, "slope": slope, "widths": widths, "n": [], "power": math.nan,
           "detectable": math.nan, "runs_needed": math.nan, "power_50": math.nan,
           "alpha": alpha, "target": target, "n_sim": n_sim}
    if len(widths) < 3:
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
               runs_needed=needed, power_50=power(counts(50), sims=n_sim))
    return out


def runs_needed_text(power: dict) -> str:
    """"about 148", or "more than 1,024" where the search for the runs needed stopped."""
    n = power["runs_needed"]
    return f"more than {MAX_RUNS:,}" if n == math.inf else f"about {n:,}"


def power_statement(power: dict) -> str:
    """The power of the study against the paper's own trend, in sentences."""
    if not math.isfinite(power["power"]):
        return ("Too few widths with complete runs to say what trend this study could see.")
    pct = lambda p: f"{100 * p:.0f} %"
    what = {"lts": "LTS (SR × mean Best Sparse A_gain, as we compute it)",
            "a_gain": "Best Sparse A_gain", "sr": "SR"}[power["stat"]]
    unit = _UNITS.get(power["stat"], "")
    b, d = power["slope"], power["detectable"]
    small = (f"is {d:.2f}{unit} per tenfold, {d / abs(b):.1f} times the paper's"
             if math.isfinite(d) else "is more than 64 times the paper's")
    return (f"Across its seven architectures, the paper's {what} changes by {b:+.2f}{unit} per "
            f"tenfold increase in parameters. At our widths' own run-to-run spread and "
            f"{'/'.join(map(str, power['n']))} "
            f"{'successful ' if power['stat'] in ('a_gain', 'tl_gain') else ''}runs, a trend "
            f"that size would be found "
            f"(two-sided permutation p < {power['alpha']:g}, in {power['n_sim']} simulated "
            f"studies) with probability "
            f"{pct(power['power'])}; the smallest trend found with probability "
            f"{pct(power['target'])} {small}. Finding the paper's trend with probability "
            f"{pct(power['target'])} "
            f"would take {runs_needed_text(power)} complete runs per width "
            f"(at the paper's 50: {pct(power['power_50'])}).")


def _tick(name: str) -> str:
    p = WIDTH_PARAM_COUNTS[name]
    return f"{p / 1000:.1f}K\n×{WIDTH_FAMILY[name]:g}"


def fig_width(summary: pd.DataFrame, stats: tuple[str, ...] = ("sr", "a_gain", "lts"),
              paper_lenet5: dict[str, float] | None = None,
              paper_slopes: dict[str, float] | None = None) -> Figure:
    """Each statistic against parameter count (log x), one panel each, with error bars:
    SR's exact binomial interval, A_gain and TL_gain ± std, LTS's t interval. Hollow points:
    widths with too few complete runs to count; widths with none are left out. ``paper_lenet5``
    ({stat: value}) marks the paper's LeNet-5 row at 61K for reference; ``paper_slopes``
    ({stat: change per tenfold}, `paper_slope`) draws the paper's trend through our width 1."""
    fig = Figure(figsize=(3.3 * len(stats), 3.0), layout="constrained")
    axes = fig.subplots(1, len(stats), squeeze=False).ravel()
    shown = summary[summary["complete_runs"] > 0]
    for ax, stat in zip(axes, stats, strict=True):
        ax.set_xscale("log")
        ax.set_xticks([WIDTH_PARAM_COUNTS[w] for w in WIDTHS], [_tick(w) for w in WIDTHS])
        ax.minorticks_off()
        ax.set_xlim(WIDTH_PARAM_COUNTS[WIDTHS[0]] / 1.6, WIDTH_PARAM_COUNTS[WIDTHS[-1]] * 1.6)
        ax.set_xlabel("parameters (width)")
        ax.set_ylabel(STATS[stat])
        if shown.empty:
            ax.text(0.5, 0.5, "not computed yet", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
            continue
        col = {"sr": "sr", "a_gain": "a_gain_mean", "lts": "lts",
               "tl_gain": "tl_gain_mean"}[stat]
        x, yv = shown["params"].to_numpy(float), shown[col].to_numpy(float)
        if stat in ("sr", "lts"):
            err = np.vstack([yv - shown[f"{stat}_lo"].to_numpy(float),
                             shown[f"{stat}_hi"].to_numpy(float) - yv])
        else:
            err = shown[f"{stat}_std"].to_numpy(float)
        err = np.nan_to_num(err)
        ax.plot(x, yv, color="C0", lw=0.8, alpha=0.6)
        ok = (shown["status"] == "ok").to_numpy()
        for mask, face in ((ok, "C0"), (~ok, "white")):
            if mask.any():
                e = err[:, mask] if err.ndim == 2 else err[mask]
                ax.errorbar(x[mask], yv[mask], yerr=e, fmt="o", color="C0",
                            markerfacecolor=face, capsize=3)
        for xi, yi, n in zip(x, yv, shown["complete_runs"], strict=True):
            if math.isfinite(yi):
                ax.annotate(f"n={n}", (xi, yi), textcoords="offset points", xytext=(5, 5),
                            fontsize=7, color="0.3")
        if paper_slopes and stat in paper_slopes and "lenet5" in shown.index:
            x1, y1 = WIDTH_PARAM_COUNTS["lenet5"], float(shown.loc["lenet5", col])
            xs = np.array(ax.get_xlim())
            ax.plot(xs, y1 + paper_slopes[stat] * np.log10(xs / x1), ls="--", color="0.5",
                    lw=1, label="paper's trend, through width 1")
        if paper_lenet5 and stat in paper_lenet5:
            ax.plot([61_000], [paper_lenet5[stat]], marker="s", color="0.5", ls="none",
                    label="paper, LeNet-5")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


def study(results_dir: str | os.PathLike = "results", stored_results: str | os.PathLike =
          "results", level: float = 0.95, min_runs: int = MIN_RUNS, profile: str = "quick",
          data: str | None = None, device: str = "auto"
          ) -> tuple[pd.DataFrame, pd.DataFrame, Path, Path | None]:
    """The chapter's data: (records, per-width summary, folder read, folder it fell back from).

    First computes what ``profile`` asks of the study (`ensure_width`: the paper profile's 50
    runs per width; nothing for quick and smoke). Relative paths are from the repository.
    When ``results_dir`` holds no width records (a smoke build's folder), ``stored_results``
    is read instead and named as the fallback.
    """
    from .profiles import REPO_ROOT

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
    from .claims import null_model

    done = complete_runs(df)[0] if len(df) else df
    varied = [w for w in WIDTHS if (done["arch"] == w).any() and
              done.loc[(done["arch"] == w) & (done["stage"] == 0), "test_acc"].std() > 0]
    if not varied:
        return pd.DataFrame()
    null = null_model(done[done["arch"].isin(varied)], n_sim=n_sim, seed=seed)
    null["params"] = null.index.map(WIDTH_PARAM_COUNTS)
    null["noise_pct"] = 100.0 * null["sigma"] / null["dense_mean"]
    return null.loc[[w for w in WIDTHS if w in null.index]]


def noise_statement(null: pd.DataFrame, trends: dict[str, dict], alpha: float = 0.05) -> str:
    """Can the data tell "smaller models benefit more" from "smaller models are noisier"?

    ``trends`` holds `width_trend` results for "a_gain" and "a_gain_sigma". If the gain falls
    with size but the gain in units of each width's own spread does not, the fall is what noise
    alone predicts (a ticket is the best of K-1 noisy stages, so its gain scales with the
    spread); if both fall, size matters beyond noise.
    """
    if null.empty or len(null) < 3:
        return ("Too few widths with complete runs to relate the gain to each width's own "
                "run-to-run spread.")
    order = null.sort_values("params")
    spreads = ", ".join(f"{r.noise_pct:.2f} % ({int(r.params):,} parameters)"
                        for r in order.itertuples())
    rho = spearman(np.log10(order["params"].to_numpy(float)), order["noise_pct"].to_numpy(float))
    beyond = [w for w, r in order.iterrows() if r["p_a_gain"] < alpha]
    text = (f"Run-to-run spread of the dense accuracy, relative to its mean (the unit of "
            f"A_gain): {spreads}; Spearman rho with size {rho:.2f}. ")
    text += (f"The measured Best Sparse A_gain is beyond what that noise alone gives "
             f"(one-sided p < {alpha:g}) at {len(beyond)} of {len(order)} widths"
             + (f" ({', '.join(beyond)})" if beyond else "") + ". ")
    for what, col in (("SR", "p_sr_below"), ("Best Sparse A_gain", "p_a_gain_below")):
        below = [w for w, r in order.iterrows() if r.get(col, math.nan) < alpha]
        if below:  # the tail a test of "beyond noise" does not look at
            text += (f"The measured {what} is below what noise alone gives (the other tail, "
                     f"one-sided p < {alpha:g}) at {len(below)} of {len(order)} widths "
                     f"({', '.join(below)}). ")
    raw, scaled = trends.get("a_gain", {}), trends.get("a_gain_sigma", {})
    tested = all(t.get("status") not in (None, "not enough runs") for t in (raw, scaled))
    if not tested:
        return text + "Not enough runs to test either trend."
    b_raw, b_scaled = (round(t["slope"], 2) + 0.0 for t in (raw, scaled))  # no "-0.00"
    text += (f"Best Sparse A_gain changes by {b_raw:+.2f} % per tenfold increase in "
             f"parameters (two-sided permutation p = {raw['p_value']:.3g}); in units of each "
             f"width's own spread, by {b_scaled:+.2f} (p = {scaled['p_value']:.3g}). ")
    if raw["status"] == "supported" and scaled["status"] != "supported":
        text += ("A_gain falls with size, but the gain in units of each width's own spread "
                 "does not: the fall is what noise alone predicts, so our data cannot credit it "
                 "to size.")
    elif raw["status"] == "supported":
        text += ("A_gain falls with size even in units of each width's own spread: size "
                 "matters beyond the noise.")
    elif raw["slope"] < 0 and scaled["p_value"] > raw["p_value"]:
        text += ("A_gain tends to fall with size, though not beyond run-to-run noise at this "
                 "number of runs, and the tendency weakens in units of each width's own "
                 "spread: what our data show is what noise alone predicts, and they cannot "
                 "tell the two apart.")
    else:
        text += "A_gain does not fall with size, so there is no fall for the noise to explain."
    return text


def _frac(w: float) -> str:
    """A width as the reader says it: 1/8, 1/4, 1/2, 1, 2."""
    return f"1/{round(1 / w)}" if w < 1 and float(1 / w).is_integer() else f"{w:g}"


def family_markdown(summary: pd.DataFrame) -> str:
    """The widths, their parameter counts and the span, against the paper's size range."""
    from .paper import PAPER_PARAMS
    from .tables import name

    counts = [WIDTH_PARAM_COUNTS[w] for w in WIDTHS]
    span = counts[-1] / counts[0]
    lenet = PAPER_PARAMS["lenet5"]
    near = min(PAPER_PARAMS, key=lambda a: abs(math.log(PAPER_PARAMS[a] / (lenet * span))))
    parts = ", ".join(f"{_frac(WIDTH_FAMILY[w])} ({c:,})" for w, c in zip(WIDTHS, counts,
                                                                          strict=True))
    text = (f"Widths (parameters): {parts}. The family spans a factor {span:.0f} in size, "
            f"about the span from LeNet-5 ({lenet / 1000:.0f}K) to {name(near)} "
            f"({PAPER_PARAMS[near] / 1e6:.2f}M) in the paper.")
    ok = summary[summary["status"] == "ok"]
    if len(ok) >= 2:
        lo, hi = ok["params"].min(), ok["params"].max()
        text += (f" With enough complete runs to count so far: {len(ok)} widths, "
                 f"{int(lo):,} to {int(hi):,} parameters (a factor {hi / lo:.0f}).")
    text += (" If size alone makes ticket search pay off more, SR, A_gain and LTS should fall "
             "from the narrowest width to the widest.")
    return text


def records_markdown(summary: pd.DataFrame, root: Path, fallback: Path | None) -> str:
    """Which records were read, per width, and how to compute a missing study."""
    lines = []
    if fallback is not None:
        lines.append(f"`{fallback}` holds no width records; the chapter reads `{root}`.")
    if int(summary["runs"].sum()) == 0:
        lines.append(f"**The width study is not computed yet** (nothing under `{root}/width/` "
                     f"or `{root}/lenet5/`). Computing it: `make width`.")
    else:
        lines.append("Records read: " + "; ".join(
            f"{name}: {int(r.complete_runs)} complete run(s)"
            + (f", {int(r.incomplete_runs)} in progress" if r.incomplete_runs else "")
            for name, r in summary.iterrows()) + ".")
    return "\n\n".join(lines)


def summary_table(summary: pd.DataFrame):
    """`summary_frame` as the book's HTML table."""
    from .tables import styled

    return styled(summary_frame(summary), caption="The width study, per width (complete runs "
                  "only; n/a: not computed, or no successful run)")


def summary_markdown(summary: pd.DataFrame) -> str:
    """`summary_frame` as a Markdown table (for the README)."""
    f = summary_frame(summary).astype(str)
    lines = ["| " + " | ".join(f.columns) + " |", "|" + "---|" * len(f.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in f.itertuples(index=False)]
    return "\n".join(lines)


def summary_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """Per width, in the paper's units: accuracy and gains to 2 decimals, SR as a whole
    percent, mean ± std in one cell, intervals beside."""
    from .tables import ci, num, pct
    from .tables import pm as _pm

    def pm(mean: float, std: float) -> str:  # one run has no std; none has no mean
        return "n/a" if not math.isfinite(mean) else num(mean) if not math.isfinite(std) \
            else _pm(mean, std)

    def with_ci(value: str, lo: float, hi: float, fmt=num) -> str:
        return value if not (math.isfinite(lo) and math.isfinite(hi)) else \
            f"{value} ({ci(lo, hi, fmt)})"

    rows = []
    for _, r in summary.iterrows():
        rows.append({
            "width": _frac(r["width"]), "parameters": f"{int(r['params']):,}",
            "complete runs": int(r["complete_runs"]),
            "dense test acc. (%)": pm(r["dense_test_acc_mean"], r["dense_test_acc_std"]),
            "SR (95 % exact)": with_ci(pct(r["sr"]), r["sr_lo"], r["sr_hi"], pct),
            "Best Sparse A_gain (%)": pm(r["a_gain_mean"], r["a_gain_std"]),
            "A_gain mean, 95 % bootstrap": (f"too few ({int(r['n_success'])})"
                                            if 0 < r["n_success"] and too_few(r["n_success"])
                                            else ci(r["a_gain_lo"], r["a_gain_hi"])),
            "LTS (95 % t)": with_ci(num(r["lts"]), r["lts_lo"], r["lts_hi"]),
            "Best Sparse TL_gain (%)": pm(r["tl_gain_mean"], r["tl_gain_std"])})
    return pd.DataFrame(rows)


def null_table(null: pd.DataFrame):
    """Measured SR and A_gain per width beside what noise at its own spread gives."""
    from .tables import num, pct, styled

    rows = [{"width": _frac(WIDTH_FAMILY[w]), "runs": int(r["n_runs"]),
             "dense spread (% of mean)": r["noise_pct"],
             "SR: ours / noise": f"{pct(r['sr_measured'])} / {pct(r['sr_null'])}",
             "p (SR)": num(r["p_sr"], 3),
             "p (SR below)": num(r["p_sr_below"], 3),
             "A_gain (%): ours / noise": f"{num(r['a_gain_measured'])} / "
                                         f"{num(r['a_gain_null'])}",
             "p (A_gain)": num(r["p_a_gain"], 3),
             "p (A_gain below)": num(r["p_a_gain_below"], 3),
             "A_gain, noise-free dense": r["a_gain_null_dense"]}
            for w, r in null.iterrows()]
    return styled(pd.DataFrame(rows), caption="Null model per width: searches where pruning "
                  "changes nothing, at each width's own run-to-run spread (exchangeable: the "
                  "dense accuracy as noisy as the others; the last column takes it as "
                  "noise-free); p: one-sided, of ours at or above the exchangeable null, and "
                  "(below) at or under it")


def verdict_markdown(trends: dict[str, dict], null: pd.DataFrame,
                     power: dict | None = None) -> str:
    """The chapter's verdict on claim (a) within one family, with its numbers and rule;
    ``power`` (`width_power` of LTS) says what a "not shown" is worth."""
    main = trends["lts"]
    text = [f"**{main['verdict']}**", f"Rule: {main['rule']}"]
    status = main["status"]
    if status == "not enough runs":
        text.append("So far the width study cannot confirm or refute the paper's claim that "
                    "smaller models benefit more from ticket search; the verdict updates as "
                    "runs complete.")
    elif status == "supported":
        noise = trends.get("a_gain_sigma", {}).get("status")
        text.append("Within one architecture, size alone reproduces the paper's direction: "
                    "the narrower LeNet-5s gain more from ticket search"
                    + ("." if noise == "supported" else
                       ", though the gain in units of each width's own noise does not fall, "
                       "so noise alone may explain it."))
    elif status == "contradicted":
        text.append("Within one architecture, size alone goes against the paper's direction: "
                    "the wider LeNet-5s gain more from ticket search.")
    else:
        text.append("Within one architecture, changing size alone does not produce the "
                    "paper's trend beyond what run-to-run noise explains at this number of "
                    "runs; the trend across the paper's architectures may come from their "
                    "other differences, or be too small to see with these runs.")
        if power is not None and math.isfinite(power["power"]):
            text.append(
                f"That is not evidence of absence: a trend as large as the paper's own "
                f"({power['slope']:+.2f} LTS per tenfold increase in parameters) would be "
                f"found here with probability {100 * power['power']:.0f} %, and finding it "
                f"with probability {100 * power['target']:.0f} % would take "
                f"{runs_needed_text(power)} complete runs per width.")
    counts = sorted(set(main["n"]))
    runs = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
            ) if counts else "no"
    text.append("Caveats: one architecture family, one data set, our recipe (the paper gives "
                f"none), and {runs} complete runs per width where the paper ran 50.")
    return "\n\n".join(text)


def width_finding(results: str | os.PathLike | None = None, n_perm: int = 10_000,
                  seed: int = 0) -> dict[str, str]:
    """The findings page's row for claim (a) within one family: {ours, detail, status}."""
    df = load_width(results)
    summary = width_summary(df)
    t = width_trend(df, "lts", n_perm=n_perm, seed=seed)
    detail = [f"{_frac(r['width'])} ({int(r['params']):,} parameters): LTS {r['lts']:.2f}, "
              f"SR {r['sr']:.0f} % over {int(r['complete_runs'])} runs"
              for _, r in summary.iterrows() if r["complete_runs"] > 0]
    power = width_power(df, "lts")
    ours = t["verdict"]
    if t["status"] == "not shown" and math.isfinite(power["power"]):
        ours += (f" Power against a trend as large as the paper's "
                 f"({power['slope']:+.2f} per tenfold, simulated permutation test): "
                 f"{100 * power['power']:.0f} %; {runs_needed_text(power)} runs per width "
                 f"would give "
                 f"{100 * power['target']:.0f} %.")
    return {"ours": ours, "detail": detail, "status": t["status"]}


def ensure_width(profile: str = "quick", results: str | os.PathLike | None = None,
                 runs: int | None = None, widths: list[str] | None = None,
                 data: str | None = None, device: str = "auto",
                 workers: int | None = None, progress: bool = False) -> None:
    """Compute (resumably) whatever the study lacks: ``runs`` complete runs (default: the
    profile's ``width_runs``; 0 computes nothing) of each width, in `width_roots` (read them
    with `load_width`). Stored runs are reused, never retrained."""
    from .profiles import ensure_results, get_profile

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


def readme_section(results: str | os.PathLike | None = None, n_perm: int = 10_000,
                   seed: int = 0) -> str:
    """The README's "Size alone" block (`lth_book.readme`), every number from the stored
    study: run counts, per-width table (`summary_markdown`), trends, the noise statement
    and the verdict."""
    df = load_width(results)
    summary = width_summary(df)
    trends = {k: width_trend(df, k, n_perm=n_perm, seed=seed)
              for k in ("lts", "sr", "a_gain", "a_gain_sigma")}
    null = width_null(df)
    done = summary["complete_runs"]
    runs = ", ".join(f"{_frac(r.width)}: {int(r.complete_runs)}" for r in summary.itertuples())
    text = [f"Complete runs per width: {runs} (target {CPU_RUNS}; {int(done.sum())} in all).",
            summary_markdown(summary)]
    lts = trends["lts"]
    if lts["status"] != "not enough runs":  # else the verdict says why there is no trend
        p = lts["params"]
        parts = [f"{_NAMES[k]} {t['slope']:+.{0 if k == 'sr' else 2}f}{_UNITS[k]} per tenfold "
                 f"increase (p = {t['p_value']:.2g})"
                 for k, t in trends.items() if k != "a_gain_sigma"]
        beyond = [_NAMES[k] for k, t in trends.items()
                  if k != "a_gain_sigma" and t["status"] in ("supported", "contradicted")]
        text.append(
            f"Trend with log parameter count (two-sided permutation test over runs, "
            f"{len(p)} widths with at least {MIN_RUNS} complete runs, {p[0]:,} to {p[-1]:,} "
            f"parameters, {p[-1] / p[0]:.0f}x): " + "; ".join(parts) + ". "
            + ("No trend is beyond run-to-run noise." if not beyond else
               f"Beyond run-to-run noise: {', '.join(beyond)}."))
    text.append(noise_statement(null, trends))
    power = width_power(df, "lts")
    text.append(power_statement(power))
    text.append("Verdict on claim (a) within one family: "
                + verdict_markdown(trends, null, power))
    return "\n\n".join(text)


def main(argv: list[str] | None = None) -> int:
    """``python -m lth_book.width``: compute the width study's missing runs."""
    import argparse
    import sys

    from .profiles import PROFILES

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
