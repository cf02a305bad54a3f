"""Figures (counted bars/lines on small tables) and the two stage sliders.

The figures never touch pyplot, so no backend is selected: savefig renders through Agg.
"""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from lth_book import display, plots
from lth_book.claims import bootstrap_ci
from lth_book.paper import paper_table2
from lth_core.analysis.metrics import table2, tl_gain_by_stage


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    """3 archs (given in reverse size order) x 4 runs x 3 stages."""
    rng = np.random.default_rng(0)
    rows = []
    for arch in ("resnet18", "pnasnet_a", "lenet5"):
        for run in range(4):
            for stage in range(3):
                acc = 70 + rng.normal(0, 1)
                rows.append(dict(arch=arch, run=run, stage=stage, density=0.84**stage,
                                 val_acc=acc, test_acc=acc, traj_len=10 + rng.normal(),
                                 traj_len_2d=5 + rng.normal()))
    return pd.DataFrame(rows)


def _bars(fig: Figure) -> list[BarContainer]:
    (ax,) = fig.axes
    return [c for c in ax.containers if isinstance(c, BarContainer)]


def _labels(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_xticklabels()]


@pytest.mark.parametrize("fn", [plots.fig_success_rate, plots.fig_accuracy_gain, plots.fig_lts])
def test_bar_figures(results, fn):
    fig = fn(table2(results))
    assert isinstance(fig, Figure)
    (bars,) = _bars(fig)
    assert len(bars) == 3
    assert _labels(fig) == ["LeNet-5", "PNASNet-A", "ResNet18"]  # sorted by size


def test_bar_figures_with_ci_and_paper(results):
    fig = plots.fig_accuracy_gain(bootstrap_ci(results, n_boot=100), paper=paper_table2())
    assert len(_bars(fig)[0]) == 3
    assert any(isinstance(c, ErrorbarContainer) for c in fig.axes[0].containers)
    marks = [ln for ln in fig.axes[0].lines if ln.get_label() == "paper"]
    assert len(marks) == 1 and len(marks[0].get_xdata()) == 3
    fig = plots.fig_accuracy_gain(paper_table2())
    assert len(_bars(fig)[0]) == 7


def test_bar_figures_can_span_every_architecture_of_the_paper(results):
    """Ours where computed, the paper's seven on the axis (a bar-less slot where not)."""
    ours = table2(results[results["arch"] == "lenet5"])
    fig = plots.fig_lts(ours, paper=paper_table2(), all_paper=True)
    assert _labels(fig)[0] == "LeNet-5" and len(_labels(fig)) == 7
    heights = [b.get_height() for b in _bars(fig)[0]]
    assert np.isfinite(heights[0]) and np.isnan(heights[1:]).all()
    marks = [ln for ln in fig.axes[0].lines if ln.get_label() == "paper"]
    assert len(marks[0].get_xdata()) == 7
    fig = plots.fig_test_accuracy(table2(results), paper=paper_table2())
    assert len(_bars(fig)[0]) == 3


def test_by_size_orders_paper_and_width_names():
    from lth_core.models import by_size

    assert by_size(["resnet18", "lenet5-w2", "x", "lenet5", "lenet5-w0.25", "lenet5"]) == [
        "lenet5-w0.25", "lenet5", "lenet5-w2", "resnet18", "x"]
    assert by_size(["lenet5-w3", "pnasnet_a"]) == ["pnasnet_a", "lenet5-w3"]  # built, counted


def test_fig_tl_gain(results):
    bars = _bars(plots.fig_tl_gain(table2(results)))
    assert [len(b) for b in bars] == [3, 3]


def test_fig_tl_by_stage(results):
    tl = tl_gain_by_stage(results)
    ax = plots.fig_tl_by_stage(tl).axes[0]
    assert [ln.get_label() for ln in ax.lines if not ln.get_label().startswith("_")] == [
        "LeNet-5", "PNASNet-A", "ResNet18"]
    marked = plots.fig_tl_by_stage(tl, stage=1).axes[0]
    assert len(marked.lines) == len(ax.lines) + 1  # the stage marker
    assert len(marked.collections) == 3  # one highlighted point per arch


def test_fig_accuracy_by_stage(results):
    with pytest.raises(ValueError, match="arch="):
        plots.fig_accuracy_by_stage(results)
    ax = plots.fig_accuracy_by_stage(results, arch="lenet5").axes[0]
    assert len(ax.lines) == 4 + 1  # 4 runs + dense mean
    ax = plots.fig_accuracy_by_stage(results[results["arch"] == "lenet5"], stage=2).axes[0]
    assert len(ax.lines) == 4 + 2
    assert any(ln.get_label() == "stage 2" for ln in ax.lines)


def test_fig_accuracy_by_stage_grid(results):
    fig = plots.fig_accuracy_by_stage_grid(results, stage=1)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["LeNet-5", "PNASNet-A", "ResNet18"]
    assert all(len(ax.lines) == 4 + 2 for ax in shown)  # runs, dense mean, stage marker


