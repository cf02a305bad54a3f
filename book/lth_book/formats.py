"""The book's number formats and its table style: numbers in the paper's units and digits.

Accuracies, gains and trajectory lengths with 2 decimals (3 where 2 would show a non-zero
value as 0), success rates as whole percent, a mean and its std in one cell; no cell ever
shows more than 3 decimals (`num`, `signed`, `pm`, `pct`, `ci`, `params`, `pval`). `name` is
an architecture's display name (the paper's, `paper.PAPER_NAMES`), `frac` a width as the
reader says it. `styled` renders any DataFrame that way as an HTML table (pandas
``Styler.format``). The verdict words every finding uses are here too, since the tables
colour them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from lth_core.models import by_size

from .paper import PAPER_NAMES

DASH = "—"
NOT_COMPUTED = "not computed at this budget"
MARK = "†"
REPRODUCED, NOT_REPRODUCED = "reproduced", "not reproduced"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_COMPUTED)
# Style of every table (Styler scopes each rule to its table)
_STYLES = [
    ("", "border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; display: block; "
         "overflow-x: auto; max-width: 100%;"),
    ("th", "padding: 0.25em 0.6em; border-bottom: 1px solid #ccc; background: #f6f6f6; "
           "vertical-align: top;"),
    ("td", "padding: 0.25em 0.6em; border-bottom: 1px solid #e4e4e4; text-align: right; "
           "vertical-align: top; white-space: nowrap;"),
    ("td.lth-wrap", "white-space: normal; min-width: 7em;"),
    (".lth-paper", "color: #666; font-size: 0.9em;"),
    (".lth-rule", "color: #555; font-size: 0.85em; margin-top: 0.3em;"),
    ("ul.lth-detail", "margin: 0.3em 0 0 1em; padding: 0; font-size: 0.9em;"),
    ("th.row_heading", "text-align: left;"),
    ("caption", "caption-side: top; text-align: left; font-weight: bold; padding: 0.3em 0;"),
    ("td.lth-left", "text-align: left;"),
    ("td.lth-out", "background: #fde8e6;"),
    (".lth-verdict-reproduced", "color: #1a7f37; font-weight: bold;"),
    (".lth-verdict-not-reproduced", "color: #b42318; font-weight: bold;"),
    (".lth-verdict-not-computed", "color: #6b6b6b; font-weight: bold;"),
]


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def num(v, digits: int = 2) -> str:
    """``digits`` decimals (at most 3), one more where that would show a non-zero as 0."""
    if not _finite(v):
        return "n/a"
    v, digits = float(v), min(digits, 3)
    if digits < 3 and v != 0 and round(v, digits) == 0:
        digits += 1
    text = f"{v:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def signed(v, digits: int = 2) -> str:
    """`num` with its sign: "+0.30", "-2.23" (a difference or a slope)."""
    text = num(v, digits)
    return "+" + text if _finite(v) and not text.startswith("-") and float(text) != 0 else text


def pm(mean, std, digits: int = 2) -> str:
    """Mean ± std in one cell."""
    return f"{num(mean, digits)} ± {num(std, digits)}"


def pct(v) -> str:
    """A success rate (percent) as a whole percent."""
    return "n/a" if not _finite(v) else f"{float(v):.0f} %"


def ci(lo, hi, fmt: Callable = num) -> str:
    """A confidence interval, e.g. "0.41 to 1.20" (``fmt``: `num`, `pct`)."""
    if not (_finite(lo) and _finite(hi)):
        return "n/a"
    return f"{fmt(lo)} to {fmt(hi)}"


def pval(p, label: str | None = "p") -> str:
    """A p-value as every page prints it: "p = 0.096", "p = 0.003", "p < 0.001".

    Two significant digits, never more than 3 decimals (so below 0.001 only the bound);
    ``label=None`` gives the value alone ("0.096", "< 0.001").
    """
    if not _finite(p):
        text = "= n/a"
    elif float(p) < 0.001:
        text = "< 0.001"
    else:
        text = "= " + (f"{float(p):.2g}" if float(p) >= 0.01 else f"{float(p):.3f}")
    return f"{label} {text}" if label else text.removeprefix("= ")


def count(n: int, noun: str) -> str:
    """"1 run", "3 runs": a count with its noun (plural by "s")."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def params(n: int) -> str:
    """A parameter count in the paper's units: 61K, 0.13M, 11.17M."""
    return f"{n / 1e3:.0f}K" if n < 100_000 else f"{n / 1e6:.2f}M"


def name(arch: str) -> str:
    """The paper's name of an architecture (ours where it has none)."""
    return PAPER_NAMES.get(arch, arch)


def per_arch(values: Mapping[str, float], fmt: Callable = num) -> str:
    """"LeNet-5 68 %, PNASNet-A 87 %, ...": per-architecture values by size, formatted."""
    return ", ".join(f"{name(a)} {fmt(values[a])}" for a in by_size(list(values.keys())))


def _formatter(digits: int) -> Callable:
    def fmt(v):
        if isinstance(v, bool | np.bool_):
            return "yes" if v else "no"
        if isinstance(v, int | np.integer):
            return f"{int(v):,}" if abs(int(v)) >= 10_000 else str(int(v))
        if isinstance(v, float | np.floating):
            return num(v, digits)
        return "n/a" if v is None else str(v)
    return fmt


def styled(df: pd.DataFrame, digits: int = 2, formats: Mapping[str, Callable] | None = None,
           caption: str | None = None, escape: bool = True, left: Iterable[str] = ()):
    """An HTML table (pandas Styler) of ``df`` in the book's formats.

    Floats get ``digits`` decimals (`num`), integers thousands separators, booleans yes/no,
    p-value columns ("p", "p (...)", "p_...", "... p") `pval`; ``formats`` maps a column to
    its own formatter (e.g. `pct`). A RangeIndex is hidden.
    ``left``: text columns aligned left.
    """
    fmt = _formatter(digits)
    formats = dict(formats or {})
    for c in df.columns:
        if str(c) == "p" or str(c).startswith(("p (", "p_")) or str(c).endswith(" p"):
            formats.setdefault(c, lambda v: html.escape(pval(v, None)) if _finite(v) else fmt(v))
    sty = df.style.format({c: formats.get(c, fmt) for c in df.columns},
                          escape="html" if escape else None)
    if isinstance(df.index, pd.RangeIndex):
        sty = sty.hide(axis="index")
    else:
        sty = sty.format_index(lambda v: fmt(v) if isinstance(v, float) else str(v))
    left = set(left)
    if left:
        classes = pd.DataFrame([["lth-left lth-wrap" if c in left else "" for c in df.columns]]
                               * len(df), index=df.index, columns=df.columns)
        sty = sty.set_td_classes(classes)
    sty = sty.set_table_attributes('class="lth-table"')
    if caption:
        sty = sty.set_caption(html.escape(caption))
    return with_css(sty)


def with_css(sty):
    """The book's table style on a Styler."""
    return sty.set_table_styles([{"selector": sel, "props": props} for sel, props in _STYLES],
                                overwrite=False)


def html_table(sty) -> str:
    """The HTML of a `styled` table (with its style sheet)."""
    return sty.to_html()


def frac(w: float) -> str:
    """A width as the reader says it: 1/8, 1/4, 1/2, 1, 2."""
    return f"1/{round(1 / w)}" if w < 1 and float(1 / w).is_integer() else f"{w:g}"
