"""The width study on the page and in the README: its tables, its figure and the sentences
that both the chapter (``book/width.ipynb``) and the README's "Size alone" block
(`lth_book.readme`) print, so that each has one owner: the trend verdict and its rule, the
noise and power statements, the verdict on claim (a). The chapter's other sentences are its
own; the README block's, `readme`'s.

Everything here presents numbers computed by `width` (records, per-width summary, trends,
the null) and `width_power`.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lth_core.config import setup_identity
from lth_core.models import WIDTH_FAMILY, WIDTH_PARAM_COUNTS
from lth_core.store import setup_difference

from .claims import too_few
from .formats import ci, frac, num, pct, pval, signed
from .formats import pm as _pm
from .paper import PAPER_PROTOCOL
from .stats import ALPHA, spearman
from .width import (
    MIN_WIDTHS,
    STAT_NAMES,
    STAT_UNITS,
    WIDTHS,
    load_width,
    width_summary,
    width_trend,
)
from .width_power import MAX_RUNS, width_power


def _setup(g: pd.DataFrame) -> list[tuple[str, str]]:
    """The distinct (config, data checksum) pairs of some records, each config as a setup's
    identity (`lth_core.config.setup_identity`: without the stages asked for and the fields
    that change how a stage runs, not what it computes)."""
    out = {(json.dumps(setup_identity(json.loads(cfg) if isinstance(cfg, str) else {}),
                       sort_keys=True), str(data))
           for cfg, data in g[["config", "data_checksum"]].drop_duplicates()
           .itertuples(index=False)}
    return sorted(out)


def setup_differences(df: pd.DataFrame) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Where the widths' records depart from the study's setup (the recipe and data of most
    records): (width, the first field that differs, or "other data") per departing setup,
    and each width's hardware where it differs between widths ({} when all share one)."""
    if df.empty or "config" not in df.columns:
        return [], {}
    setups = {a: _setup(g) for a, g in df.groupby("arch", sort=False)}
    counts: dict[tuple[str, str], int] = {}
    for a, g in df.groupby("arch", sort=False):
        for s in setups[a]:
            counts[s] = counts.get(s, 0) + len(g)
    ref = max(counts, key=counts.get)
    departs = [(a, "other data" if data != ref[1] else
                setup_difference({"config": json.loads(ref[0])}, {"config": json.loads(cfg)},
                                 where=("in the rest of the study", f"in {a}"))
                or "fields the rest of the study lacks")
               for a in WIDTHS if a in setups for cfg, data in setups[a] if (cfg, data) != ref]
    hw = {}
    if "device" in df.columns:
        hw = {a: "; ".join(sorted(g["device"].astype(str).unique()))
              for a, g in df.groupby("arch", sort=False)}
        hw = {a: hw[a] for a in WIDTHS if a in hw} if len(set(hw.values())) > 1 else {}
    return departs, hw


def trend_rule(t: dict) -> str:
    """The rule of a `width.width_trend` result, from the constants it applies."""
    return (f"A width counts when it has at least {t['min_runs']} complete runs, the test when "
            f"at least {MIN_WIDTHS} widths count. \"Smaller models benefit more\" is supported "
            f"when the per-run {STAT_NAMES[t['stat']]} falls with log parameter count with a "
            f"two-sided permutation p below {t['alpha']:g}, contradicted when it rises with such "
            "a p, and not shown otherwise.")


def trend_verdict(t: dict) -> str:
    """A `width.width_trend` result in one or two sentences: its status and numbers."""
    what = STAT_NAMES[t["stat"]]
    widths = t["widths"]
    left = ", ".join(f"{w} ({c} complete)" for w, c in t["left_out"].items())
    if t["status"] == "not enough runs":
        return (f"Not enough runs: the trend of {what} needs at least {MIN_WIDTHS} widths "
                f"with {t['min_runs']} or more complete runs; "
                + (f"only {' and '.join(widths)} {'has' if len(widths) == 1 else 'have'}"
                   " them" if widths else "none has them")
                + (f" (short: {left})." if left else "."))
    head = {"supported": f"Supported: {what} falls with model size",
            "contradicted": f"Contradicted: {what} rises with model size",
            "not shown": f"Not shown: {what} does not change with size beyond run-to-run "
                         "noise"}[t["status"]]
    rho = "undefined (no order)" if not math.isfinite(t["rho"]) else f"{t['rho']:.2f}"
    return (f"{head} ({signed(t['slope'])} per tenfold increase in parameters, two-sided "
            f"permutation {pval(t['p_value'])} over {t['n_runs']} runs of {len(widths)} "
            f"widths; Spearman rho of the per-width values with log size {rho})."
            + (f" Left out, fewer than {t['min_runs']} complete runs: {left}." if left else ""))


def runs_needed_text(power: dict) -> str:
    """"about 148", or "more than 1,024" where the search for the runs needed stopped."""
    n = power["runs_needed"]
    return f"more than {MAX_RUNS:,}" if n == math.inf else f"about {n:,}"


