"""Gain or noise? The paper's numbers and our stage sets against a null in which pruning
does nothing.

The paper's A_gain is the best of K - 1 pruned stages' test accuracy against one dense test
accuracy, and a search succeeds when some pruned stage reaches the dense one. If pruning did
nothing and every trained network's accuracy were run-to-run noise, K = 5 would still give
SR = 1 - 1/K = 80 % and a positive mean gain in proportion to the noise. `stagesets` holds
the stored sets, what pruning itself does to them and the noise models checked on them;
here are **the paper's own numbers against the null** (`paper_noise`): per architecture,
from its printed dense mean and std and K = 5, the null's SR and Best Sparse A_gain beside
the printed ones, and the authors' per-run gains in units of the dense sigma against the
null's distribution of (best pruned - dense | success); `paper_sensitivity` varies the
within-run correlation and the source of sigma; `gain_trend` asks claim (a) in units of
noise; `set_noise` judges one of our sets the same way.

Every test and interval goes through `lth_book.stats` (scipy.stats). Verdicts (`verdict`)
follow one printed rule (`RULE`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lth_core.models import WIDTH_FAMILY

from . import stats as bstats
from .authors import authors_searches, load_authors
from .claims import null_success
from .formats import NOT_COMPUTED, NOT_REPRODUCED, REPRODUCED, pval, signed
from .formats import name as display_name
from .paper import PAPER_PARAMS, PAPER_PROTOCOL, paper_table2
from .profiles import REPO_ROOT, RESULTS_DIR
from .stagesets import (
    StageSet,
    _mean_offdiag,
    _t_ci,
    effect_trend,
    per_run_effect,
    pooled_correlation,
    search_outcomes,
    set_name,
    stage_effects,
    stored_sets,
)
from .stats import ALPHA, LEVEL

MIN_SUCCESSES = bstats.MIN_FOR_INTERVAL  # fewer successes: an A_gain is "too few"
PAPER_K = PAPER_PROTOCOL.stages  # the paper's stages
RHO_GRID = (0.0, 0.1, 0.25, 0.5)  # within-run correlations of the sensitivity table
SIGMA_SOURCES = ("dense", "best_sparse", "sparsest_matching")  # Table 2 rows giving sigma

BEYOND, NOISE, BELOW, MIXED = ("beyond noise", "what noise predicts", "below noise",
                               "mixed")
VERDICTS = (BEYOND, NOISE, BELOW, MIXED)
RULE = (f"Each of SR and the mean Best Sparse gain is tested against the null in which "
        f"pruning does nothing (two-sided, level {ALPHA}): SR by an exact binomial test "
        f"against 1 - 1/K, the gain in units of the dense spread by a one-sample t test "
        f"against the null's mean gain given success. **{BEYOND}**: at least one is above the "
        f"null and neither below; **{BELOW}**: at least one below and neither above; "
        f"**{MIXED}**: one above and one below; **{NOISE}**: neither differs.")


# -- the verdict ----------------------------------------------------------------------------

def verdict(p_sr: float, sr_above: bool, p_gain: float, gain_above: bool,
            alpha: float = ALPHA) -> str:
    """`RULE`: SR and gain each above, below or like the null; one verdict of `VERDICTS`."""
    above = [(p < alpha) and up for p, up in ((p_sr, sr_above), (p_gain, gain_above))]
    below = [(p < alpha) and not up for p, up in ((p_sr, sr_above), (p_gain, gain_above))]
    if any(above) and any(below):
        return MIXED
    if any(above):
        return BEYOND
    if any(below):
        return BELOW
    return NOISE


# -- 3. the null in units of sigma, and the paper's numbers against it ------------------------

def null_gains(k: int = PAPER_K, rho: float = 0.0, n_sim: int = 200_000,
               seed: int = 0) -> np.ndarray:
    """Sorted draws of (best pruned - dense) / sigma given success, when all K stage
    accuracies are equally noisy with within-run correlation ``rho`` and pruning does
    nothing: sqrt(1 - rho) (max of K - 1 normals - one normal), kept where >= 0."""
    e = np.random.default_rng(seed).standard_normal((n_sim, k))
    z = math.sqrt(1 - rho) * (e[:, 1:].max(axis=1) - e[:, 0])
    return np.sort(z[z >= 0])


def _gain_test(z: np.ndarray, null: np.ndarray) -> dict:
    """Gains in sigma units against the null's conditional distribution: one-sample t test
    of the mean against the null's mean, and the one-sample KS test of the shape."""
    if len(z) < 2:
        return {"z_mean": float(z.mean()) if len(z) else math.nan, "p_mean": math.nan,
                "p_ks": math.nan}
    cdf = lambda v: np.searchsorted(null, v, side="right") / len(null)
    return {"z_mean": float(z.mean()), "p_mean": bstats.t_test(z, float(null.mean())),
            "p_ks": bstats.ks_p(z, cdf)}


