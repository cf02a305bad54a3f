"""Our own checks of the paper's claims: uncertainty, the size trend, a null model, pruners.

The paper reports SR, A_gain and LTS from one set of runs per architecture, with no
uncertainty, and reads a trend off seven points. These functions say how much of that survives
resampling (`bootstrap_ci`, `size_trend`), what pure noise would give (`null_model`), and how
LAMP compares with other pruners (`compare_pruners`). All are deterministic given `seed`; each
architecture draws from its own stream (seeded by seed and its name), so its numbers do not
depend on which other architectures are in the table.
"""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pandas as pd

from lth_core.analysis.metrics import run_summary, table2
from lth_core.models import PARAM_COUNTS


def _rng(seed: int, arch: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(arch.encode())])


def _order(archs) -> list[str]:
    """Architectures by parameter count (unknown ones last, in their order)."""
    archs = list(dict.fromkeys(archs))
    return sorted(archs, key=lambda a: (a not in PARAM_COUNTS, PARAM_COUNTS.get(a, 0)))


def _resample(success: np.ndarray, gain: np.ndarray, n_boot: int, rng: np.random.Generator):
    """SR (%), mean Best Sparse A_gain over successes and LTS for n_boot resamples of runs.

    A_gain is NaN in a resample with no success; LTS is then 0, as in `metrics.table2`.
    """
    n = len(success)
    idx = rng.integers(0, n, size=(n_boot, n))
    won = success[idx]
    n_won = won.sum(axis=1)
    total = np.where(won, np.nan_to_num(gain)[idx], 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        a_gain = np.where(n_won > 0, total / n_won, np.nan)
    sr = n_won / n * 100.0
    lts = np.where(n_won > 0, a_gain * sr / 100.0, 0.0)
    return sr, a_gain, lts


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
    level: float = 0.95,
    select_on: str = "test",
) -> pd.DataFrame:
    """Per arch: SR, A_gain (Best Sparse, over successful runs) and LTS with percentile CIs.

    Runs are resampled with replacement within each arch (the run is the unit of repetition).
    Columns: n_runs, sr, sr_lo, sr_hi, a_gain, a_gain_lo, a_gain_hi, lts, lts_lo, lts_hi.
    A_gain's CI uses only resamples with at least one success. LTS = A_gain x SR/100.
    """
    s = run_summary(df, select_on=select_on)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    rows = {}
    for arch in _order(s["arch"]):
        success, gain = _runs(s, arch)
        boot = _resample(success, gain, n_boot, _rng(seed, arch))
        row: dict[str, float] = {"n_runs": len(success)}
        for name, point, values in zip(("sr", "a_gain", "lts"), _point(success, gain), boot,
                                       strict=True):
            finite = values[np.isfinite(values)]
            lo, hi = np.percentile(finite, q) if len(finite) else (math.nan, math.nan)
            row.update({name: point, f"{name}_lo": float(lo), f"{name}_hi": float(hi)})
        rows[arch] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "arch"
    out["n_runs"] = out["n_runs"].astype(int)
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks (1-based) along the last axis, ties get their average rank."""
    x = np.asarray(x, dtype=float)
    less = (x[..., None, :] < x[..., :, None]).sum(axis=-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(axis=-1)
    return less + (equal + 1) / 2.0


def spearman(x, y) -> np.ndarray | float:
    """Spearman rank correlation along the last axis (Pearson on average ranks).

    NaN where either side is constant, since then no order exists to correlate.
    """
    rx, ry = _ranks(x), _ranks(y)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=-1) * (ry**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (rx * ry).sum(axis=-1) / den, np.nan)
    return float(rho) if rho.ndim == 0 else rho


def _permutations(n: int, n_perm: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    if n <= 8:  # 8! = 40320 orderings: cheap, and an exact p-value
        return np.array(list(itertools.permutations(range(n)))), "exact"
    return np.array([rng.permutation(n) for _ in range(n_perm)]), "monte carlo"


def size_trend(
    df: pd.DataFrame,
    params: dict[str, int],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    select_on: str = "test",
    n_perm: int = 10_000,
) -> dict:
    """Does LTS fall with model size? Spearman rho between parameter count and LTS over archs.

    - rho_ci: percentile bootstrap CI of rho, resampling runs within each arch.
    - p_value: two-sided permutation p-value of rho over the architecture labels (exact
      enumeration up to 8 archs, else n_perm random permutations); p_decreasing is the
      one-sided one for the paper's claim (rho < 0). With n archs the smallest possible
      two-sided p is 2/n!, e.g. 0.083 for 4 archs: a few archs cannot show a trend.
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
    rho_boot = spearman(np.broadcast_to(x, boot.shape), boot)
    rho_boot = rho_boot[np.isfinite(rho_boot)]
    if len(rho_boot):
        lo, hi = np.percentile(rho_boot, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
        out["rho_ci"] = (float(lo), float(hi))
    perms, kind = _permutations(len(archs), n_perm, np.random.default_rng(seed))
    rho_perm = spearman(np.broadcast_to(x, perms.shape), lts[perms])
    tol = 1e-12  # permutations tying with the observed rho count as at least as extreme
    out.update(
        rho=rho,
        p_value=float(np.mean(np.abs(rho_perm) >= abs(rho) - tol)),
        p_decreasing=float(np.mean(rho_perm <= rho + tol)),
        permutation=kind,
        message=f"{len(archs)} architectures, {kind} permutation test",
    )
    return out


def simulate_null(
    dense_mean: float,
    sigma: float,
    stages: int,
    n_sim: int = 2000,
    rng: np.random.Generator | int = 0,
    mode: str = "dense",
) -> tuple[float, float, float]:
    """(SR %, mean Best Sparse A_gain over successes, LTS) of runs where pruning does nothing.

    The core of `null_model`, usable on published summaries too (e.g. the paper's dense mean
    and std). See `null_model` for the two modes.
    """
    if mode not in ("dense", "exchangeable"):
        raise ValueError(f"mode must be 'dense' or 'exchangeable', got {mode!r}")
    rng = np.random.default_rng(rng) if isinstance(rng, int) else rng
    sparse = dense_mean + sigma * rng.standard_normal((n_sim, stages - 1))
    base = dense_mean
    if mode == "exchangeable":
        base = dense_mean + sigma * rng.standard_normal((n_sim, 1))
    best = ((sparse - base) / base * 100.0).max(axis=1)
    won = best >= 0
    if not won.any():
        return 0.0, math.nan, 0.0
    sr, a_gain = float(won.mean() * 100.0), float(best[won].mean())
    return sr, a_gain, a_gain * sr / 100.0


def null_model(
    df: pd.DataFrame, n_sim: int = 2000, seed: int = 0, mode: str = "dense",
    sigma: dict[str, float] | None = None,
) -> pd.DataFrame:
    """SR and A_gain if pruning changed nothing and sparse accuracies were only noise.

    Noise: sigma = sample std (ddof=1) of the dense (stage 0) test accuracies across the
    arch's runs, i.e. the run-to-run spread of one trained network's accuracy. Stage count K
    is the largest number of stages any run of the arch has. Each simulated run draws K-1
    sparse accuracies:
    - mode="dense" (default): ~ N(dense, sigma) around a noise-free dense accuracy (the
      measured mean); P(success) = 1 - 2^-(K-1), 94 % for K = 5.
    - mode="exchangeable": the dense accuracy is noisy too, all K ~ N(mean, sigma) iid; then
      P(success) = 1 - 1/K, 80 % for K = 5. This is the fairer null when every trained
      network is equally noisy.
    ``sigma`` overrides the spread per architecture, e.g. with the std of many more dense runs
    than the ticket search has (a handful of runs estimates a spread poorly).
    Selection is on test accuracy, as in the paper; the measured columns use every stored run
    (an unfinished run counts with the stages it has). A measured SR or A_gain near the null's
    says the "winning tickets" are what noise alone produces.
    Columns: n_runs, stages, sigma, dense_mean, sr_measured, sr_null, a_gain_measured,
    a_gain_null, lts_measured, lts_null.
    """
    if mode not in ("dense", "exchangeable"):
        raise ValueError(f"mode must be 'dense' or 'exchangeable', got {mode!r}")
    s = run_summary(df, select_on="test")
    rows = {}
    for arch in _order(s["arch"]):
        a = df[df["arch"] == arch]
        dense = a.loc[a["stage"] == 0, "test_acc"].to_numpy(dtype=float)
        k = int(a.groupby("run")["stage"].nunique().max())
        sd = float(dense.std(ddof=1)) if len(dense) >= 2 else math.nan
        sd = float((sigma or {}).get(arch, sd))
        mu = float(dense.mean())
        sr, gain, lts = _point(*_runs(s, arch))
        row = {"n_runs": len(dense), "stages": k, "sigma": sd, "dense_mean": mu,
               "sr_measured": sr, "sr_null": math.nan, "a_gain_measured": gain,
               "a_gain_null": math.nan, "lts_measured": lts, "lts_null": math.nan}
        if k >= 2 and math.isfinite(sd):
            row["sr_null"], row["a_gain_null"], row["lts_null"] = simulate_null(
                mu, sd, k, n_sim=n_sim, rng=_rng(seed, arch), mode=mode
            )
        rows[arch] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "arch"
    return out


def null_verdict(null: pd.DataFrame) -> list[str]:
    """One plain sentence per architecture of a ``null_model`` table: is the measured ticket
    quality beyond what noise alone gives?"""
    out = []
    for arch, r in null.iterrows():
        if not (math.isfinite(r["sr_null"]) and math.isfinite(r["a_gain_measured"])):
            out.append(f"{arch}: no null model (needs K >= 2 and 2 dense runs) or no success.")
            continue
        beyond = r["a_gain_measured"] > r["a_gain_null"] and r["sr_measured"] > r["sr_null"]
        out.append(
            f"{arch}: measured SR {r['sr_measured']:.0f} % and A_gain {r['a_gain_measured']:.2f}"
            f" % against {r['sr_null']:.0f} % and {r['a_gain_null']:.2f} % from noise alone "
            f"(sigma {r['sigma']:.2f}, {int(r['n_runs'])} runs): "
            + ("above the null on both." if beyond else
               "not beyond what noise alone produces."))
    return out


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
