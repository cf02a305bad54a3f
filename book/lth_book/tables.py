"""Tables 1 and 2 and the interval table, ours beside the paper's printed numbers.

`table1` and `table2` put ours beside the paper's printed Tables 1 and 2, three rows per
architecture as the paper prints Table 2, with a mark (†) where our mean falls outside the
paper's mean ± std; architectures not computed at this budget keep their rows, saying so.
`interval_table` gives SR, A_gain and LTS with their intervals. Numbers are formatted by
`formats`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from lth_core.analysis.metrics import KINDS, LABELS
from lth_core.models import ARCHITECTURES, PARAM_COUNTS, build, by_size, count_parameters

from .claims import too_few
from .formats import (
    DASH,
    MARK,
    NOT_COMPUTED,
    _finite,
    ci,
    name,
    num,
    params,
    pct,
    pm,
    styled,
    with_css,
)
from .paper import PAPER_PARAMS, PAPER_TABLE1, paper_table2

# -- Table 1 -------------------------------------------------------------------------------


def param_count(arch: str) -> int:
    """Our model's exact number of trainable parameters."""
    return PARAM_COUNTS.get(arch) or count_parameters(build(arch))


def table1(archs: Iterable[str] | None = None) -> pd.DataFrame:
    """Table 1, ours beside the paper: exact count, ours in the paper's units, the paper's
    printed count, and the difference (%) from it; ``mark`` where the two differ as printed."""
    rows = []
    for arch in by_size(archs or ARCHITECTURES):
        ours = param_count(arch)
        paper = PAPER_PARAMS.get(arch)
        printed = PAPER_TABLE1.get(arch, DASH)
        rows.append({"Name": name(arch), "ours (exact)": ours, "ours": params(ours),
                     "paper": printed,
                     "difference (%)": (ours - paper) / paper * 100 if paper else math.nan,
                     "mark": MARK if params(ours) != printed else ""})
    return pd.DataFrame(rows)


def table1_html(archs: Iterable[str] | None = None):
    """Table 1 as an HTML table, marks explained in the caption."""
    t = table1(archs)
    t["ours"] = t["ours"] + t.pop("mark").map(lambda m: f" {m}" if m else "")
    return styled(t, left=["Name"], caption="Table 1: number of parameters, ours and the "
                  f"paper's ({MARK}: ours differs from the paper's printed count)")


# -- Table 2 -------------------------------------------------------------------------------

# The paper's Table 2 columns: (header, metric in metrics.table2, kind of number)
TABLE2_COLUMNS = [
    ("Trajectory Length", "traj"),
    ("Trajectory Length Gain %", "tl_gain"),
    ("Test Accuracy", "test_acc"),
    ("Accuracy Gain %", "a_gain"),
]