def paper_noise(rho: float = 0.0, sigma_from: str = "dense", k: int = PAPER_K,
                authors: str | os.PathLike | None = None, n_sim: int = 200_000,
                seed: int = 0) -> pd.DataFrame:
    """The paper's seven architectures against noise: from Table 2's dense mean mu and a
    sigma (its dense std, or the Best Sparse or Sparsest Matching std: ``sigma_from``), the
    null's SR and Best Sparse A_gain (mean and std, %) beside the printed ones, and the
    authors' per-run gains in units of sigma (gain x mu / 100 / sigma) tested against the
    null's (best - dense | success) / sigma (`_gain_test`); SR by an exact two-sided binomial
    test of the successes the authors' numbers imply (`authors.authors_searches`; without
    their file, the printed SR of `PAPER_PROTOCOL.runs` searches). ``verdict`` by `RULE`.
    """
    if sigma_from not in SIGMA_SOURCES:
        raise ValueError(f"sigma_from must be one of {', '.join(SIGMA_SOURCES)}")
    t = paper_table2()
    null = null_gains(k, rho, n_sim, seed)
    sr0 = null_success(k)
    data = load_authors(authors) if authors is None or Path(authors).is_file() else None
    searches = authors_searches(authors) if data is not None else None
    rows = {}
    for arch, r in t.iterrows():
        mu, sigma = r["dense_test_acc_mean"], r[f"{sigma_from}_test_acc_std"]
        scale = 100 * sigma / mu  # one sigma in % of the dense accuracy
        if searches is not None and arch in searches.index:
            n, succ = int(searches.at[arch, "searches"]), int(searches.at[arch, "successes"])
            sr = float(searches.at[arch, "sr"])
        else:
            n, sr = PAPER_PROTOCOL.runs, float(r["sr"])
            succ = round(sr / 100 * n)
        p_sr = bstats.binom_p(succ, n, sr0, "two-sided")
        gains = data[arch]["gains"] if data is not None and arch in data else None
        row = {"mu": mu, "sigma": sigma, "sigma_pct": scale, "searches": n,
               "successes": succ, "sr": sr, "sr_null": 100 * sr0, "p_sr": p_sr,
               "a_gain": r["best_sparse_a_gain_mean"],
               "a_gain_null": float(null.mean()) * scale,
               "a_gain_null_std": float(null.std(ddof=1)) * scale,
               "z_null": float(null.mean()), "n_gains": 0 if gains is None else len(gains)}
        if gains is not None:
            row.update(_gain_test(gains / scale, null))
        else:  # the printed mean alone: its z, no test
            row.update(z_mean=r["best_sparse_a_gain_mean"] / scale, p_mean=math.nan,
                       p_ks=math.nan)
        row["verdict"] = verdict(p_sr, sr > 100 * sr0, row["p_mean"],
                                 row["z_mean"] > row["z_null"])
        rows[arch] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "arch"
    return out