def test_fig_hidden_arcs():
    t = np.linspace(0, 2 * np.pi, 50, endpoint=False)
    arcs = [(f"block{i}", np.c_[np.cos(t), (i + 1) * np.sin(t)]) for i in range(3)]
    fig = plots.fig_hidden_arcs(arcs, "test")
    assert len(fig.axes) == 3
    for ax in fig.axes:
        (lc,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert len(lc.get_segments()) == 50  # closed: 50 points, 50 segments


def test_fig_lamp_vs_magnitude():
    torch.manual_seed(0)
    assert len(plots.fig_lamp_vs_magnitude(torch.randn(20, 10)).axes[0].lines) == 1
    layers = {"a": torch.randn(5, 5), "b": torch.randn(50, 5)}
    assert len(plots.fig_lamp_vs_magnitude(layers).axes[0].lines) == 2


def test_layer_sparsity_and_figure():
    per_layer = plots.layer_sparsity("lenet5", stages=3, prune_rate=0.2)
    assert list(per_layer.columns) == ["stage", "layer", "position", "n_weights", "density"]
    assert per_layer["stage"].nunique() == 3 and per_layer["layer"].nunique() == 5
    assert (per_layer.loc[per_layer["stage"] == 0, "density"] == 1).all()
    overall = per_layer.groupby("stage").apply(
        lambda g: (g["density"] * g["n_weights"]).sum() / g["n_weights"].sum())
    np.testing.assert_allclose(overall, [1.0, 0.8, 0.64], atol=1e-4)
    fig = plots.fig_layer_sparsity(per_layer)
    assert len(fig.axes[0].lines) == 3
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][0] == "conv1.0"


def test_layer_sparsity_figure_stays_readable_with_many_layers():
    """PNASNet-B (84 layers) in a page-wide figure: markers, no 84 tick labels, and the
    last stage's density against layer size beside."""
    per_layer = plots.layer_sparsity("pnasnet_b", stages=3, prune_rate=0.16)
    fig = plots.fig_layer_sparsity(per_layer, title="PNASNet-B")
    width, height = fig.get_size_inches()
    assert width <= 9.0 and height >= 3.0
    left, right = fig.axes
    assert len(left.get_xticklabels()) < 20
    assert all(ln.get_linestyle() == "None" for ln in left.lines)  # markers only
    assert len(right.collections[0].get_offsets()) == per_layer["layer"].nunique()


def test_png_base64_and_static_slider():
    frames = []
    for k in range(3):
        fig = Figure(figsize=(1, 1))
        fig.add_subplot().plot([0, k])
        frames.append(display.figure_to_png_base64(fig, dpi=20))
    assert base64.b64decode(frames[0]).startswith(b"\x89PNG")
    page = display.static_stage_slider(frames, ["stage 0", "stage 1", "</script>"], "Acc",
                                     "acc-slider")
    assert page.count("data:image/png;base64,") == 3
    assert "http" not in page and "<script src" not in page and "<link" not in page
    for hook in ("lth-stage-slider", "lth-stage-input", "lth-stage-frame", "lth-stage-label",
                 'id="acc-slider"', 'type="range"', 'max="2"'):
        assert hook in page
    assert page.count("</script>") == 1  # the label is escaped inside the script
    with pytest.raises(ValueError):
        display.static_stage_slider(frames, ["a"], "t", "x")
    with pytest.raises(ValueError):
        display.static_stage_slider(frames[:1], ["a"], "t", 'x" onload="')


def test_widget_slider_redraws():
    drawn = []

    def draw(stage: int) -> Figure:
        drawn.append(stage)
        fig = Figure(figsize=(1, 1))
        fig.add_subplot().plot([0, stage])
        return fig

    w = display.widget_stage_slider(draw, [0, 1, 2])
    assert (w.slider.min, w.slider.max, w.last_stage) == (0, 2, 0)
    assert w.children == (w.slider, w.output)
    first = w.output.outputs[0]["data"]["image/png"]
    w.slider.value = 2
    assert drawn == [0, 2] and w.last_stage == 2
    assert len(w.output.outputs) == 1
    assert w.output.outputs[0]["data"]["image/png"] != first
    assert isinstance(w.last_figure, Figure)
    with pytest.raises(ValueError):
        display.widget_stage_slider(draw, [0, 2])


def test_stage_and_layer_sliders_redraw_figure_1():
    arcs = {s: [(f"block{b}", np.random.default_rng(10 * s + b).normal(size=(16, 2)))
                for b in range(3)] for s in range(2)}
    drawn = []

    def draw(stage: int, layer: str) -> Figure:
        drawn.append((stage, layer))
        return plots.fig_hidden_arcs([(layer, dict(arcs[stage])[layer])], f"stage {stage}")

    w = display.widget_sliders(draw, {"stage": [0, 1], "layer": ["block0", "block1", "block2"]})
    assert w.last_values == {"stage": 0, "layer": "block0"}
    first = w.output.outputs[0]["data"]["image/png"]
    w.sliders["layer"].value = "block2"
    w.sliders["stage"].value = 1
    assert drawn == [(0, "block0"), (0, "block2"), (1, "block2")]
    assert w.output.outputs[0]["data"]["image/png"] != first
    assert "stage 1, layer block2" in w.output.outputs[0]["data"]["text/plain"]
    from ipywidgets import IntSlider

    stored = display.widget_sliders(draw, {"stage": np.array([0, 1]), "layer": ["block0"]})
    assert isinstance(stored.sliders["stage"], IntSlider)  # numpy ints from records
    with pytest.raises(ValueError):
        display.widget_sliders(draw, {"stage": [0, 2]})
    with pytest.raises(ValueError):
        display.widget_sliders(draw, {"layer": []})
