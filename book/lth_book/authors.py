"""The authors' own per-run numbers, ours against them, and what they say about the LTS column.

The authors' per-run Best Sparse gains (../shared/paper/authors-per-run-gains.json, from the
plot data of their blog post) come in through `authors_gains`, `authors_searches` (how many
searches each row implies: not always 50), `compare_gains` and `fig_gains_vs_authors` (ours
against theirs). Without that file (a checkout without shared/) these return None or an empty
table and warn (`MissingAuthorsData`). `lts_candidates_per_run` and `lts_investigation`
settle what the printed LTS column is (see `paper`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lth_core.analysis.metrics import complete_runs, run_summary

from .formats import pval
from .paper import (
    _HALF_UNIT,
    _LTS_HALF_UNIT,
    LTS_CANDIDATES,
    PAPER_NAMES,
    PAPER_TABLE1,
    _cells,
    _range,
    paper_table2,
)
from .profiles import SHARED
from .stats import two_sample_test

# -- The authors' own per-run numbers ---------------------------------------------------------

AUTHORS_GAINS = SHARED / "paper" / "authors-per-run-gains.json"

# Names in the authors' file -> ours.
AUTHORS_NAMES: dict[str, str] = {v: k for k, v in PAPER_NAMES.items()} | {
    "EfficientNetV1": "efficientnet_b0"}


class MissingAuthorsData(UserWarning):
    """The authors' per-run file is not on this machine (a checkout without shared/)."""


def authors_gains_path(path: str | os.PathLike | None = None) -> Path:
    return Path(path) if path is not None else AUTHORS_GAINS


def load_authors(path: str | os.PathLike | None = None) -> dict[str, dict] | None:
    """The authors' per-run file as {arch: {"name", "gains" (array, %), "sr" (%)}}, in Table
    1's order; None, with a `MissingAuthorsData` warning naming the path, when it is absent."""
    path = authors_gains_path(path)
    if not path.is_file():
        warnings.warn(f"the authors' per-run numbers are not here ({path}): their side of the "
                      "comparison is left out", MissingAuthorsData, stacklevel=2)
        return None
    raw = json.loads(path.read_text())
    gains, rates = raw["accuracy_gain_per_successful_run"], raw["success_rate_percent"]
    unknown = [n for n in gains if n not in AUTHORS_NAMES]
    if unknown:
        raise ValueError(f"{path}: unknown architecture name(s) {', '.join(unknown)}")
    out = {AUTHORS_NAMES[n]: {"name": n, "gains": np.asarray(g, dtype=float),
                              "sr": float(rates[n])} for n, g in gains.items()}
    order = list(PAPER_TABLE1)
    return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                       else len(order)))