def paper_sensitivity(rhos: tuple[float, ...] = RHO_GRID, central: float | None = None,
                      sources: tuple[str, ...] = SIGMA_SOURCES,
                      authors: str | os.PathLike | None = None,
                      n_sim: int = 100_000) -> pd.DataFrame:
    """The verdicts of `paper_noise` for every sigma source and within-run correlation
    (``central``, ours, added to the grid): one row per (sigma, rho), one column per
    architecture, and the null's mean gain in sigma units."""
    grid = sorted(set(rhos) | ({round(central, 3)} if central is not None
                               and math.isfinite(central) else set()))
    rows = []
    for src in sources:
        for rho in grid:
            p = paper_noise(max(rho, 0.0), src, authors=authors, n_sim=n_sim)
            rows.append({"sigma from": src, "rho": rho, "null gain / sigma": p["z_null"].iloc[0],
                         **p["verdict"].to_dict()})
    return pd.DataFrame(rows)


def gain_trend(paper: pd.DataFrame) -> dict:
    """Claim (a) in units of noise: Spearman's rho between the parameter count and each
    architecture's mean gain / sigma (`paper_noise`'s z_mean), with the exact two-sided
    permutation p over all orderings (5,040 for seven; `stats.permutation`)."""
    p = paper.dropna(subset=["z_mean"])
    x = np.array([PAPER_PARAMS[a] for a in p.index], dtype=float)
    y = p["z_mean"].to_numpy(dtype=float)
    if len(p) < 3:
        return {"rho": math.nan, "p": math.nan, "n": len(p), "orderings": 0}
    # one sample permuted against fixed sizes: its 7! orderings, exactly
    res = bstats.permutation((y,), lambda b, axis=-1: bstats.spearman(x, b), "pairings",
                             math.factorial(len(p)))
    return {"rho": res["statistic"], "p": res["p"], "n": len(p),
            "orderings": math.factorial(len(p)), "kind": res["kind"]}


def claim_a_verdict(trend: dict, alpha: float = ALPHA) -> str:
    """Claim (a) in noise units: "reproduced" when gain / sigma falls with size (rho < 0,
    two-sided exact p < alpha), "not reproduced" otherwise, "not computed" with < 3."""
    if trend["n"] < 3:
        return NOT_COMPUTED
    return REPRODUCED if trend["rho"] < 0 and trend["p"] < alpha else NOT_REPRODUCED


# -- our sets against their own null -------------------------------------------------------

def set_noise(s: StageSet, rho: float | None = None, seed: int = 0) -> dict:
    """One of our sets judged as `paper_noise` judges the paper's rows: SR (exact binomial
    against 1 - 1/K) and the gains in units of the set's dense sigma against the null with
    the set's own within-run correlation (``rho``; default: measured, floored at 0); the
    selection-free mean effect beside them. ``verdict`` by `RULE`."""
    won, gain = search_outcomes(s.acc)
    dense = s.acc[:, 0]
    sigma = float(dense.std(ddof=1))
    rho = max(0.0, _mean_offdiag(s.acc)) if rho is None else rho
    null = null_gains(s.k, min(rho, 0.99), 100_000, seed)
    succ = int(won.sum())
    p_sr = bstats.binom_p(succ, s.n, null_success(s.k), "two-sided")
    z = ((s.acc[:, 1:].max(axis=1) - dense) / sigma)[won]
    g = _gain_test(z, null)
    if succ < MIN_SUCCESSES:  # too few gains to test: the verdict rests on SR alone
        g["p_mean"] = g["p_ks"] = math.nan
    eff = per_run_effect(s)
    lo, hi, p_eff = _t_ci(eff)
    return {"set": s.label, "n": s.n, "k": s.k, "successes": succ,
            "sr": 100 * succ / s.n, "sr_null": 100 * null_success(s.k), "p_sr": p_sr,
            "sigma": sigma, "rho": rho, "z_null": float(null.mean()),
            "too_few": succ < MIN_SUCCESSES, **g,
            "effect": float(eff.mean()), "effect_lo": lo, "effect_hi": hi, "p_effect": p_eff,
            "verdict": verdict(p_sr, succ / s.n > null_success(s.k), g["p_mean"],
                               g["z_mean"] > float(null.mean()))}


# -- the chapter's figure and its findings row (the README block: `readme`) ---------------