def table2(ours: pd.DataFrame | None, paper: pd.DataFrame | None = None,
           archs: Iterable[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 2 as the paper prints it, ours beside the paper's in every cell.

    ``ours`` is a `metrics.table2`; rows: three per architecture (Dense, Best Sparse,
    Sparsest Matching), every architecture of ``archs`` (default: the paper's seven) by
    size, one not in ``ours`` labelled "not computed at this budget". Columns: the paper's,
    each with sub-columns "ours" and "paper". Returns (cells as text, marks): a mark where our
    mean lies outside the paper's mean ± std (SR and LTS have no std: never marked).
    """
    paper = paper_table2() if paper is None else paper
    ours = ours if ours is not None else pd.DataFrame()
    if archs is None:
        archs = list(ARCHITECTURES) + [a for a in ours.index if a not in ARCHITECTURES]
    archs = by_size(archs)
    cols = pd.MultiIndex.from_tuples([(h, w) for h, _ in TABLE2_COLUMNS for w in ("ours", "paper")]
                                     + [(h, w) for h in ("Success Rate", "LTS Score")
                                        for w in ("ours", "paper")])
    rows, cells, marks = [], [], []
    for arch in archs:
        have = arch in ours.index
        label = name(arch) + ("" if have else f" ({NOT_COMPUTED})")
        for kind in KINDS:
            rows.append((label, LABELS[kind]))
            row, mark = [], []
            for _, metric in TABLE2_COLUMNS:
                m, s = f"{kind}_{metric}_mean", f"{kind}_{metric}_std"
                o_m = ours.at[arch, m] if have else math.nan
                o_s = ours.at[arch, s] if have else math.nan
                p_m = paper.at[arch, m] if arch in paper.index else math.nan
                p_s = paper.at[arch, s] if arch in paper.index else math.nan
                out = (_finite(o_m) and _finite(p_m) and _finite(p_s)
                       and not (p_m - p_s <= o_m <= p_m + p_s))
                ours_text = pm(o_m, o_s) + (f" {MARK}" if out else "") if have else DASH
                row += [ours_text, pm(p_m, p_s) if arch in paper.index else DASH]
                mark += [out, False]
            first = kind == "dense"
            for col, fmt in (("sr", pct), ("lts", num)):
                o = fmt(ours.at[arch, col]) if have and first else ("" if have else DASH)
                p = fmt(paper.at[arch, col]) if first and arch in paper.index else ""
                row += [o, p]
                mark += [False, False]
            cells.append(row)
            marks.append(mark)
    index = pd.MultiIndex.from_tuples(rows, names=["Architecture", "Network Type"])
    return (pd.DataFrame(cells, index=index, columns=cols),
            pd.DataFrame(marks, index=index, columns=cols))


def table2_html(ours: pd.DataFrame | None, paper: pd.DataFrame | None = None,
                archs: Iterable[str] | None = None, caption: str | None = None):
    """`table2` as an HTML table, the paper's columns with ours on top of each cell and the
    paper's below it in grey; a marked cell is shaded."""
    cells, marks = table2(ours, paper, archs)
    heads = list(dict.fromkeys(cells.columns.get_level_values(0)))
    e = html.escape
    stacked = pd.DataFrame(index=cells.index, columns=heads, dtype=object)
    classes = pd.DataFrame("", index=cells.index, columns=heads)
    for h in heads:
        stacked[h] = [f'{e(o)}<br><span class="lth-paper">{e(p)}</span>' if o or p else ""
                      for o, p in zip(cells[(h, "ours")], cells[(h, "paper")], strict=True)]
        classes[h] = ["lth-out" if m else "" for m in marks[(h, "ours")]]
    sty = stacked.style.set_td_classes(classes)
    sty = sty.set_table_attributes('class="lth-table lth-table2"')
    sty = sty.set_caption(e(caption or (
        "Table 2, ours beside the paper's: each cell holds our mean ± std and, below it in "
        "grey, the paper's (Best Sparse and Sparsest Matching over successful runs). "
        f"{MARK} and shading: our mean lies outside the paper's mean ± std. The paper prints "
        "LTS with four decimals, shown here with two.")))
    return with_css(sty)


def table2_agreement(ours: pd.DataFrame) -> dict:
    """How many mean ± std cells of ours lie inside the paper's mean ± std (computed archs)."""
    cells, marks = table2(ours, archs=[a for a in ours.index if a in ARCHITECTURES])
    ours_cols = [c for c in cells.columns if c[1] == "ours"
                 and c[0] not in ("Success Rate", "LTS Score")]
    values = cells[ours_cols]
    compared = values.map(lambda t: "±" in t and not t.startswith("n/a")).to_numpy().copy()
    outside = marks[ours_cols].to_numpy() & compared
    dense_gain = np.array([[r[1] == LABELS["dense"] and c[0] in ("Trajectory Length Gain %",
                                                                 "Accuracy Gain %")
                            for c in ours_cols] for r in cells.index])
    compared &= ~dense_gain  # 0 ± 0 by definition on both sides
    return {"compared": int(compared.sum()), "outside": int(outside.sum()),
            "inside": int(compared.sum() - outside.sum()),
            "archs": [a for a in ours.index if a in ARCHITECTURES]}


# -- intervals -----------------------------------------------------------------------------


TOO_FEW = "too few successes"


def gain_ci(r: Mapping) -> str:
    """A_gain's interval of a `claims.bootstrap_ci` row, or `TOO_FEW` from fewer than
    `stats.MIN_FOR_INTERVAL` successes (2 gains make a bootstrap interval of their range)."""
    if too_few(int(r["n_success"])) and int(r["n_success"]) > 0:
        return f"{TOO_FEW} ({int(r['n_success'])})"
    return ci(r["a_gain_lo"], r["a_gain_hi"])


def interval_table(boot: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """SR, A_gain and LTS with their 95 % intervals (a `claims.bootstrap_ci` table), one row
    per architecture by size, each beside the paper's printed value."""
    paper = paper_table2() if paper is None else paper
    rows = []
    for arch in by_size(boot.index):
        r = boot.loc[arch]
        has = arch in paper.index
        rows.append({
            "Architecture": name(arch), "runs": int(r["n_runs"]),
            "SR (95 % interval)": f"{pct(r['sr'])} ({ci(r['sr_lo'], r['sr_hi'], pct)})",
            "paper SR": pct(paper.at[arch, "sr"]) if has else DASH,
            "A_gain % (95 % interval)":
                f"{num(r['a_gain'])} ({gain_ci(r)})",
            "paper A_gain %": num(paper.at[arch, "best_sparse_a_gain_mean"]) if has else DASH,
            "LTS (95 % interval)": f"{num(r['lts'])} ({ci(r['lts_lo'], r['lts_hi'])})",
            "paper LTS": num(paper.at[arch, "lts"]) if has else DASH,
        })
    return pd.DataFrame(rows)
