"""The paper's printed numbers (Tables 1 and 2) as data, the authors' own per-run numbers,
and what its LTS column really is.

Tables 1 and 2 are transcribed from "Not All Lotteries Are Made Equal" so our results can be
put next to the published ones cell by cell (`compare_table2`). The authors' per-run Best
Sparse gains (../shared/paper/authors-per-run-gains.json, from the plot data of their blog
post) come in through `authors_gains`, `authors_searches` (how many searches each row
implies: not always 50), `compare_gains` and `fig_gains_vs_authors` (ours against theirs).
Without that file (a checkout without shared/) these return None or an empty table and warn
(`MissingAuthorsData`).

The LTS column. The paper defines LTS Score = A_gain x SR, but its printed column is not
A_gain(Best Sparse) x SR/100 of its own rows (LeNet-5: 1.08 x 0.68 = 0.734, printed 1.2895).
From Table 2's rounded cells alone (`lts_candidates`), the closest formula,
SR/100 x (mean + std of the Best Sparse A_gain), matches six rows and misses PNASNet-B.
The per-run numbers settle it (`lts_candidates_per_run`, `lts_investigation`): with SR at
full precision and the mean and sample std of the per-run gains, that formula gives all seven
printed LTS values, cut (not rounded) to four decimals; PNASNet-B's gains (0.82 ± 0.51) give
its printed LTS and agree with its test-accuracy cells ((85.27 - 84.57) / 84.57 = 0.83 %),
while its printed A_gain cell (0.69 ± 0.43) does not: that cell is the misprint. We keep the
printed definition (`lts_printed_definition`), as `metrics.table2` does.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lth_core.analysis.metrics import KINDS, complete_runs, run_summary

from .claims import two_sample_test
from .profiles import REPO_ROOT

# Table 1, as printed (name -> # params). Keys are our architecture names.
PAPER_TABLE1: dict[str, str] = {
    "lenet5": "61K",
    "pnasnet_a": "0.13M",
    "pnasnet_b": "0.45M",
    "resnet32": "0.46M",
    "mobilenet_v1": "3.22M",
    "efficientnet_b0": "3.59M",
    "resnet18": "11.17M",
}

PAPER_NAMES: dict[str, str] = {
    "lenet5": "LeNet-5",
    "pnasnet_a": "PNASNet-A",
    "pnasnet_b": "PNASNet-B",
    "resnet32": "ResNet32",
    "mobilenet_v1": "MobileNetV1",
    "efficientnet_b0": "EfficientNet",
    "resnet18": "ResNet18",
}


def _parse_count(printed: str) -> int:
    scale = {"K": 1_000, "M": 1_000_000}[printed[-1]]
    return round(float(printed[:-1]) * scale)


# Table 1 as numbers (61K -> 61000), e.g. for `claims.size_trend`.
PAPER_PARAMS: dict[str, int] = {k: _parse_count(v) for k, v in PAPER_TABLE1.items()}

# Table 2, as printed: arch -> (SR %, LTS, {kind: (traj, tl_gain, test_acc, a_gain)}), each
# metric a (mean, std) pair. EfficientNet's Best Sparse A_gain std is printed "0.2".
_TABLE2 = {
    "lenet5": (68, 1.2895, {
        "dense": ((0.09, 0.03), (0.00, 0.00), (67.92, 0.96), (0.00, 0.00)),
        "best_sparse": ((0.09, 0.03), (0.003, 0.02), (68.65, 0.89), (1.08, 0.81)),
        "sparsest_matching": ((0.08, 0.03), (-0.004, 0.02), (68.40, 0.89), (0.72, 0.91)),
    }),
    "pnasnet_a": (87, 1.0748, {
        "dense": ((264.60, 26.04), (0.00, 0.00), (80.10, 0.55), (0.00, 0.00)),
        "best_sparse": ((321.56, 21.63), (24.35, 13.37), (80.75, 0.51), (0.80, 0.44)),
        "sparsest_matching": ((290.33, 27.50), (12.04, 12.32), (80.55, 0.54), (0.56, 0.46)),
    }),
    "pnasnet_b": (90, 1.2030, {
        "dense": ((89.08, 12.38), (0.00, 0.00), (84.57, 0.43), (0.00, 0.00)),
        "best_sparse": ((97.30, 10.74), (10.75, 18.71), (85.27, 0.32), (0.69, 0.43)),
        "sparsest_matching": ((90.80, 13.13), (2.48, 14.50), (84.87, 0.42), (0.30, 0.47)),
    }),
    "resnet32": (83, 0.7183, {
        "dense": ((48.16, 7.75), (0.00, 0.00), (89.90, 0.25), (0.00, 0.00)),
        "best_sparse": ((55.02, 8.78), (15.33, 21.17), (90.36, 0.24), (0.52, 0.35)),
        "sparsest_matching": ((48.09, 8.87), (0.65, 20.66), (90.20, 0.26), (0.34, 0.35)),
    }),
    "mobilenet_v1": (94, 0.7575, {
        "dense": ((204.81, 23.62), (0.00, 0.00), (85.29, 0.31), (0.00, 0.00)),
        "best_sparse": ((220.54, 26.55), (8.86, 13.60), (85.71, 0.26), (0.49, 0.31)),
        "sparsest_matching": ((201.61, 22.67), (-0.39, 12.23), (85.46, 0.32), (0.21, 0.36)),
    }),
    "efficientnet_b0": (88, 0.4801, {
        "dense": ((331.24, 43.58), (0.00, 0.00), (87.54, 0.23), (0.00, 0.00)),
        "best_sparse": ((327.18, 41.58), (0.95, 12.59), (87.85, 0.22), (0.35, 0.2)),
        "sparsest_matching": ((303.08, 50.72), (-6.67, 14.52), (87.65, 0.25), (0.12, 0.24)),
    }),
    "resnet18": (67, 0.5350, {
        "dense": ((22.60, 2.76), (0.00, 0.00), (93.47, 0.33), (0.00, 0.00)),
        "best_sparse": ((24.43, 3.22), (10.79, 20.73), (93.90, 0.16), (0.46, 0.34)),
        "sparsest_matching": ((21.48, 2.67), (-3.02, 14.94), (93.69, 0.26), (0.16, 0.33)),
    }),
}
_METRICS = ("traj", "tl_gain", "test_acc", "a_gain")


def paper_table2() -> pd.DataFrame:
    """Table 2 as printed, one row per arch, in the column names of `metrics.table2`.

    SR is in percent as printed; there is no n_runs column (the paper says 50 runs, but SRs
    such as 87 % and 83 % are not multiples of 2 %, so not every row can come from 50 runs).
    """
    rows = {}
    for arch, (sr, lts, kinds) in _TABLE2.items():
        row = {"sr": float(sr), "lts": lts}
        for kind in KINDS:
            for m, (mean, std) in zip(_METRICS, kinds[kind], strict=True):
                row[f"{kind}_{m}_mean"] = float(mean)
                row[f"{kind}_{m}_std"] = float(std)
        rows[arch] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "arch"
    return out


def compare_table2(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Cell-by-cell comparison: index (arch, metric), columns ours, paper, diff = ours - paper.

    Only architectures and columns present in both tables are compared, in `paper`'s order.
    """
    archs = [a for a in paper.index if a in ours.index]
    cols = [c for c in paper.columns if c in ours.columns]
    rows = [
        (a, c, float(ours.at[a, c]), float(paper.at[a, c])) for a in archs for c in cols
    ]
    out = pd.DataFrame(rows, columns=["arch", "metric", "ours", "paper"])
    out["diff"] = out["ours"] - out["paper"]
    return out.set_index(["arch", "metric"])


