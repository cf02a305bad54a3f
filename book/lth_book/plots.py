"""The paper's figures (1-6) and a few of our own (the stage sliders: `display`).

Every function returns a `matplotlib.figure.Figure` built with the object-oriented API (no
pyplot state, no `show`), so it works headless (Agg) and in notebooks alike. Architectures go
on the x axis in order of parameter count, as in the paper. Bar-chart functions take a
`metrics.table2`-style table (index = arch); where the table has `<col>_lo`/`<col>_hi` columns
(from `claims.bootstrap_ci`) they become error bars, and `paper=` overlays the printed values.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch import Tensor, nn

from lth_core.analysis.metrics import LABELS
from lth_core.models import build, by_size
from lth_core.pruning import PRUNERS, lamp_scores, prunable_weights

from .formats import name as _name

# readable at the width of a book page (about 700 px at the book's 110 dpi)
SMALL = (6.4, 3.6)


def _figure(size: tuple[float, float] = SMALL) -> tuple[Figure, Axes]:
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _arch_axis(ax: Axes, archs: list[str]) -> None:
    ax.set_xticks(range(len(archs)), [_name(a) for a in archs], rotation=30, ha="right")
    ax.set_xlabel("architecture (ascending # parameters)")


def _yerr(table: pd.DataFrame, archs: list[str], col: str, std: str | None):
    """Asymmetric CI bars from <col>_lo/_hi when present, else +-std, else none."""
    t = table.reindex(archs)
    if f"{col}_lo" in t.columns:
        v, lo, hi = (t[c].to_numpy(float) for c in (col, f"{col}_lo", f"{col}_hi"))
        return np.clip(np.vstack([v - lo, hi - v]), 0, None)
    if std is not None and std in t.columns:
        return t[std].to_numpy(float)
    return None


def _bar_figure(table: pd.DataFrame, col: str, ylabel: str, title: str, std: str | None = None,
                paper: pd.DataFrame | None = None, paper_col: str | None = None,
                all_paper: bool = False) -> Figure:
    """Bars of ours per architecture (by size), the paper's printed values as red diamonds;
    ``all_paper``: every architecture of the paper on the axis, with or without a bar."""
    names = list(table.index) + (list(paper.index) if all_paper and paper is not None else [])
    archs = by_size(names)
    fig, ax = _figure()
    x = np.arange(len(archs))
    ax.bar(x, table[col].reindex(archs).to_numpy(float), yerr=_yerr(table, archs, col, std),
           capsize=3, color="tab:blue", label="ours")
    if paper is not None:
        shown = [a for a in archs if a in paper.index]
        ax.plot([archs.index(a) for a in shown], paper.loc[shown, paper_col or col], "D",
                color="tab:red", label="paper")
        ax.legend(fontsize="small")
    _arch_axis(ax, archs)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.axhline(0, color="black", linewidth=0.6)
    return fig


def fig_success_rate(table: pd.DataFrame, paper: pd.DataFrame | None = None,
                     all_paper: bool = False) -> Figure:
    """Fig. 2: success rate (%) per architecture (CI bars from a `bootstrap_ci` table)."""
    fig = _bar_figure(table, "sr", "success rate (%)", "Ticket search success rate", paper=paper,
                      all_paper=all_paper)
    fig.axes[0].set_ylim(0, 105)
    return fig


def _gain_col(table: pd.DataFrame) -> tuple[str, str]:
    """A_gain column of a table2 ("best_sparse_a_gain_mean") or bootstrap table ("a_gain")."""
    if "best_sparse_a_gain_mean" in table.columns:
        return "best_sparse_a_gain_mean", "best_sparse_a_gain_std"
    return "a_gain", "a_gain_std"


def fig_accuracy_gain(table: pd.DataFrame, paper: pd.DataFrame | None = None,
                      all_paper: bool = False) -> Figure:
    """Fig. 3: Best Sparse A_gain (%) over successful runs, +-std (or CI) error bars."""
    col, std = _gain_col(table)
    return _bar_figure(table, col, "accuracy gain (%)", "Best Sparse accuracy gain", std=std,
                       paper=paper, paper_col="best_sparse_a_gain_mean", all_paper=all_paper)


def fig_lts(table: pd.DataFrame, paper: pd.DataFrame | None = None,
            all_paper: bool = False) -> Figure:
    """Fig. 4: LTS score per architecture (ours: A_gain x SR/100, the printed definition)."""
    return _bar_figure(table, "lts", "LTS score", "Lottery ticket search score", paper=paper,
                       all_paper=all_paper)


def fig_test_accuracy(table: pd.DataFrame, paper: pd.DataFrame | None = None,
                      kind: str = "dense", all_paper: bool = False) -> Figure:
    """Mean test accuracy (%) of one model kind of a `metrics.table2`, +-std bars."""
    col = f"{kind}_test_acc_mean"
    fig = _bar_figure(table, col, "test accuracy (%)", f"{LABELS[kind]} test accuracy",
                      std=f"{kind}_test_acc_std", paper=paper, all_paper=all_paper)
    values = [v for t in (table, paper) if t is not None for v in t[col].dropna()]
    if values:
        fig.axes[0].set_ylim(max(0.0, min(values) - 10), min(100.0, max(values) + 5))
    return fig


def fig_tl_gain(table: pd.DataFrame) -> Figure:
    """Fig. 5: TL_gain (%) of Best Sparse vs Sparsest Matching, side by side, +-std."""
    archs = by_size(table.index)
    fig, ax = _figure()
    x = np.arange(len(archs))
    for i, (kind, label) in enumerate([("best_sparse", "Best Sparse"),
                                       ("sparsest_matching", "Sparsest Matching")]):
        ax.bar(x + (i - 0.5) * 0.4, table.loc[archs, f"{kind}_tl_gain_mean"].to_numpy(float),
               width=0.4, yerr=table.loc[archs, f"{kind}_tl_gain_std"].to_numpy(float),
               capsize=2, label=label)
    _arch_axis(ax, archs)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("trajectory length gain (%)")
    ax.set_title("Expressive power of winning tickets")
    ax.legend(fontsize="small")
    return fig


def fig_tl_by_stage(tl_by_stage: pd.DataFrame, stage: int | None = None) -> Figure:
    """Fig. 6: mean TL_gain (%) vs pruning stage, one line per arch; `stage` is marked."""
    fig, ax = _figure()
    for arch in by_size(tl_by_stage["arch"]):
        g = tl_by_stage[tl_by_stage["arch"] == arch].sort_values("stage")
        (line,) = ax.plot(g["stage"], g["tl_gain_mean"], "o-", markersize=3, label=_name(arch))
        if stage is not None:
            at = g[g["stage"] == stage]
            ax.scatter(at["stage"], at["tl_gain_mean"], s=60, color=line.get_color(), zorder=3)
    if stage is not None:
        ax.axvline(stage, color="grey", linestyle=":", linewidth=1)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(sorted(tl_by_stage["stage"].unique()))
    ax.set_xlabel("pruning stage")
    ax.set_ylabel("trajectory length gain (%)")
    ax.set_title("Trajectory length gain through the stages")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _accuracy_panel(ax: Axes, d: pd.DataFrame, stage: int | None, legend: bool) -> None:
    for _, g in d.groupby("run"):
        g = g.sort_values("stage")
        ax.plot(g["stage"], g["test_acc"], "-", color="tab:blue", alpha=0.4, linewidth=1)
        dense = g.loc[g["stage"] == 0, "test_acc"]
        if len(dense):
            won = g[(g["stage"] >= 1) & (g["test_acc"] >= dense.iloc[0])]
            ax.scatter(won["stage"], won["test_acc"], s=12, color="tab:green", zorder=3)
    ax.axhline(d.loc[d["stage"] == 0, "test_acc"].mean(), color="black", linestyle="--",
               linewidth=1, label="dense (mean)")
    if stage is not None:
        ax.axvline(stage, color="tab:red", linestyle=":", linewidth=1.5, label=f"stage {stage}")
    ax.set_xticks(sorted(d["stage"].unique()))
    if legend:
        ax.legend(fontsize="small")


def fig_accuracy_by_stage(df: pd.DataFrame, stage: int | None = None,
                          arch: str | None = None) -> Figure:
    """Test accuracy vs stage, one thin line per run, dashed mean dense accuracy.

    Winning tickets (stages beating their run's dense accuracy) are filled dots; `stage` is
    marked with a vertical line. `arch` picks one architecture when `df` holds several.
    """
    archs = list(df["arch"].unique())
    if arch is None and len(archs) > 1:
        raise ValueError(f"df holds several architectures ({', '.join(archs)}); pass arch=")
    arch = arch or archs[0]
    fig, ax = _figure()
    _accuracy_panel(ax, df[df["arch"] == arch], stage, legend=True)
    ax.set_xlabel("pruning stage")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{_name(arch)}: test accuracy per run")
    return fig


def fig_accuracy_by_stage_grid(df: pd.DataFrame, stage: int | None = None) -> Figure:
    """`fig_accuracy_by_stage` for every architecture of ``df``, one panel each, by size."""
    archs = by_size(df["arch"])
    if len(archs) == 1:
        return fig_accuracy_by_stage(df, stage)
    cols = min(len(archs), 4)
    rows = -(-len(archs) // cols)
    fig = Figure(figsize=(2.4 * cols + 0.6, 2.3 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, (ax, arch) in enumerate(zip(axes, archs, strict=False)):
        _accuracy_panel(ax, df[df["arch"] == arch], stage, legend=i == 0)
        ax.set_title(_name(arch), fontsize="medium")
    for ax in axes[len(archs):]:
        ax.set_visible(False)
    fig.supxlabel("pruning stage")
    fig.supylabel("test accuracy (%)")
    return fig


def fig_hidden_arcs(arcs: list[tuple[str, np.ndarray]], title: str = "") -> Figure:
    """Fig. 1: the input circle projected to 2D after each block, coloured by position t."""
    n = len(arcs)
    cols = min(n, 6)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.6 * cols, 1.6 * rows + 0.4), layout="constrained")
    for i, (name, xy) in enumerate(arcs):
        ax = fig.add_subplot(rows, cols, i + 1)
        pts = np.vstack([xy, xy[:1]])  # close the curve
        segs = np.stack([pts[:-1], pts[1:]], axis=1)
        lc = LineCollection(segs, cmap="twilight", linewidth=1.5)
        lc.set_array(np.linspace(0, 1, len(segs)))
        ax.add_collection(lc)
        ax.autoscale()
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def fig_lamp_vs_magnitude(weight: Tensor | Mapping[str, Tensor]) -> Figure:
    """LAMP score vs |w|, one line per layer.

    Within a layer LAMP keeps the magnitude order; across layers the same |w| maps to
    different scores, which is how LAMP shifts sparsity between layers unlike global magnitude.
    """
    layers = {"weight": weight} if isinstance(weight, Tensor) else dict(weight)
    fig, ax = _figure()
    for name, w in layers.items():
        mag = w.detach().abs().flatten().double()
        score = lamp_scores(w).flatten()
        keep = mag > 0
        order = torch.argsort(mag[keep])
        ax.plot(mag[keep][order].numpy(), score[keep][order].numpy(), label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("|w|")
    ax.set_ylabel("LAMP score")
    ax.set_title("LAMP score vs weight magnitude")
    if len(layers) > 1:
        ax.legend(fontsize="x-small")
    return fig


def layer_sparsity(model: nn.Module | str, stages: int, prune_rate: float,
                   pruner: str = "lamp", seed: int = 0) -> pd.DataFrame:
    """Per-layer density at each stage when `pruner` is applied `stages - 1` times.

    `model` is a module or an architecture name (built freshly initialised). No training in
    between: this shows how the pruner allocates sparsity on the given weights, not the
    trained ones of a real search. Columns: stage, layer, position, n_weights, density.
    """
    model = build(model) if isinstance(model, str) else model
    prune = PRUNERS[pruner]
    weights = prunable_weights(model)
    masks = None
    rows = []
    for k in range(stages):
        if k > 0:
            masks = prune(model, prune_rate, masks, seed=seed)
        for i, (name, w) in enumerate(weights.items()):
            alive = w.numel() if masks is None else int(masks[name].sum())
            rows.append({"stage": k, "layer": name.removesuffix(".weight"), "position": i,
                         "n_weights": w.numel(), "density": alive / w.numel()})
    return pd.DataFrame(rows)


def fig_layer_sparsity(per_layer: pd.DataFrame, title: str = "") -> Figure:
    """Per-layer density (from `layer_sparsity`), readable for 5 layers as for 84.

    Left: density of each layer (model order) at each stage, lines for up to 30 layers,
    markers beyond. Right: the last stage's density against the layer's number of weights
    (log scale), which is how LAMP allocates sparsity: large layers lose more.
    """
    layers = per_layer.drop_duplicates("position").sort_values("position")
    n = len(layers)
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.6, 1])
    style = "o-" if n <= 30 else "o"
    for k, g in per_layer.groupby("stage"):
        g = g.sort_values("position")
        left.plot(g["position"] + 1, g["density"], style, markersize=3 if n > 30 else 4,
                  linewidth=1, label=f"stage {k}")
    if n <= 12:
        left.set_xticks(layers["position"] + 1, layers["layer"], rotation=35, ha="right")
        left.set_xlabel("layer")
    else:
        left.set_xlabel(f"layer (model order, 1 to {n})")
    left.set_ylabel("share of weights kept")
    left.set_ylim(0, 1.05)
    left.legend(fontsize="small", ncols=2 if per_layer["stage"].nunique() > 3 else 1)
    last = per_layer[per_layer["stage"] == per_layer["stage"].max()]
    right.scatter(last["n_weights"], last["density"], s=14, color="tab:red")
    right.set_xscale("log")
    right.set_ylim(0, 1.05)
    right.set_xlabel("weights in the layer (log scale)")
    right.set_ylabel(f"kept at stage {int(last['stage'].iloc[0])}")
    fig.suptitle(title or "Per-layer density by stage")
    return fig