def power_statement(power: dict) -> str:
    """The power of the study against the paper's own trend, in sentences."""
    if not math.isfinite(power["power"]):
        return ("Too few widths with complete runs to say what trend this study could see.")
    what = {"lts": "LTS (SR × mean Best Sparse A_gain, as we compute it)",
            "a_gain": "Best Sparse A_gain", "sr": "SR"}[power["stat"]]
    unit = STAT_UNITS.get(power["stat"], "")
    b, d = power["slope"], power["detectable"]
    small = (f"is {d:.2f}{unit} per tenfold, {d / abs(b):.1f} times the paper's"
             if math.isfinite(d) else "is more than 64 times the paper's")
    return (f"Across its seven architectures, the paper's {what} changes by {signed(b)}{unit} per "
            f"tenfold increase in parameters. At our widths' own run-to-run spread and "
            f"{'/'.join(map(str, power['n']))} "
            f"{'successful ' if power['stat'] in ('a_gain', 'tl_gain') else ''}runs, a trend "
            f"that size would be found "
            f"(two-sided permutation p < {power['alpha']:g}, in {power['n_sim']} simulated "
            f"studies) with probability "
            f"{pct(100 * power['power'])}; the smallest trend found with probability "
            f"{pct(100 * power['target'])} {small}. Finding the paper's trend with probability "
            f"{pct(100 * power['target'])} "
            f"would take {runs_needed_text(power)} complete runs per width "
            f"(at the paper's {PAPER_PROTOCOL.runs}: {pct(100 * power['power_paper'])}).")


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
        ax.set_ylabel(STAT_NAMES[stat] + (" (%)" if STAT_UNITS[stat] else ""))
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


def noise_statement(null: pd.DataFrame, trends: dict[str, dict], alpha: float = ALPHA) -> str:
    """Can the data tell "smaller models benefit more" from "smaller models are noisier"?

    ``trends`` holds `width_trend` results for "a_gain" and "a_gain_sigma". If the gain falls
    with size but the gain in units of each width's own spread does not, the fall is what noise
    alone predicts (a ticket is the best of K-1 noisy stages, so its gain scales with the
    spread); if both fall, size matters beyond noise.
    """
    if null.empty or len(null) < MIN_WIDTHS:
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
    text += (f"Best Sparse A_gain changes by {signed(raw['slope'])} % per tenfold increase in "
             f"parameters (two-sided permutation {pval(raw['p_value'])}); in units of each "
             f"width's own spread, by {signed(scaled['slope'])} ({pval(scaled['p_value'])}). ")
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


def summary_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """Per width, in the paper's units: accuracy and gains to 2 decimals, SR as a whole
    percent, mean ± std in one cell, intervals beside."""
    def pm(mean: float, std: float) -> str:  # one run has no std; none has no mean
        return "n/a" if not math.isfinite(mean) else num(mean) if not math.isfinite(std) \
            else _pm(mean, std)

    def with_ci(value: str, lo: float, hi: float, fmt=num) -> str:
        return value if not (math.isfinite(lo) and math.isfinite(hi)) else \
            f"{value} ({ci(lo, hi, fmt)})"

    rows = []
    for _, r in summary.iterrows():
        rows.append({
            "width": frac(r["width"]), "parameters": f"{int(r['params']):,}",
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


def null_frame(null: pd.DataFrame) -> pd.DataFrame:
    """Measured SR and A_gain per width beside what noise at its own spread gives."""
    rows = [{"width": frac(WIDTH_FAMILY[w]), "runs": int(r["n_runs"]),
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
    return pd.DataFrame(rows)


def verdict_markdown(trends: dict[str, dict], null: pd.DataFrame,
                     power: dict | None = None) -> str:
    """The chapter's verdict on claim (a) within one family, with its numbers and rule;
    ``power`` (`width_power` of LTS) says what a "not shown" is worth."""
    main = trends["lts"]
    text = [f"**{trend_verdict(main)}**", f"Rule: {trend_rule(main)}"]
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
                f"({signed(power['slope'])} LTS per tenfold increase in parameters) would be "
                f"found here with probability {pct(100 * power['power'])}, and finding it "
                f"with probability {pct(100 * power['target'])} would take "
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
    detail = [f"{frac(r['width'])} ({int(r['params']):,} parameters): LTS {r['lts']:.2f}, "
              f"SR {r['sr']:.0f} % over {int(r['complete_runs'])} runs"
              for _, r in summary.iterrows() if r["complete_runs"] > 0]
    power = width_power(df, "lts")
    ours = trend_verdict(t)
    if t["status"] == "not shown" and math.isfinite(power["power"]):
        ours += (f" Power against a trend as large as the paper's "
                 f"({signed(power['slope'])} per tenfold, simulated permutation test): "
                 f"{pct(100 * power['power'])}; {runs_needed_text(power)} runs per width "
                 f"would give "
                 f"{pct(100 * power['target'])}.")
    return {"ours": ours, "detail": detail, "status": t["status"]}