def lts_printed_definition(sr, a_gain):
    """LTS as the paper defines it: A_gain x SR, with SR as a fraction (SR in percent / 100).

    Works on floats and arrays. This is what `metrics.table2` reports. It does not reproduce
    the paper's own LTS column (see the module docstring and `lts_candidates`).
    """
    return a_gain * sr / 100.0


# Candidate formulas for the printed LTS column. Argument names pick the Table 2 cells:
# sr (percent), bs / bs_std (Best Sparse A_gain mean / std), sm / sm_std (Sparsest Matching),
# dense_acc / bs_acc (mean test accuracies of Dense / Best Sparse).
LTS_CANDIDATES: dict[str, Callable[..., float]] = {
    "A_gain(BS) x SR/100  [printed definition]": lambda sr, bs: lts_printed_definition(sr, bs),
    "mean over runs of success x A_gain(BS)  [= printed definition]":
        lambda sr, bs: sr / 100 * bs,
    "A_gain(BS) x SR  [SR in percent]": lambda sr, bs: bs * sr,
    "A_gain(SM) x SR/100": lambda sr, sm: sm * sr / 100,
    "(A_gain(BS) + A_gain(SM)) x SR/100": lambda sr, bs, sm: (bs + sm) * sr / 100,
    "mean(A_gain(BS), A_gain(SM)) x SR/100": lambda sr, bs, sm: (bs + sm) / 2 * sr / 100,
    "A_gain(BS) / (SR/100)": lambda sr, bs: bs / (sr / 100),
    "A_gain(BS) x (SR/100)^2": lambda sr, bs: bs * (sr / 100) ** 2,
    "A_gain(BS) x sqrt(SR/100)": lambda sr, bs: bs * np.sqrt(sr / 100),
    "A_gain(BS) / std": lambda bs, bs_std: bs / bs_std,
    "A_gain(BS) / std x SR/100": lambda sr, bs, bs_std: bs / bs_std * sr / 100,
    "(A_gain(BS) - std) x SR/100": lambda sr, bs, bs_std: (bs - bs_std) * sr / 100,
    "(A_gain(BS) + std) x SR/100": lambda sr, bs, bs_std: (bs + bs_std) * sr / 100,
    "(A_gain(SM) + std) x SR/100": lambda sr, sm, sm_std: (sm + sm_std) * sr / 100,
    "sqrt(A_gain(BS)^2 + std^2) x SR/100  [RMS of per-run gains]":
        lambda sr, bs, bs_std: np.sqrt(bs**2 + bs_std**2) * sr / 100,
    "gain of mean accuracies (BS vs Dense) x SR/100":
        lambda sr, bs_acc, dense_acc: (bs_acc - dense_acc) / dense_acc * 100 * sr / 100,
    "accuracy points (BS - Dense) x SR/100":
        lambda sr, bs_acc, dense_acc: (bs_acc - dense_acc) * sr / 100,
}