def fig_stage_effects(sets: list[StageSet], level: float = LEVEL):
    """Mean paired difference acc_k - acc_0 (% of the dense mean) against density, one line
    per set, with its Student-t interval: what pruning does, no stage selected."""
    fig = Figure(figsize=(7.2, 4.0))
    ax = fig.subplots()
    for i, s in enumerate(sets):
        e = stage_effects(s, level)
        x = 100 * np.concatenate([[1.0], e["density"].to_numpy()])
        y = np.concatenate([[0.0], e["diff_pct"].to_numpy()])
        lo = np.concatenate([[0.0], e["lo_pct"].to_numpy()])
        hi = np.concatenate([[0.0], e["hi_pct"].to_numpy()])
        off = 1 + 0.004 * (i - len(sets) / 2)  # side by side, so the intervals can be read
        ax.errorbar(x * off, y, yerr=[y - lo, hi - y], marker="o", ms=4, capsize=2, lw=1,
                    label=f"{set_name(s)} ({s.n} runs)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.invert_xaxis()
    ax.set_xlabel("weights kept (%)")
    ax.set_ylabel("acc_k - acc_0 (% of dense mean)")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    return fig


def family(sets: list[StageSet]) -> list[StageSet]:
    """The CPU width family among ``sets``: LAMP searches of LeNet-5 widths, one per width
    (``results/lenet5`` is width 1; the GPU sets of LeNet-5 are other machines)."""
    fam = [s for s in sets if s.pruner == "lamp" and s.arch in WIDTH_FAMILY
           and (s.label == s.arch or s.label.startswith("width/"))]
    return sorted(fam, key=lambda s: s.params or 0)


@dataclass
class Study:
    """Everything the chapter, the findings row and the README read."""

    sets: list[StageSet]
    rho: float  # pooled within-run correlation of our LAMP sets
    paper: pd.DataFrame  # `paper_noise` at rho, sigma from the dense row
    trend: dict  # `gain_trend` of the paper's gain / sigma
    claim: str  # `claim_a_verdict`
    ours: pd.DataFrame  # `set_noise` per set
    effect: dict  # `effect_trend` across the width family


def study(results: str | os.PathLike | None = None, n_power: int = 200, seed: int = 0,
          more: str | os.PathLike | None = None) -> Study:
    """The chapter's numbers from the stored sets under ``results`` (default: the
    repository's), those of ``more`` (a book build's own folder) when it is another folder,
    and the paper's own (`paper.paper_table2`, the authors' per-run file)."""
    sets = stored_sets(results)
    first = (REPO_ROOT / results if results else RESULTS_DIR).resolve()
    if more is not None and (REPO_ROOT / more).resolve() != first:
        sets += stored_sets(more)
    lamp = [s for s in sets if s.pruner == "lamp"]
    rho = pooled_correlation(lamp)
    central = max(0.0, rho) if math.isfinite(rho) else 0.0
    paper = paper_noise(central, seed=seed)
    trend = gain_trend(paper)
    ours = pd.DataFrame([set_noise(s, seed=seed) for s in sets])
    return Study(sets, rho, paper, trend, claim_a_verdict(trend), ours,
                 effect_trend(family(sets), n_power=n_power, seed=seed))


def noise_finding(results: str | os.PathLike | None = None, seed: int = 0) -> dict:
    """The findings page's row for claim (a) in units of noise: {ours, detail, status}."""
    st = study(results, n_power=100, seed=seed)
    t = st.trend
    ours = (f"Mean gain / dense sigma against size: Spearman rho {signed(t['rho'])}, exact "
            f"two-sided {pval(t['p'])} over {t['orderings']:,} orderings "
            f"({t['n']} architectures; null with within-run correlation {st.rho:.2f}, "
            f"pooled over our runs). Per architecture, against what noise predicts:")
    detail = [f"{display_name(a)}: {r['verdict']} (SR {r['sr']:.0f} % vs {r['sr_null']:.0f} %, "
              f"{pval(r['p_sr'])}; gain {r['z_mean']:.2f} sigma vs {r['z_null']:.2f}, "
              f"{pval(r['p_mean'])})" for a, r in st.paper.iterrows()]
    return {"ours": ours, "detail": detail, "status": st.claim}
