"""The findings: the paper's claims, one row each, with the paper's evidence, ours with its
uncertainty, and a verdict computed by the stated rule (`RULES`) from the statistics of
`claims` (bootstrap, size trend, null model), Student-t intervals of per-run means, the width
study (`width_report.width_finding`) and the noise study (`noise.noise_finding`).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from lth_core.analysis.metrics import run_summary
from lth_core.analysis.metrics import table2 as metrics_table2
from lth_core.models import ARCHITECTURES, PARAM_COUNTS, by_size

from .claims import bootstrap_ci, size_trend
from .claims import null_model as claims_null_model
from .formats import (
    NOT_COMPUTED,
    NOT_REPRODUCED,
    REPRODUCED,
    _finite,
    ci,
    count,
    name,
    num,
    pct,
    per_arch,
    pval,
    with_css,
)
from .noise import noise_finding
from .paper import PAPER_PARAMS, PAPER_PROTOCOL, paper_table2
from .stats import ALPHA, LEVEL, mean_ci, permutation, spearman
from .tables import gain_ci
from .width import MIN_RUNS, MIN_WIDTHS
from .width_report import width_finding

MIN_TREND_ARCHS = 3  # fewer architectures: a trend is not computed at this budget


def rank_trend(values: Mapping[str, float], counts: Mapping[str, int] | None = None) -> dict:
    """Spearman rho between parameter count and ``values`` (arch -> value), with the exact
    one-sided permutation p of a decrease (`claims.size_trend`'s test, for any per-arch value),
    and p_up, the other tail's (a rise with size, which a test of a fall alone would hide).

    Architectures with a NaN value are left out; fewer than `MIN_TREND_ARCHS`: rho and p NaN.
    """
    counts = counts or PARAM_COUNTS
    archs = [a for a in by_size(values) if _finite(values[a])]
    out = {"archs": archs, "n": len(archs), "rho": math.nan, "p": math.nan, "p_up": math.nan}
    if len(archs) < MIN_TREND_ARCHS:
        return out
    x = np.array([counts[a] for a in archs], dtype=float)
    y = np.array([values[a] for a in archs], dtype=float)
    # every ordering up to 8 architectures (an exact p), else 10,000 random ones
    n = len(y)
    test = permutation((y,), lambda v, axis=-1: spearman(x, v), "pairings",
                       math.factorial(n) if n <= 8 else 10_000, 0)
    out.update(rho=float(spearman(x, y)), p=test["p_less"], p_up=test["p_greater"])
    return out


def _no_trend(n: int) -> str:
    return f"{count(n, 'architecture')}: no trend to test"


def _trend_text(t: dict) -> str:
    if t["n"] < MIN_TREND_ARCHS:
        return _no_trend(t["n"])
    text = (f"Spearman ρ = {num(t['rho'])} over {t['n']} architectures, one-sided "
            f"{pval(t['p'])}")
    if t.get("p_up", math.nan) < ALPHA:  # the opposite of the claim, shown when it is there
        text += f" (a rise with size instead: one-sided {pval(t['p_up'])})"
    return text


RULES = {
    "difficulty": ("Reproduced when SR falls with size: Spearman ρ < 0 with one-sided exact "
                   f"permutation p < {ALPHA} over at least {MIN_TREND_ARCHS} architectures."),
    "a": ("Reproduced when the Best Sparse A_gain falls with size (ρ < 0, one-sided "
          f"permutation p < {ALPHA}, at least {MIN_TREND_ARCHS} architectures) and the "
          f"smallest architecture's A_gain is beyond the null model (p < {ALPHA})."),
    "lts": (f"Reproduced when `claims.size_trend` finds LTS falling with size: one-sided "
            f"permutation p < {ALPHA} over at least {MIN_TREND_ARCHS} architectures."),
    "b": ("Reproduced when the TL_gain after the first pruning stage "
          f"({100 * (1 - PAPER_PROTOCOL.prune_rate):.0f} % of weights kept) is positive, its "
          f"{100 * LEVEL:.0f} % Student-t interval over runs above 0, in more than half of the "
          "architectures computed."),
    "c": ("Reproduced when the Sparsest Matching TL_gain is negative, its "
          f"{100 * LEVEL:.0f} % interval over successful runs below 0, in more than half of "
          "the architectures computed."),
    "fig5": (f"Reproduced when the Best Sparse TL_gain's {100 * LEVEL:.0f} % interval lies "
             "above 0 in every architecture computed and the Sparsest Matching TL_gain is below "
             "it in each."),
    "noise": ("Reproduced when the paper's own per-run Best Sparse gains, in units of each "
              "architecture's dense std (Table 2), fall with size: Spearman ρ < 0 with exact "
              f"two-sided permutation p < {ALPHA} over the paper's seven architectures. Each "
              "architecture's own verdict (beyond noise, what noise predicts, below noise) "
              "follows the rule of the 'Gain or noise?' chapter."),
    "width": ("Reproduced when the per-run LTS falls with log parameter count across LeNet-5 "
              f"widths (two-sided permutation p < {ALPHA}, at least {MIN_WIDTHS} widths with "
              f"{MIN_RUNS} or more complete runs each); not reproduced when it does not; not "
              "computed otherwise."),
}


CHAPTERS = {"difficulty": ("difficulty", "Ticket-search difficulty"),
            "a": ("quality", "Quality of winning tickets"),
            "lts": ("quality", "Quality of winning tickets"),
            "b": ("expressivity", "Expressivity"),
            "c": ("expressivity", "Expressivity"),
            "fig5": ("expressivity", "Expressivity"),
            "width": ("width", "Size alone"),
            "noise": ("noise", "Gain or noise?")}


CLAIMS = {
    "difficulty": ("§3.1, Fig. 2", "Ticket search gets harder as models grow"),
    "a": ("(a), Fig. 3", "Smaller models benefit more from ticket search"),
    "lts": ("Fig. 4, Table 2", "The LTS score decreases with model size"),
    "width": ("(a), one family", "Smaller models benefit more when size is all that changes "
              "(LeNet-5 at several widths, our own test)"),
    "noise": ("(a), Table 2", "Smaller models gain more than their run-to-run noise predicts "
              "(the paper's own numbers against a null in which pruning does nothing)"),
    "b": ("(b), Fig. 6", "Mild pruning increases expressive power (and lowers the "
          "generalization gap)"),
    "c": ("(c), Table 2", "Excessive pruning reduces expressivity while retaining test-set "
          "performance"),
    "fig5": ("Fig. 5", "Expressive power rises for Best Sparse tickets and falls for "
             "Sparsest Matching ones, in every architecture"),
}


def null_model(df: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """`claims.null_model` on the architectures whose dense accuracies vary between runs
    (with a zero spread there is no noise to simulate); keyword arguments are passed on."""
    dense = df[df["stage"] == 0].groupby("arch")["test_acc"].std(ddof=1)
    sigma = kwargs.get("sigma") or {}
    varied = [a for a in dense.index if (sigma.get(a) or dense[a]) > 0]
    if not varied:
        return pd.DataFrame(columns=["n_runs", "sigma", "sr_measured", "sr_null",
                                     "a_gain_measured", "a_gain_null"])
    return claims_null_model(df[df["arch"].isin(varied)], **kwargs)


def _t_interval(values) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n) of the finite values, 95 % Student-t interval (`stats.mean_ci`)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = mean_ci(v) if len(v) >= 2 else (math.nan, math.nan)
    return (float(v.mean()) if len(v) else math.nan), lo, hi, len(v)


def _sign_text(arch: str, m: float, lo: float, hi: float) -> str:
    return f"{name(arch)}: {num(m)} ({ci(lo, hi)})"


def _per_run_tl_gain(df: pd.DataFrame, stage: int, traj: str = "traj_len_2d") -> pd.Series:
    """Per (arch, run): TL_gain (%) of ``stage`` against the run's dense stage."""
    wide = df.pivot_table(index=["arch", "run"], columns="stage", values=traj)
    if stage not in wide.columns or 0 not in wide.columns:
        return pd.Series(dtype=float)
    return ((wide[stage] - wide[0]) / wide[0] * 100.0).dropna()


def _majority(flags: list[bool]) -> bool:
    return bool(flags) and sum(flags) > len(flags) / 2


def findings(df: pd.DataFrame, seed: int = 0, null: pd.DataFrame | None = None,
             width_results: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per claim of the paper: its evidence, ours (with uncertainty) and the verdict.

    ``df`` holds the records shown (LAMP); the width row reads the width study stored under
    ``width_results`` (None: the repository's results). Columns: id, where (in the paper),
    claim, paper, ours (the test's result), detail (per-architecture numbers behind it),
    verdict (one of `VERDICTS`), rule (`RULES`), chapter (document name), chapter_title, scope
    (architectures computed out of the paper's seven).
    """
    paper = paper_table2()
    ours = metrics_table2(df)
    archs = by_size(ours.index)
    boot = bootstrap_ci(df, n_boot=1000, seed=seed)
    null = null_model(df, n_sim=2000, seed=seed) if null is None else null
    summary = run_summary(df)
    scope = f"{len([a for a in archs if a in ARCHITECTURES])} of {len(ARCHITECTURES)}"
    paper_counts = {a: PAPER_PARAMS[a] for a in paper.index}
    rows = []

    def add(key: str, paper_text: str, ours_text: str, detail: list[str], verdict: str):
        where, claim = CLAIMS[key]
        doc, title = CHAPTERS[key]
        rows.append({"id": key, "where": where, "claim": claim, "paper": paper_text,
                     "ours": ours_text, "detail": detail, "verdict": verdict,
                     "rule": RULES[key], "chapter": doc, "chapter_title": title,
                     "scope": scope})

    def trend_verdict(t: dict, extra: bool = True) -> str:
        if t["n"] < MIN_TREND_ARCHS:
            return NOT_COMPUTED
        return REPRODUCED if t["rho"] < 0 and t["p"] < ALPHA and extra else NOT_REPRODUCED

    def booted(col: str, fmt: Callable = num) -> list[str]:
        return [f"{name(a)}: {fmt(boot.at[a, col])} "
                + (f"({gain_ci(boot.loc[a])})" if col == "a_gain" else
                   f"({ci(boot.at[a, f'{col}_lo'], boot.at[a, f'{col}_hi'], fmt)})")
                for a in archs if a in boot.index]

    # §3.1: SR falls with size
    p_sr = rank_trend(paper["sr"].to_dict(), paper_counts)
    o_sr = rank_trend(ours["sr"].to_dict())
    add("difficulty",
        f"SR {per_arch(paper['sr'], pct)}; {_trend_text(p_sr)}: the printed SRs show no fall.",
        f"{_trend_text(o_sr)}. SR per architecture (95 % exact interval):",
        booted("sr", pct), trend_verdict(o_sr))

    # (a): A_gain falls with size, and the smallest model's gain is beyond noise
    p_gain = rank_trend(paper["best_sparse_a_gain_mean"].to_dict(), paper_counts)
    o_gain = rank_trend(ours["best_sparse_a_gain_mean"].to_dict())
    smallest = archs[0] if archs else None
    beyond, null_text = False, "no null model (its dense accuracies do not vary)"
    if smallest is not None and smallest in null.index:
        r = null.loc[smallest]
        if _finite(r.get("p_a_gain")):
            beyond = r["p_a_gain"] < ALPHA
            null_text = (f"{num(r['a_gain_null'])} % from noise alone (one-sided "
                         f"{pval(r['p_a_gain'])})")
        elif _finite(r.get("a_gain_null")) and _finite(r.get("a_gain_measured")):
            beyond = r["a_gain_measured"] > r["a_gain_null"]
            null_text = f"{num(r['a_gain_null'])} % from noise alone"
    small = (f" {name(smallest)}, the smallest: A_gain {num(boot.at[smallest, 'a_gain'])} % "
             f"against {null_text}." if smallest in boot.index else "")
    add("a",
        f"Best Sparse A_gain (%) {per_arch(paper['best_sparse_a_gain_mean'])}; "
        f"{_trend_text(p_gain)}.",
        f"{_trend_text(o_gain)}.{small} A_gain (%) per architecture (95 % bootstrap interval):",
        booted("a_gain"), trend_verdict(o_gain, beyond))

    # Fig. 4 / Table 2: LTS falls with size
    p_lts = rank_trend(paper["lts"].to_dict(), paper_counts)
    counts = {a: PARAM_COUNTS[a] for a in archs if a in PARAM_COUNTS}
    if len(counts) >= MIN_TREND_ARCHS:
        t = size_trend(df[df["arch"].isin(counts)], counts, n_boot=500, seed=seed)
        lo, hi = t["rho_ci"]
        lts_text = (f"Spearman ρ = {num(t['rho'])} (95 % bootstrap interval {ci(lo, hi)}) over "
                    f"{t['n_archs']} architectures, one-sided permutation "
                    f"{pval(t['p_decreasing'])}.")
        verdict = REPRODUCED if t["p_decreasing"] < ALPHA else NOT_REPRODUCED
    else:
        lts_text = _no_trend(len(counts)) + "."
        verdict = NOT_COMPUTED
    add("lts",
        f"Printed LTS {per_arch(paper['lts'])}; {_trend_text(p_lts)}.",
        lts_text + " LTS per architecture (95 % bootstrap interval):", booted("lts"), verdict)

    # (a) within one family: the width study
    w = width_finding(width_results, seed=seed)
    add("width", "None: the paper varies architecture and size together.",
        w["ours"] + (" Per width:" if w["detail"] else ""), w["detail"],
        {"supported": REPRODUCED, "not enough runs": NOT_COMPUTED}.get(w["status"],
                                                                       NOT_REPRODUCED))

    # (a) in units of noise: the paper's own gains against what noise predicts

    n = noise_finding(width_results, seed=seed)
    add("noise", f"Best Sparse A_gain (%) {per_arch(paper['best_sparse_a_gain_mean'])} and "
        f"SR {per_arch(paper['sr'], pct)}, read as smaller models benefiting more; no test "
        "against run-to-run noise.", n["ours"], n["detail"], n["status"])

    # (b): TL_gain after the first pruning stage
    stage1 = _per_run_tl_gain(df, 1)
    parts, flags = [], []
    for arch in archs:
        if arch not in stage1.index.get_level_values(0):
            continue
        m, lo, hi, n = _t_interval(stage1.loc[arch])
        if n >= 2:
            flags.append(lo > 0)
            parts.append(_sign_text(arch, m, lo, hi))
    bs_paper = paper["best_sparse_tl_gain_mean"]
    add("b",
        f"Best Sparse TL_gain positive in {int((bs_paper > 0).sum())} of {len(bs_paper)} "
        f"architectures ({num(bs_paper.min())} % to {num(bs_paper.max())} %), after the first "
        "stages in Fig. 6. No numbers for the generalization gap.",
        (f"TL_gain after the first stage above 0 in {sum(flags)} of {len(flags)} "
         "architectures. The generalization gap is not measured (no training accuracy is "
         "recorded, and the paper gives none). TL_gain (%) at stage 1, mean (95 % interval):"
         if flags else "No architecture has two runs with a pruned stage."),
        parts, (REPRODUCED if _majority(flags) else NOT_REPRODUCED) if flags else NOT_COMPUTED)

    # (c) and Fig. 5: TL_gain of the winning tickets
    sm_parts, sm_flags, bs_parts, bs_flags, below = [], [], [], [], []
    for arch in archs:
        runs = summary[summary["arch"] == arch]
        bs = _t_interval(runs["best_sparse_tl_gain"])
        sm = _t_interval(runs["sparsest_matching_tl_gain"])
        if bs[3] < 2:
            continue
        bs_flags.append(bs[1] > 0)
        sm_flags.append(sm[2] < 0)
        below.append(sm[0] < bs[0])
        bs_parts.append(_sign_text(arch, *bs[:3]))
        sm_parts.append(_sign_text(arch, *sm[:3]))
    sm_paper = paper["sparsest_matching_tl_gain_mean"]
    acc = paper["sparsest_matching_a_gain_mean"]
    enough = bool(bs_flags)
    none = "No architecture has two successful runs."
    add("c",
        f"Sparsest Matching TL_gain negative in {int((sm_paper < 0).sum())} of "
        f"{len(sm_paper)} architectures, near zero in others ({num(sm_paper.min())} % to "
        f"{num(sm_paper.max())} %), at A_gain {num(acc.min())} % to {num(acc.max())} % "
        "(accuracy retained).",
        (f"Sparsest Matching TL_gain below 0 in {sum(sm_flags)} of {len(sm_flags)} "
         "architectures; its accuracy matches the dense one by definition. TL_gain (%), mean "
         "(95 % interval over successful runs):" if enough else none),
        sm_parts, (REPRODUCED if _majority(sm_flags) else NOT_REPRODUCED) if enough
        else NOT_COMPUTED)
    add("fig5",
        f"Best Sparse TL_gain above 0 in {int((bs_paper > 0).sum())} of {len(bs_paper)}; "
        f"Sparsest Matching below Best Sparse in {int((sm_paper < bs_paper).sum())} of "
        f"{len(bs_paper)} (means, no intervals).",
        (f"Best Sparse TL_gain above 0 in {sum(bs_flags)} of {len(bs_flags)} architectures; "
         f"Sparsest Matching below it in {sum(below)} of {len(below)}. Best Sparse TL_gain "
         "(%), mean (95 % interval over successful runs):" if enough else none),
        bs_parts, (REPRODUCED if all(bs_flags) and all(below) else NOT_REPRODUCED) if enough
        else NOT_COMPUTED)
    return pd.DataFrame(rows)


def _verdict_html(verdict: str) -> str:
    cls = {REPRODUCED: "reproduced", NOT_REPRODUCED: "not-reproduced",
           NOT_COMPUTED: "not-computed"}[verdict]
    return f'<span class="lth-verdict lth-verdict-{cls}">{html.escape(verdict)}</span>'


def findings_html(f: pd.DataFrame, link_suffix: str = ".html"):
    """The findings as an HTML table: claim, paper, ours, verdict (with its rule), chapter."""
    e = html.escape

    def ours(r) -> str:
        items = "".join(f"<li>{e(d)}</li>" for d in r.detail)
        return e(r.ours) + (f'<ul class="lth-detail">{items}</ul>' if items else "")

    rows = pd.DataFrame({
        "claim": [f"<strong>{e(r.where)}</strong>: {e(r.claim)}" for r in f.itertuples()],
        "the paper's evidence": [e(r.paper) for r in f.itertuples()],
        f"ours ({f['scope'].iloc[0]} architectures)" if len(f) else "ours":
            [ours(r) for r in f.itertuples()],
        "verdict": [f'{_verdict_html(r.verdict)}<div class="lth-rule">{e(r.rule)}</div>'
                    for r in f.itertuples()],
        "chapter": [f'<a href="{e(r.chapter)}{link_suffix}">{e(r.chapter_title)}</a>'
                    for r in f.itertuples()],
    })
    sty = rows.style.hide(axis="index").set_table_attributes(
        'class="lth-table lth-findings"')
    sty = sty.set_td_classes(pd.DataFrame("lth-left lth-wrap", index=rows.index,
                                          columns=rows.columns))
    return with_css(sty.set_caption("The paper's claims, its evidence, ours and the verdict"))


def verdict_markdown(f: pd.DataFrame, ids: Iterable[str]) -> str:
    """The verdicts of some claims as Markdown, one paragraph each, with the rule."""
    out = []
    for key in ids:
        r = f[f["id"] == key]
        if r.empty:
            continue
        r = r.iloc[0]
        items = "".join(f"\n- {d}" for d in r["detail"])
        out.append(f"**{r['claim']}** ({r['where']}): **{r['verdict']}** on {r['scope']} "
                   f"architectures. {r['ours']}{items}\n\n*Rule:* {r['rule']}")
    return "\n\n".join(out)