# Half a unit of the last printed digit: SR is a whole percent, the rest have 2 decimals.
_HALF_UNIT = {"sr": 0.5, "bs": 0.005, "bs_std": 0.005, "sm": 0.005, "sm_std": 0.005,
              "dense_acc": 0.005, "bs_acc": 0.005}
_LTS_HALF_UNIT = 0.00005


def _cells(row: pd.Series) -> dict[str, float]:
    return {
        "sr": row["sr"],
        "bs": row["best_sparse_a_gain_mean"],
        "bs_std": row["best_sparse_a_gain_std"],
        "sm": row["sparsest_matching_a_gain_mean"],
        "sm_std": row["sparsest_matching_a_gain_std"],
        "dense_acc": row["dense_test_acc_mean"],
        "bs_acc": row["best_sparse_test_acc_mean"],
    }


def _range(f: Callable[..., float], cells: dict[str, float],
           half: dict[str, float] | None = None) -> tuple[float, float, float]:
    """Value of f and its (min, max) over the corners of the inputs' rounding intervals.

    Every candidate is monotone in each input over the table's values, so corners bound it.
    """
    half = _HALF_UNIT if half is None else half
    names = list(inspect.signature(f).parameters)
    value = float(f(**{n: cells[n] for n in names}))
    corners = [
        float(f(**{n: cells[n] + s * half[n] for n, s in zip(names, signs, strict=True)}))
        for signs in itertools.product((-1, 1), repeat=len(names))
    ]
    return value, min(corners), max(corners)