def authors_gains(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The authors' Best Sparse A_gain (%) of every successful search, one row each.

    Columns arch, name (theirs), i (position in their list), a_gain. Empty with these columns
    (and a `MissingAuthorsData` warning) when the file is absent.
    """
    data = load_authors(path)
    cols = ["arch", "name", "i", "a_gain"]
    if data is None:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame([(a, d["name"], i, float(g)) for a, d in data.items()
                         for i, g in enumerate(d["gains"])], columns=cols)


def _searches(n_gains: int, sr: float, most: int = 1000) -> tuple[float, float]:
    """(searches, successes): the fewest searches n whose SR x n / 100 is a whole number of
    successes k >= n_gains (the plotted gains cannot outnumber the successes)."""
    if sr <= 0:
        return math.nan, math.nan
    for n in range(max(1, math.ceil(n_gains / (sr / 100) - 1e-9)), most + 1):
        k = sr * n / 100
        if abs(k - round(k)) < 1e-6 and round(k) >= n_gains:
            return float(n), float(round(k))
    return math.nan, math.nan


def authors_searches(path: str | os.PathLike | None = None) -> pd.DataFrame | None:
    """Provenance of the paper's side: how many searches each architecture's numbers imply.

    The paper says 50 runs, but the gains listed are not always SR x 50. Per arch: n_gains,
    sr (full precision) and sr_printed, implied_searches = n_gains / (SR/100) (not always a
    whole number), searches and successes = the fewest searches whose SR gives a whole number
    of successes at least n_gains (LeNet-5: 36 of 53), gains_missing = successes - n_gains
    (successes with no plotted gain), and the gains' mean and std (ddof=1) beside Table 2's
    printed Best Sparse A_gain. None when the file is absent.
    """
    data = load_authors(path)
    if data is None:
        return None
    printed = paper_table2()
    rows = {}
    for arch, d in data.items():
        g, sr = d["gains"], d["sr"]
        searches, successes = _searches(len(g), sr)
        rows[arch] = {
            "name": d["name"], "n_gains": len(g), "sr": sr,
            "sr_printed": printed.at[arch, "sr"] if arch in printed.index else math.nan,
            "implied_searches": len(g) / (sr / 100) if sr > 0 else math.nan,
            "searches": searches, "successes": successes,
            "gains_missing": successes - len(g),
            "a_gain_mean": float(g.mean()) if len(g) else math.nan,
            "a_gain_std": float(g.std(ddof=1)) if len(g) >= 2 else math.nan,
            "a_gain_mean_printed": printed.at[arch, "best_sparse_a_gain_mean"],
            "a_gain_std_printed": printed.at[arch, "best_sparse_a_gain_std"],
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "arch"
    return out


def _our_gains(ours: pd.DataFrame, select_on: str) -> tuple[dict[str, np.ndarray],
                                                           dict[str, int]]:
    """Best Sparse A_gain of our successful complete runs per arch, and incomplete runs
    left out."""
    done, left_out = complete_runs(ours)
    if done.empty:
        return {}, left_out
    s = run_summary(done, select_on=select_on)
    won = s[s["success"]]
    return ({a: won.loc[won["arch"] == a, "best_sparse_a_gain"].to_numpy(dtype=float)
             for a in s["arch"].unique()}, left_out)


def compare_gains(
    ours: pd.DataFrame,
    path: str | os.PathLike | None = None,
    select_on: str = "test",
    min_runs: int = 3,
    n_perm: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame | None:
    """Our per-run Best Sparse A_gain against the authors', per architecture both have.

    ``ours``: per-stage records (as for `metrics.table2`); only complete runs count, as for
    the authors (every listed gain is a finished search). Columns: n_ours, mean_ours,
    std_ours, n_authors, mean_authors, std_authors, diff (ours - theirs), auc (P(our gain >
    theirs)), p_mean and p_mannwhitney (two-sided permutation tests, `stats.two_sample_test`;
    NaN unless both sides have at least ``min_runs`` successful runs), permutation,
    incomplete_left_out. None when the authors' file is absent.
    """
    data = load_authors(path)
    if data is None:
        return None
    gains, left_out = _our_gains(ours, select_on)
    rows = {}
    for arch, d in data.items():
        if arch not in gains:
            continue
        x, y = gains[arch], d["gains"]
        row = {"n_ours": len(x), "mean_ours": float(x.mean()) if len(x) else math.nan,
               "std_ours": float(x.std(ddof=1)) if len(x) >= 2 else math.nan,
               "n_authors": len(y), "mean_authors": float(y.mean()),
               "std_authors": float(y.std(ddof=1)) if len(y) >= 2 else math.nan}
        test = two_sample_test(x, y, n_perm=n_perm, seed=seed)
        row.update(diff=test["diff"], auc=test["auc"], p_mean=math.nan,
                   p_mannwhitney=math.nan, permutation=None,
                   incomplete_left_out=left_out.get(arch, 0))
        if len(x) >= min_runs and len(y) >= min_runs:
            row.update(p_mean=test["p_mean"], p_mannwhitney=test["p_mannwhitney"],
                       permutation=test["permutation"])
        rows[arch] = row
    cols = ["n_ours", "mean_ours", "std_ours", "n_authors", "mean_authors", "std_authors",
            "diff", "auc", "p_mean", "p_mannwhitney", "permutation", "incomplete_left_out"]
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=cols)
    out.index.name = "arch"
    return out


def _ecdf(ax, values: np.ndarray, marker: str | None = None, **kw) -> None:
    v = np.sort(values)
    if len(v):
        share = np.arange(1, len(v) + 1) / len(v)
        ax.step(np.r_[v[0], v], np.r_[0.0, share], where="post", **kw)
        if marker:
            ax.plot(v, share, ls="none", marker=marker, markersize=3, color=kw.get("color"))


def fig_gains_vs_authors(
    ours: pd.DataFrame | None = None,
    path: str | os.PathLike | None = None,
    select_on: str = "test",
    n_perm: int = 10_000,
    seed: int = 0,
) -> Figure | None:
    """ECDF of the Best Sparse A_gain of successful runs, ours against the authors', one panel
    per architecture we have (every architecture of theirs when ``ours`` is None).

    Each panel names both n and the permutation p of the mean difference. None when the
    authors' file is absent.
    """
    data = load_authors(path)
    if data is None:
        return None
    gains, _ = _our_gains(ours, select_on) if ours is not None else ({}, {})
    cmp = (compare_gains(ours, path, select_on, n_perm=n_perm, seed=seed)
           if ours is not None else None)
    archs = [a for a in data if a in gains] if ours is not None else list(data)
    if not archs:
        archs = list(data)
    cols = min(len(archs), 4)
    rows = math.ceil(len(archs) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.7 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, arch in zip(axes, archs, strict=False):
        theirs = data[arch]["gains"]
        _ecdf(ax, theirs, color="0.4", label=f"authors (n={len(theirs)})")
        title = PAPER_NAMES.get(arch, arch)
        if arch in gains:
            _ecdf(ax, gains[arch], color="C0", marker="o", label=f"ours (n={len(gains[arch])})")
            p = cmp.at[arch, "p_mean"] if cmp is not None and arch in cmp.index else math.nan
            title += f"\npermutation {pval(p)}" if math.isfinite(p) else "\n(too few to test)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("Best Sparse A_gain (%)")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("share of successful runs")
    for ax in axes[len(archs):]:
        ax.set_visible(False)
    return fig


# -- The LTS column again, with the per-run numbers -------------------------------------------

# Candidates only per-run numbers can test: the population std, and a fixed count of 50 runs.
LTS_CANDIDATES_PER_RUN: dict[str, Callable[..., float]] = {
    "(A_gain(BS) + population std) x SR/100":
        lambda sr, bs, bs_std0: (bs + bs_std0) * sr / 100,
    "sum of per-run gains / 50": lambda gains_sum: gains_sum / 50,
}
_TRUNC_UNIT = 0.0001


def _cells_per_run(row: pd.Series, d: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Table 2's cells with SR and the Best Sparse A_gain mean/std replaced by the per-run
    numbers (exact: no rounding half-unit), and the half-units to use."""
    g = d["gains"]
    cells = _cells(row)
    cells.update(sr=d["sr"], bs=float(g.mean()), bs_std=float(g.std(ddof=1)),
                 bs_std0=float(g.std()), gains_sum=float(g.sum()))
    half = dict(_HALF_UNIT, sr=0.0, bs=0.0, bs_std=0.0, bs_std0=0.0, gains_sum=0.0)
    return cells, half


def lts_candidates_per_run(path: str | os.PathLike | None = None) -> pd.DataFrame | None:
    """`lts_candidates` again with the authors' per-run numbers: SR at full precision and the
    Best Sparse A_gain mean and std computed from their gains (the other cells as printed).

    Besides rows_within_rounding (printed LTS = value rounded to 4 decimals), rows_truncated
    counts rows where the printed LTS is the value cut to 4 decimals; reproduces: all seven
    rows by either. "(A_gain(BS) + std) x SR/100" then reproduces all seven rows, truncated
    (see `lts_investigation`). None when the file is absent.
    """
    data = load_authors(path)
    if data is None:
        return None
    paper = paper_table2()
    archs = [a for a in paper.index if a in data]
    printed = paper.loc[archs, "lts"].to_numpy(dtype=float)
    tol = 1e-9
    rows = {"printed LTS": dict(zip(archs, printed, strict=True))}
    rows["printed LTS"].update(max_abs_err=0.0, rows_within_rounding=len(archs),
                               rows_truncated=len(archs))
    for name, f in {**LTS_CANDIDATES, **LTS_CANDIDATES_PER_RUN}.items():
        ranges = [_range(f, *_cells_per_run(paper.loc[a], data[a])) for a in archs]
        values = np.array([r[0] for r in ranges])
        rounded = [lo - _LTS_HALF_UNIT - tol <= p <= hi + _LTS_HALF_UNIT + tol
                   for (_, lo, hi), p in zip(ranges, printed, strict=True)]
        cut = [lo < p + _TRUNC_UNIT - tol and hi >= p - tol
               for (_, lo, hi), p in zip(ranges, printed, strict=True)]
        rows[name] = dict(zip(archs, values, strict=True))
        rows[name].update(max_abs_err=float(np.abs(values - printed).max()),
                          rows_within_rounding=int(sum(rounded)), rows_truncated=int(sum(cut)))
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "candidate"
    for c in ("rows_within_rounding", "rows_truncated"):
        out[c] = out[c].astype(int)
    out["reproduces"] = (out[["rows_within_rounding", "rows_truncated"]].max(axis=1)
                         == len(archs))
    return out


def lts_investigation(path: str | os.PathLike | None = None) -> pd.DataFrame | None:
    """What the per-run numbers say about the printed LTS column and PNASNet-B's A_gain cell.

    Per arch: sr_printed, sr, n_gains, a_gain_mean_printed,
    a_gain_std_printed, a_gain_mean and a_gain_std (from the gains), a_gain_from_test_acc
    ((Best Sparse - Dense) / Dense of the printed mean test accuracies, %), lts_printed,
    lts_mean_plus_std = SR/100 x (mean + std) of the gains, its value cut to 4 decimals
    (lts_truncated), lts_reproduced (cut value = printed), a_gain_cell_agrees (printed mean
    and std are the gains' rounded to 2 decimals). None without the file.
    """
    data = load_authors(path)
    if data is None:
        return None
    paper = paper_table2()
    rows = {}
    for arch, d in data.items():
        r, g = paper.loc[arch], d["gains"]
        mean, std = float(g.mean()), float(g.std(ddof=1))
        lts = d["sr"] / 100 * (mean + std)
        cut = math.floor(lts / _TRUNC_UNIT + 1e-6) * _TRUNC_UNIT
        dense, bs = r["dense_test_acc_mean"], r["best_sparse_test_acc_mean"]
        rows[arch] = {
            "sr_printed": r["sr"], "sr": d["sr"], "n_gains": len(g),
            "a_gain_mean_printed": r["best_sparse_a_gain_mean"],
            "a_gain_std_printed": r["best_sparse_a_gain_std"],
            "a_gain_mean": mean, "a_gain_std": std,
            "a_gain_from_test_acc": (bs - dense) / dense * 100,
            "lts_printed": r["lts"], "lts_mean_plus_std": lts, "lts_truncated": cut,
            "lts_reproduced": abs(cut - r["lts"]) < 1e-9,
            "a_gain_cell_agrees": bool(
                abs(round(mean, 2) - r["best_sparse_a_gain_mean"]) < 1e-9
                and abs(std - r["best_sparse_a_gain_std"]) <= 0.005 + 1e-9),
        }
    t = pd.DataFrame.from_dict(rows, orient="index")
    t.index.name = "arch"
    return t
