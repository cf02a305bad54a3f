"""The README's numbers, written by code from the stored results.

README.md marks each generated block with ``<!-- NAME:begin ... -->`` and ``<!-- NAME:end -->``
(`markers`); ``python -m lth_book.readme`` (``make readme``) rewrites every block in `BLOCKS`
from ``results/`` and changes nothing else in the file. A block inside a list item keeps the
indentation of its begin marker. Run it after committing new records, and commit both: the
command refuses while ``results/`` holds files git does not track (`uncommitted`), since a
README written from them fails `test_readme` on every clean clone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from lth_core.analysis.metrics import complete_runs, table2
from lth_core.store import load_results

from . import noise
from . import width_report as wr
from .formats import count, frac, name, num, pct, pval, signed
from .formats import pm as fmt_pm
from .paper import PAPER_PROTOCOL, paper_table2
from .profiles import REPO_ROOT, RESULTS_DIR
from .stats import proportion_ci
from .trajectory_scale import RESULT, load, scale_paragraph
from .width import (
    CPU_RUNS,
    MIN_RUNS,
    STAT_NAMES,
    STAT_UNITS,
    load_width,
    width_null,
    width_summary,
    width_trend,
)
from .width_power import width_power

README = REPO_ROOT / "README.md"


def _trajectory_scale(results: Path | None) -> str:
    path = RESULT if results is None else Path(results) / RESULT.relative_to(RESULT.parents[1])
    record = load(path)
    if record is None:
        return ("Not measured yet (no `results/trajectory-scale/lengths.json`): "
                "`python -m lth_book.trajectory_scale`.")
    return scale_paragraph(record)


def _lenet5(results: Path | None) -> str:
    """LeNet-5's row of Table 2 from every complete CPU run, runs 0-2 and the paper's."""
    root = RESULTS_DIR if results is None else Path(results)
    if not (root / "lenet5").is_dir():
        return "No LeNet-5 records stored yet (`results/lenet5/`)."
    df = load_results(root)
    df, left = complete_runs(df[df["arch"] == "lenet5"])
    if df.empty:
        return "No complete LeNet-5 run stored yet."
    runs = sorted(df["run"].unique())
    cols = {f"ours ({len(runs)} runs)": table2(df).iloc[0],
            "ours (runs 0-2)": table2(df[df["run"] <= 2]).iloc[0]}
    paper = paper_table2().loc["lenet5"]

    def pm(r, key: str) -> str:
        return f"{fmt_pm(r[key + '_mean'], r[key + '_std'])} %"

    rows = {"dense test accuracy": "dense_test_acc", "Best Sparse test accuracy":
            "best_sparse_test_acc", "Best Sparse A_gain": "best_sparse_a_gain"}
    table = {name: [pm(r, key) for r in cols.values()] + [pm(paper, key)]
             for name, key in rows.items()}
    table["success rate"] = [f"{pct(r['sr'])} ({round(r['sr'] * r['n_runs'] / 100)} of "
                             f"{int(r['n_runs'])})" for r in cols.values()] + [pct(paper["sr"])]
    table["LTS (printed definition)"] = [num(r["lts"]) for r in cols.values()] + \
        [f"{num(paper['lts'])} (printed)"]
    out = pd.DataFrame(table, index=[*cols, f"paper ({PAPER_PROTOCOL.runs} runs)"]).T.rename_axis(
        name("lenet5"))
    out = out.reset_index()
    r = cols[f"ours ({len(runs)} runs)"]
    k, n = round(r["sr"] * r["n_runs"] / 100), int(r["n_runs"])
    lo, hi = proportion_ci(k, n)
    unfinished = left.get("lenet5", 0)
    return (f"Complete runs: {n} of the paper's {PAPER_PROTOCOL.runs} (runs {runs[0]}-{runs[-1]}"
            + (f"; {unfinished} more unfinished, not counted" if unfinished else "") + ").\n\n"
            + out.to_markdown(index=False)
            + f"\n\nThe exact (Clopper-Pearson) 95 % interval of the {n}-run success rate is "
            f"{100 * lo:.0f}-{100 * hi:.0f} %.\n\n" + _cost(df))


def _cost(df: pd.DataFrame) -> str:
    """What the runs cost, from each record's wall-clock time; core-minutes where every record
    says it ran on a CPU with one torch thread (its provenance's device)."""
    per_run = df.groupby("run")["wall_time_s"].sum() / 60
    per_stage = df["wall_time_s"] / 60
    one_core = bool((df["device_type"] == "cpu").all()
                    and df["device"].str.endswith("(1 threads)").all())
    unit = "core-" if one_core else "wall-clock "
    return ("Cost, from the records' own wall-clock times"
            + (" (each stage in one process with one torch thread)" if one_core else "")
            + f": {per_run.sum() / 60:.1f} {unit}hours for the {count(len(per_run), 'run')}, "
            f"{per_run.min():.0f}-{per_run.max():.0f} {unit}minutes a run (median "
            f"{per_run.median():.0f}), {per_stage.min():.1f}-{per_stage.max():.1f} a stage "
            f"(median {per_stage.median():.1f}).")


def _width(results: Path | None, n_perm: int = 10_000, seed: int = 0) -> str:
    """The "Size alone" block, every number from the stored
    study: run counts, per-width table (`summary_frame`), trends, the noise statement
    and the verdict."""
    df = load_width(results)
    summary = width_summary(df)
    trends = {k: width_trend(df, k, n_perm=n_perm, seed=seed)
              for k in ("lts", "sr", "a_gain", "a_gain_sigma")}
    null = width_null(df)
    done = summary["complete_runs"]
    runs = ", ".join(f"{frac(r.width)}: {int(r.complete_runs)}" for r in summary.itertuples())
    text = [f"Complete runs per width: {runs} (target {CPU_RUNS}; {int(done.sum())} in all).",
            wr.summary_frame(summary).to_markdown(index=False)]
    lts = trends["lts"]
    if lts["status"] != "not enough runs":  # else the verdict says why there is no trend
        p = lts["params"]
        parts = [f"{STAT_NAMES[k]} {signed(t['slope'], 0 if k == 'sr' else 2)}{STAT_UNITS[k]}"
                 f" per tenfold increase ({pval(t['p_value'])})"
                 for k, t in trends.items() if k != "a_gain_sigma"]
        beyond = [STAT_NAMES[k] for k, t in trends.items()
                  if k != "a_gain_sigma" and t["status"] in ("supported", "contradicted")]
        text.append(
            f"Trend with log parameter count (two-sided permutation test over runs, "
            f"{len(p)} widths with at least {MIN_RUNS} complete runs, {p[0]:,} to {p[-1]:,} "
            f"parameters, {p[-1] / p[0]:.0f}x): " + "; ".join(parts) + ". "
            + ("No trend is beyond run-to-run noise." if not beyond else
               f"Beyond run-to-run noise: {', '.join(beyond)}."))
    text.append(wr.noise_statement(null, trends))
    power = width_power(df, "lts")
    text.append(wr.power_statement(power))
    text.append("Verdict on claim (a) within one family: "
                + wr.verdict_markdown(trends, null, power))
    return "\n\n".join(text)


def _noise(results: Path | None, seed: int = 0) -> str:
    """The "Gain or noise?" block, from the paper's numbers and the stored sets."""
    st = noise.study(results, n_power=100, seed=seed)
    p, t = st.paper, st.trend
    counts = p["verdict"].value_counts()
    rows = pd.DataFrame({
        "architecture": [name(a) for a in p.index],
        "SR (null)": [f"{pct(r.sr)} ({pct(r.sr_null)}), {pval(r.p_sr)}"
                      for r in p.itertuples()],
        "gain / sigma (null)": [f"{num(r.z_mean)} ({num(r.z_null)}), {pval(r.p_mean)}"
                                for r in p.itertuples()],
        "verdict": list(p["verdict"])})
    fam = st.effect
    return "\n\n".join([
        "The paper's Table 2 and the authors' per-run gains against searches in which "
        f"pruning does nothing (K = {noise.PAPER_K}, every stage as noisy as the dense one, "
        f"within-run correlation {st.rho:.2f} as pooled over our runs): "
        + "; ".join(f"{v}: {counts.get(v, 0)}" for v in noise.VERDICTS if counts.get(v, 0)) + ".",
        rows.to_markdown(index=False),
        f"Claim (a) in units of noise (gain / dense sigma against size, Spearman rho "
        f"{signed(t['rho'])}, exact two-sided {pval(t['p'])} over {t['orderings']:,} "
        f"orderings): **{st.claim}**.",
        f"What pruning itself does in our width family (mean of acc_k - acc_0 over the pruned "
        f"stages, no stage selected; {fam['n_runs']} runs of {fam['n_sets']} widths): "
        f"{signed(fam['slope'])} % of the dense accuracy per tenfold increase in parameters, "
        f"two-sided permutation {pval(fam['p'])} (power against the paper's A_gain trend "
        f"of {signed(fam['slope_alt'])} per tenfold: {100 * fam['power']:.0f} %, simulated).",
        f"Rule: {noise.RULE}"])


# Block name -> its text from a results folder (None: the repository's results/).
BLOCKS: dict[str, Callable[[Path | None], str]] = {
    "lenet5-table2": _lenet5,
    "width-study": _width,
    "gain-or-noise": _noise,
    "trajectory-scale": _trajectory_scale,
}


def markers(name: str) -> tuple[str, str]:
    """The begin and end comments of block ``name``."""
    return (f"<!-- {name}:begin (written by `make readme` from the stored records) -->",
            f"<!-- {name}:end -->")


def render(name: str, results: str | os.PathLike | None = None) -> str:
    """Block ``name``'s text, from ``results`` (default: the repository's results/)."""
    if name not in BLOCKS:
        raise ValueError(f"no README block {name!r}; the blocks are {', '.join(BLOCKS)}")
    return BLOCKS[name](None if results is None else Path(results))


def block_text(text: str, name: str) -> str | None:
    """What ``text`` holds between block ``name``'s markers, unindented; None without them."""
    begin, end = markers(name)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return None
    inner = text[i + len(begin):j].strip("\n").splitlines()
    indent = _indent(text, i)
    return "\n".join(line[len(indent):] if line.startswith(indent) else line
                     for line in inner).rstrip()


def _indent(text: str, at: int) -> str:
    line = text[text.rfind("\n", 0, at) + 1:at]
    return line if not line.strip() else ""


def write_readme(path: str | os.PathLike = README, results: str | os.PathLike | None = None,
                 names: list[str] | None = None) -> list[str]:
    """Rewrite blocks ``names`` (default: every block the file has) of ``path`` from the
    stored results. Returns the names of the blocks whose text changed. The file must hold at
    least one block; a block named in ``names`` must be there."""
    p = Path(path)
    text = p.read_text()
    present = [n for n in BLOCKS if block_text(text, n) is not None]
    for n in names or []:
        if n not in BLOCKS:
            raise ValueError(f"no README block {n!r}; the blocks are {', '.join(BLOCKS)}")
        if n not in present:
            raise ValueError(f"{p} has no {n!r} block ({markers(n)[0]} ... {markers(n)[1]})")
    if not present:
        raise ValueError(f"{p} has no generated block (markers such as {markers('NAME')[0]})")
    changed = []
    for n in names or present:
        begin, end = markers(n)
        i, j = text.find(begin), text.find(end)
        indent = _indent(text, i)
        body = "\n".join(indent + line if line else "" for line in render(n, results).split("\n"))
        new = text[:i + len(begin)] + "\n" + body + "\n" + indent + text[j:]
        if new != text:
            changed.append(n)
        text = new
    if changed:
        p.write_text(text)
    return changed


def uncommitted(results: str | os.PathLike) -> list[str]:
    """Files under ``results`` that git does not have as committed (untracked or changed);
    empty outside a git work tree or without git."""
    try:
        r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "."],
                           cwd=results, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in r.stdout.splitlines()] if r.returncode == 0 else []


def main(argv: list[str] | None = None) -> int:
    """``python -m lth_book.readme [FILE]``: rewrite the generated blocks; exit 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m lth_book.readme",
                                     description="Rewrite the README's generated blocks "
                                                 "from the stored results (computes nothing).")
    parser.add_argument("file", nargs="?", default=str(README), help="default: README.md")
    parser.add_argument("--results", default=None, help="results folder (default: results/)")
    parser.add_argument("--block", action="append", dest="names", metavar="NAME",
                        help=f"only this block (repeatable): {', '.join(BLOCKS)}")
    parser.add_argument("--uncommitted", action="store_true",
                        help="write from records git does not track yet (the README of a "
                             "clean clone then disagrees with its records)")
    args = parser.parse_args(argv)
    folder = Path(args.results) if args.results else RESULTS_DIR
    loose = [] if args.uncommitted or not folder.is_dir() else uncommitted(folder)
    if loose:
        print(f"error: {len(loose)} file(s) in {folder} are not committed ({loose[0]}, ...): "
              "commit them first, or pass --uncommitted", file=sys.stderr)
        return 2
    try:
        changed = write_readme(args.file, args.results, args.names)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.file}: " + (f"rewrote {', '.join(changed)}" if changed else "unchanged"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