def lts_candidates(paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each candidate LTS formula evaluated on Table 2 against the printed LTS column.

    One row per candidate (the first row, "printed LTS", holds the printed values). Columns:
    the seven architectures' values, max_abs_err, rows_within_rounding (how many rows'
    printed LTS lie in the range the formula reaches when each input varies within its
    printed rounding) and reproduces (all rows within rounding). From the printed cells no
    candidate reproduces the column; "(A_gain(BS) + std) x SR/100" matches 6 of 7 (all but
    PNASNet-B, whose printed A_gain cell is wrong: see `lts_candidates_per_run`).
    """
    paper = paper_table2() if paper is None else paper
    archs = list(paper.index)
    printed = paper["lts"].to_numpy(dtype=float)
    rows = {"printed LTS": dict(zip(archs, printed, strict=True))}
    rows["printed LTS"].update(max_abs_err=0.0, rows_within_rounding=len(archs))
    for name, f in LTS_CANDIDATES.items():
        ranges = [_range(f, _cells(paper.loc[a])) for a in archs]
        values = np.array([r[0] for r in ranges])
        inside = [
            lo - _LTS_HALF_UNIT <= p <= hi + _LTS_HALF_UNIT
            for (_, lo, hi), p in zip(ranges, printed, strict=True)
        ]
        rows[name] = dict(zip(archs, values, strict=True))
        rows[name].update(max_abs_err=float(np.abs(values - printed).max()),
                          rows_within_rounding=int(sum(inside)))
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "candidate"
    out["rows_within_rounding"] = out["rows_within_rounding"].astype(int)
    out["reproduces"] = out["rows_within_rounding"] == len(archs)
    out.loc["printed LTS", "reproduces"] = True
    return out


# -- The authors' own per-run numbers ---------------------------------------------------------

AUTHORS_GAINS = REPO_ROOT.parent / "shared" / "paper" / "authors-per-run-gains.json"

# Names in the authors' file -> ours.
AUTHORS_NAMES: dict[str, str] = {
    "LeNet-5": "lenet5",
    "PNASNet-A": "pnasnet_a",
    "PNASNet-B": "pnasnet_b",
    "ResNet32": "resnet32",
    "MobileNetV1": "mobilenet_v1",
    "EfficientNet": "efficientnet_b0",
    "EfficientNetV1": "efficientnet_b0",
    "ResNet18": "resnet18",
}


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
    theirs)), p_mean and p_mannwhitney (two-sided permutation tests, `claims.two_sample_test`;
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
            title += f"\npermutation p = {p:.3f}" if math.isfinite(p) else "\n(too few to test)"
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


def lts_investigation(path: str | os.PathLike | None = None) -> tuple[pd.DataFrame | None, str]:
    """What the per-run numbers say about the printed LTS column and PNASNet-B's A_gain cell.

    Returns (table, paragraph). Per arch: sr_printed, sr, n_gains, a_gain_mean_printed,
    a_gain_std_printed, a_gain_mean and a_gain_std (from the gains), a_gain_from_test_acc
    ((Best Sparse - Dense) / Dense of the printed mean test accuracies, %), lts_printed,
    lts_mean_plus_std = SR/100 x (mean + std) of the gains, its value cut to 4 decimals
    (lts_truncated), lts_reproduced (cut value = printed), a_gain_cell_agrees (printed mean
    and std are the gains' rounded to 2 decimals). Without the file: (None, a sentence
    saying so).
    """
    data = load_authors(path)
    if data is None:
        return None, (f"The authors' per-run numbers are not on this machine "
                      f"({authors_gains_path(path)}), so the printed LTS column can only be "
                      "tested against Table 2's rounded cells (`lts_candidates`).")
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
    return t, _lts_paragraph(t, lts_candidates_per_run(path))


def _lts_paragraph(t: pd.DataFrame, cands: pd.DataFrame) -> str:
    name = lambda a: PAPER_NAMES.get(a, a)
    n = len(t)
    fit = "(A_gain(BS) + std) x SR/100"
    others = [c for c in cands.index[cands["reproduces"]] if c not in ("printed LTS", fit)]
    err = (t["lts_mean_plus_std"] - t["lts_printed"])
    reproduced = int(t["lts_reproduced"].sum())
    row = cands.loc[[c for c in cands.index if "[printed definition]" in c][0]]
    definition = int(row[["rows_within_rounding", "rows_truncated"]].max()) or "none"
    text = (f"With the authors' per-run gains (SR at full precision, and the mean and sample "
            f"std of each architecture's Best Sparse gains), the printed LTS column is "
            f"SR/100 x (mean + std) of the per-run gains on {reproduced} of {n} rows, cut "
            f"(not rounded) to four decimals: the values exceed the printed ones by "
            f"{err.min():.6f} to {err.max():.6f}, always by less than 0.0001"
            + (f" (rounded, only {int((err.abs() <= 0.00005 + 1e-9).sum())} rows would match)"
               if (err.abs() > 0.00005 + 1e-9).any() else "")
            + ". " + ("No other candidate reproduces the column. " if not others else
                      f"Other candidates that also reproduce it: {', '.join(others)}. ")
            + f"The printed definition, A_gain x SR, reproduces {definition} of the {n} rows.")
    bad = t.index[~t["a_gain_cell_agrees"]]
    for arch in bad:
        r = t.loc[arch]
        text += (f" {name(arch)}'s printed A_gain cell, {r['a_gain_mean_printed']:.2f} ± "
                 f"{r['a_gain_std_printed']:.2f}, is not what its {int(r['n_gains'])} per-run "
                 f"gains give ({r['a_gain_mean']:.2f} ± {r['a_gain_std']:.2f}); those gains "
                 f"do give its printed LTS ({r['lts_printed']:.4f})"
                 + (" and agree with its printed test accuracies "
                    f"({r['a_gain_from_test_acc']:.2f} %)"
                    if abs(r["a_gain_from_test_acc"] - r["a_gain_mean"])
                    < abs(r["a_gain_from_test_acc"] - r["a_gain_mean_printed"]) else "")
                 + ", so the A_gain cell is the misprint, not the LTS.")
    good = [a for a in t.index if a not in bad]
    if good:
        text += (f" On the other {len(good)} rows the printed A_gain mean and std are the "
                 "per-run gains' rounded to two decimals.")
    return text
